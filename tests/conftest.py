"""Shared fixtures: the real local Kubernetes control plane for ``@pytest.mark.k8s`` tests.

* ``k8s_cluster`` (session): a :class:`K8sCluster` with ``kubeconfig``, ``server``,
  ``kubectl_path``, ``bin_dir``, ``log_dir`` and ``kubectl(*args)``. It starts etcd,
  kube-apiserver, kube-controller-manager, kube-scheduler and kwok (one fake Node) in a temp
  dir, once per session, built by ``tests/controlplane/localcluster.py``. With
  ``AUTOBUILD_KUBECONFIG`` set (e.g. to ``.cluster/kubeconfig`` after ``make cluster-up``) it
  uses that running cluster instead.
* ``k8s_api`` (session): a ``kubernetes.client.ApiClient`` for the admin kubeconfig.
* ``k8s_namespace`` (function): a fresh namespace, deleted after the test.

When a test of the session failed, the cluster's logs are kept and their path is printed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.controlplane import localcluster

ROOT = Path(__file__).resolve().parents[1]

_KEPT_LOGS = pytest.StashKey[list[str]]()


@dataclass(frozen=True)
class K8sCluster:
    """What a test needs to talk to the cluster."""

    kubeconfig: Path
    server: str
    kubectl_path: Path
    bin_dir: Path
    log_dir: Path | None
    local: localcluster.LocalCluster | None = None  # None when reusing a running cluster

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl against this cluster; output as text. Raises
        ``localcluster.KubectlError`` (a CalledProcessError showing stderr) on failure."""
        return localcluster.run_kubectl(
            self.kubectl_path,
            self.kubeconfig,
            *args,
            input=input,
            check=check,
            timeout=timeout,
        )

    def env(self) -> dict[str, str]:
        """``os.environ`` with KUBECONFIG set and the built binaries first on PATH."""
        return localcluster.cluster_env(self.kubeconfig, self.bin_dir)


def _server_of(kubeconfig: Path) -> str:
    import yaml

    cfg: dict[str, Any] = yaml.safe_load(kubeconfig.read_text())
    current = cfg.get("current-context")
    contexts = {c["name"]: c["context"] for c in cfg.get("contexts", [])}
    cluster_name = contexts[current]["cluster"] if current in contexts else None
    for c in cfg.get("clusters", []):
        if cluster_name is None or c["name"] == cluster_name:
            return str(c["cluster"]["server"])
    raise ValueError(f"no cluster in {kubeconfig}")


@pytest.fixture(scope="session")
def k8s_cluster(request: pytest.FixtureRequest) -> Iterator[K8sCluster]:
    bins = localcluster.ensure_binaries()
    reuse = os.environ.get("AUTOBUILD_KUBECONFIG")
    if reuse:
        kubeconfig = Path(reuse).resolve()
        attached = localcluster.LocalCluster.attach(kubeconfig.parent)
        yield K8sCluster(
            kubeconfig=kubeconfig,
            server=_server_of(kubeconfig),
            kubectl_path=bins.kubectl,
            bin_dir=bins.bin_dir,
            log_dir=attached.log_dir if attached else None,
        )
        return

    state_dir = Path(tempfile.mkdtemp(prefix="autobuild-k8s-"))
    cluster = localcluster.LocalCluster(state_dir=state_dir, binaries=bins)
    try:
        cluster.start()
    except BaseException:
        request.config.stash.setdefault(_KEPT_LOGS, []).append(str(cluster.log_dir))
        raise
    try:
        yield K8sCluster(
            kubeconfig=cluster.kubeconfig,
            server=cluster.server,
            kubectl_path=cluster.kubectl_path,
            bin_dir=cluster.bin_dir,
            log_dir=cluster.log_dir,
            local=cluster,
        )
    finally:
        cluster.stop()
        if request.session.testsfailed:
            request.config.stash.setdefault(_KEPT_LOGS, []).append(str(cluster.log_dir))
        else:
            shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def k8s_api(k8s_cluster: K8sCluster) -> Iterator[Any]:
    """A ``kubernetes.client.ApiClient`` (official client) logged in as admin."""
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(k8s_cluster.kubeconfig))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def crd(k8s_cluster: K8sCluster) -> None:
    """The AutomatedBuild CRD (crds/), applied and Established."""
    k8s_cluster.kubectl("apply", "-f", str(ROOT / "crds" / "automatedbuild.yaml"))
    localcluster.wait_crd_established(
        k8s_cluster.kubectl_path, k8s_cluster.kubeconfig, "automatedbuilds.autobuild.dev"
    )


@pytest.fixture
def k8s_namespace(k8s_api: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted (without waiting) afterwards."""
    from kubernetes import client

    core = client.CoreV1Api(k8s_api)
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{slug}-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except client.ApiException as e:
            if e.status != 404:
                raise


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the control plane (and the real node's artifacts) if not cached before any test
    runs, so that a cold build (minutes) does not count against the first test's timeout."""
    if session.config.option.collectonly:
        return
    if any(item.get_closest_marker("k8s") for item in session.items):
        localcluster.ensure_binaries()
    if any(item.get_closest_marker("realnode") for item in session.items):
        localcluster.ensure_node_artifacts()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    kept = config.stash.get(_KEPT_LOGS, [])
    for path in kept:
        terminalreporter.write_line(f"k8s control plane logs kept in {path}")
