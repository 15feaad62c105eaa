"""The operator's liveness and readiness endpoints."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

import pytest

from autobuild.controller import probes as probes_module
from autobuild.controller.probes import Probes


def status_of(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_ready_only_after_startup_and_dead_when_the_loop_stalls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    probes = Probes()
    server = probes.serve("127.0.0.1", 0)
    port = server.server_address[1]
    try:
        assert status_of(port, "/healthz") == 200
        assert status_of(port, "/readyz") == 503
        probes.ready.set()
        assert status_of(port, "/readyz") == 200
        assert status_of(port, "/other") == 404
        monkeypatch.setattr(probes_module, "_STALE_AFTER_SECONDS", -1.0)
        assert status_of(port, "/healthz") == 503
        assert status_of(port, "/readyz") == 503
    finally:
        server.shutdown()


def test_heartbeat_beats_on_the_loop() -> None:
    probes = Probes()
    probes._last_beat = 0.0

    async def one_beat() -> None:
        task = asyncio.create_task(probes.heartbeat())
        await asyncio.sleep(0.05)
        task.cancel()

    asyncio.run(one_beat())
    assert probes.alive()
