"""Issue 17, items 1-2, black-box: ``autobuild run`` on the real control plane, attacked through
its webhook port by clients that hold no secret (traffic on loopback only)."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.support import webhook_payloads as hooks
from tests.support.operator_process import Operator, eventually

pytestmark = pytest.mark.k8s

GROUP, VERSION, PLURAL = "autobuild.dev", "v1alpha1", "automatedbuilds"
# A repository no test serves: deliveries are matched by name, nothing is cloned for them.
REPO = "http://127.0.0.1:9/acme/app.git"


@pytest.fixture(scope="module")
def operator(
    k8s_cluster: Any, crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    op = Operator(k8s_cluster.kubeconfig, tmp_path_factory.mktemp("intake") / "operator.log")
    op.start()
    try:
        yield op
    finally:
        op.stop()


def rss_bytes(operator: Operator) -> int:
    assert operator.proc is not None
    for line in Path(f"/proc/{operator.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def post_many(port: int, paths: list[str], clients: int = 4) -> list[int]:
    """POST every path (empty body) over ``clients`` keep-alive connections; the statuses."""
    statuses: list[int] = []
    lock = threading.Lock()

    def run(share: list[str]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            for path in share:
                connection.request("POST", path, b"")
                response = connection.getresponse()
                response.read()
                with lock:
                    statuses.append(response.status)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(paths[i::clients],)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def test_unknown_trigger_urls_leave_the_operators_memory_flat(operator: Operator) -> None:
    """20,000 trigger URLs of objects that do not exist, with names as long as a request line
    allows: each one cached a None in the store (RSS 51 -> 228 MiB, never freed). Now the RSS
    stays within 10 MiB of what it was."""
    long = "n" * 3500

    def paths(start: int, count: int) -> list[str]:
        return [f"/hooks/trigger/{long}{n}/{long}{n}/tok" for n in range(start, start + count)]

    assert set(post_many(operator.webhook_port, paths(0, 2000))) == {404}  # allocator warm-up
    before = rss_bytes(operator)
    assert set(post_many(operator.webhook_port, paths(2000, 20_000))) == {404}
    after = rss_bytes(operator)
    assert operator.proc is not None
    assert operator.proc.poll() is None
    assert after - before < 10 * 1024 * 1024, f"RSS {before >> 20} -> {after >> 20} MiB"


def _hostile_body(size: int) -> bytes:
    head = hooks.encode(hooks.github_push(full_name="acme/app", host="127.0.0.1:9"))[:-1]
    head += b',"pad":"'
    return head + b"x" * max(0, size - len(head) - 2) + b'"}'


def _flood(port: int, body: bytes, stop: threading.Event) -> None:
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-Hub-Signature-256": "sha256=" + "0" * 64,
    }
    while not stop.is_set():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request("POST", "/hooks/github", body, headers)
            connection.getresponse().read()
        except OSError:
            time.sleep(0.01)
        finally:
            connection.close()


def test_a_signed_delivery_is_answered_within_a_second_while_six_clients_flood(
    operator: Operator, k8s_api: Any, k8s_namespace: str
) -> None:
    """Six clients send unsigned 4 MiB bodies naming a repository of 50 AutomatedBuilds; a
    signed delivery for one of them is still answered (202) in < 1 s."""
    core = client.CoreV1Api(k8s_api)
    custom = client.CustomObjectsApi(k8s_api)
    for number in range(50):
        name = f"app-{number:02}"
        core.create_namespaced_secret(
            k8s_namespace,
            {"metadata": {"name": f"{name}-hook"}, "stringData": {"secret": f"s{number}"}},
        )
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "AutomatedBuild",
            "metadata": {"name": name, "namespace": k8s_namespace},
            "spec": {
                "source": {"repo": REPO, "webhookSecret": f"{name}-hook"},
                "image": {
                    "registry": "127.0.0.1:5000",
                    "namespace": "acme",
                    "name": "app",
                    "visibility": "Public",
                    "shortDescription": "test image",
                },
                "tags": [{"source": "main", "dockerTag": "latest"}],
            },
        }
        custom.create_namespaced_custom_object(GROUP, VERSION, k8s_namespace, PLURAL, body)
    # The signed target: app-00's own secret.
    secret = b"s0"
    payload = hooks.encode(hooks.github_push(full_name="acme/app", host="127.0.0.1:9"))
    path = f"/hooks/github?automatedbuild={k8s_namespace}/app-00"

    def signed() -> tuple[int, str]:
        return operator.deliver(path, payload, hooks.github_headers("push", payload, secret))

    eventually(lambda: signed()[0] == 202, 60, "the operator knows app-00 and its secret")
    stop = threading.Event()
    body = _hostile_body(4 * 1024 * 1024)
    clients = [
        threading.Thread(target=_flood, args=(operator.webhook_port, body, stop), daemon=True)
        for _ in range(6)
    ]
    for flooder in clients:
        flooder.start()
    latencies = []
    try:
        time.sleep(1.0)
        for _ in range(10):
            started = time.monotonic()
            status, _ = signed()
            latencies.append(time.monotonic() - started)
            assert status == 202
            time.sleep(0.1)
    finally:
        stop.set()
        for flooder in clients:
            flooder.join(timeout=60)
    assert operator.proc is not None
    assert operator.proc.poll() is None
    assert max(latencies) < 1.0, f"signed deliveries took {sorted(latencies)} s"
