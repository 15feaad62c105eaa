"""``autobuild run`` as a real subprocess on loopback, for the tests on the real control plane
(shared by the k8s test files; their harness is operator_harness.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

# Build pods are pinned to a label no node has (AUTOBUILD_NODE_SELECTOR), see tests/k8s/conftest.py.
BUILDER_LABEL = ("autobuild.dev/test-builder", "kwok")


def eventually(check: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Operator:
    """``autobuild run`` as a real subprocess."""

    def __init__(
        self,
        kubeconfig: Path,
        log: Path,
        registry: str = "",
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        webhook_port: int = 0,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log = log
        self.registry = registry
        self.args = list(args)  # more `autobuild run` options, e.g. ["-n", "ns"]
        self.env = dict(env or {})  # more AUTOBUILD_* settings
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        # Chosen before the start when a setting must name it (AUTOBUILD_PUBLIC_URL).
        self.webhook_port = webhook_port

    def start(self) -> None:
        port = free_port()
        webhook_port = self.webhook_port or free_port()
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig))
        env["AUTOBUILD_NODE_SELECTOR"] = "=".join(BUILDER_LABEL)
        # The loopback git server speaks plain HTTP: tokens may go there, and only there.
        env["AUTOBUILD_INSECURE_GIT_HOSTS"] = "127.0.0.1"
        # Plain-HTTP registries: the unused default of these tests, and the real one.
        env["AUTOBUILD_INSECURE_REGISTRIES"] = ",".join(
            filter(None, ["127.0.0.1:5000", self.registry])
        )
        env.update(self.env)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "autobuild.cli",
                    "run",
                    "--probes",
                    f"127.0.0.1:{port}",
                    "--webhook-address",
                    f"127.0.0.1:{webhook_port}",
                    "--log-format",
                    "json",
                    *self.args,
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

        def healthy() -> bool:
            assert self.proc is not None
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as answer:
                    return bool(answer.status == 200)
            except OSError:
                return False

        try:
            eventually(healthy, 60, "operator readiness")
        except BaseException:
            self.stop()  # a fixture that fails to start never reaches its teardown
            raise
        self.port = port
        self.webhook_port = webhook_port

    def deliver(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        """POST a webhook delivery; the HTTP status and body of the answer."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.webhook_port}{path}", data=body, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return int(answer.status), answer.read().decode()
        except urllib.error.HTTPError as error:
            return int(error.code), error.read().decode()

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """GET /metrics of the webhook port, parsed by prometheus-client's own text parser:
        sample (name, sorted labels) -> value."""
        url = f"http://127.0.0.1:{self.webhook_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as answer:
            text = answer.read().decode()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
