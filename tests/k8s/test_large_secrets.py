"""The cluster's Secrets and the operator's memory, on the real control plane: the Secrets
informer lists and watches metadata only and reads the referenced Secrets one by one, so
250 MiB of Secrets in the cluster cost the operator nothing at start, while a change of a
referenced Secret still reaches it. The operator runs with the shipped RBAC.
"""

from __future__ import annotations

import base64
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.support import webhook_payloads as hooks
from tests.support.gitserver import GitServer
from tests.support.operator_harness import World, manifest, service_account_kubeconfig
from tests.support.operator_process import Operator, eventually

pytestmark = pytest.mark.k8s

SECRETS = 256
# Random bytes (nothing compresses them): each Secret is 1 MiB on the wire, base64 and all.
SECRET_BYTES = 768 * 1024
# Peak RSS an operator may gain at start from them (today's code: the whole LIST, ~3x).
MAX_GROWTH_MIB = 100


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the highest resident set the process has had."""
    text = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmHWM:\s+(\d+) kB", text, re.MULTILINE)
    assert found is not None, text
    return int(found.group(1)) / 1024


@pytest.fixture(scope="module")
def rbac_kubeconfig(
    k8s_cluster: Any, crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    where = tmp_path_factory.mktemp("secrets-operator")
    with service_account_kubeconfig(k8s_cluster, where) as kubeconfig:
        yield kubeconfig


def started(kubeconfig: Path, log: Path) -> Operator:
    op = Operator(kubeconfig, log)
    op.start()
    return op


def stopped(op: Operator) -> None:
    op.stop()
    # RBAC denials read 'User "system:serviceaccount:..." cannot VERB resource ...'.
    assert not re.search(r'serviceaccount:[^"]*\\?" cannot ', op.log.read_text())


@pytest.fixture
def big_secrets(k8s_api: Any) -> Iterator[str]:
    """A namespace holding SECRETS Secrets of 1 MiB each (256 MiB), deleted afterwards."""
    core = client.CoreV1Api(k8s_api)
    namespace = f"t-big-secrets-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    try:
        for index in range(SECRETS):
            blob = base64.b64encode(os.urandom(SECRET_BYTES)).decode()
            core.create_namespaced_secret(
                namespace, {"metadata": {"name": f"blob-{index}"}, "data": {"blob": blob}}
            )
        yield namespace
    finally:
        core.delete_namespace(namespace)


def test_256_mib_of_secrets_in_the_cluster_do_not_grow_the_operators_memory(
    rbac_kubeconfig: Path, k8s_api: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Before: a start with these Secrets in the cluster took the operator from ~60 to
    several hundred MiB (the LIST was buffered whole, values and all)."""
    first = started(rbac_kubeconfig, tmp_path / "before.log")
    try:
        baseline = peak_rss_mib(first.proc.pid)  # type: ignore[union-attr]
    finally:
        stopped(first)
    request.getfixturevalue("big_secrets")
    second = started(rbac_kubeconfig, tmp_path / "after.log")
    try:
        peak = peak_rss_mib(second.proc.pid)  # type: ignore[union-attr]
    finally:
        stopped(second)
    print(f"operator peak RSS: {baseline:.1f} MiB without, {peak:.1f} MiB with 256 MiB of Secrets")
    assert peak - baseline < MAX_GROWTH_MIB, (baseline, peak)


@pytest.fixture
def operator(rbac_kubeconfig: Path, tmp_path: Path) -> Iterator[Operator]:
    op = started(rbac_kubeconfig, tmp_path / "operator.log")
    try:
        yield op
    finally:
        stopped(op)


@pytest.fixture
def git_server(tmp_path: Path) -> Iterator[GitServer]:
    with GitServer(tmp_path / "git") as server:
        yield server


def test_a_referenced_secret_changed_after_the_start_is_read_again(
    operator: Operator, k8s_api: Any, k8s_namespace: str, git_server: GitServer
) -> None:
    """The watch brings metadata only: a new resourceVersion of a referenced Secret makes the
    operator read it again. A rotated webhook secret verifies the next delivery."""
    world = World(k8s_api, k8s_namespace)
    repo = git_server.create_repo("acme", "rotated")
    commit = repo.commit("main", {"Dockerfile": "FROM scratch\n"}, "Initial commit")
    world.core.create_namespaced_secret(
        k8s_namespace, {"metadata": {"name": "hook"}, "stringData": {"secret": "first"}}
    )
    body = manifest(k8s_namespace, repo, tags=[{"source": "main", "autobuild": False}])
    body["spec"]["source"]["webhookSecret"] = "hook"
    world.create(body)
    eventually(world.status, 30, "first visit")
    host, _, path = repo.clone_url.removeprefix("http://").partition("/")
    full_name = path.removesuffix(".git")

    def deliver(secret: bytes) -> int:
        payload = hooks.encode(
            hooks.github_push("refs/heads/feature", commit, full_name=full_name, host=host)
        )
        headers = hooks.github_headers("push", payload, secret, uuid.uuid4().hex)
        return operator.deliver("/hooks/github", payload, headers)[0]

    eventually(lambda: deliver(b"first") == 202, 30, "the first secret verifies")
    world.core.patch_namespaced_secret("hook", k8s_namespace, {"stringData": {"secret": "second"}})
    eventually(lambda: deliver(b"second") == 202, 30, "the rotated secret verifies")
    assert deliver(b"first") != 202
