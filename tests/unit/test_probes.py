"""The operator's liveness and readiness endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
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


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    """True when the server closes ``sock`` (EOF or reset) within ``within`` seconds."""
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_idle_connections_take_no_thread_each_and_are_closed_after_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """300 connections that never send a request (the ThreadingHTTPServer started a thread for
    each and kept it forever): the thread count stays put, probes are still answered, and
    every idle connection is closed by the server after the request timeout."""
    # raising=False: the attribute is new (the test must run, and fail, on the old server too)
    monkeypatch.setattr(probes_module, "_REQUEST_SECONDS", 1.0, raising=False)
    probes = Probes()
    server = probes.serve("127.0.0.1", 0)
    port = server.server_address[1]
    idle: list[socket.socket] = []
    try:
        threads_before = threading.active_count()
        for _ in range(300):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        # A half-sent request head is as idle as no request at all.
        idle[-1].sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        assert threading.active_count() <= threads_before + 1
        probes.beat()  # no loop beats here; opening 300 connections may take a while
        assert status_of(port, "/healthz") == 200  # answered while 300 sit there
        # Generous for a loaded host: the timeout is 1 s.
        assert all(_closed_by_server(sock, 15.0) for sock in idle)
        assert threading.active_count() <= threads_before + 1
        deadline = time.monotonic() + 10
        while server.connection_count() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.connection_count() == 0
        assert status_of(port, "/readyz") == 503
    finally:
        for sock in idle:
            sock.close()
        server.shutdown()


def test_an_oversized_or_malformed_request_is_refused() -> None:
    probes = Probes()
    server = probes.serve("127.0.0.1", 0)
    port = server.server_address[1]
    try:
        for request, code in (
            (b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n\r\n", b" 431 "),
            (b"garbage\r\n\r\n", b" 400 "),
            (b"POST /healthz HTTP/1.1\r\n\r\n", b" 405 "),
        ):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                with contextlib.suppress(OSError):  # the server may answer before all is sent
                    sock.sendall(request)
                answer = sock.recv(4096)
                assert code in answer.split(b"\r\n", 1)[0], (request[:30], answer)
    finally:
        server.shutdown()


def test_a_blocked_event_loop_is_reported_dead_by_the_probe_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Why the server is not on the loop: while a coroutine blocks the loop, /healthz still
    answers, and answers 503."""
    monkeypatch.setattr(probes_module, "_HEARTBEAT_SECONDS", 0.05)
    monkeypatch.setattr(probes_module, "_STALE_AFTER_SECONDS", 0.3)
    probes = Probes()
    server = probes.serve("127.0.0.1", 0)
    port = server.server_address[1]
    seen: list[int] = []

    def ask_while_blocked() -> None:
        time.sleep(0.8)
        seen.append(status_of(port, "/healthz"))

    async def block_the_loop() -> None:
        beating = asyncio.create_task(probes.heartbeat())
        await asyncio.sleep(0.1)
        asker = threading.Thread(target=ask_while_blocked)
        asker.start()
        time.sleep(4.0)  # the loop is stuck: no beat
        asker.join()
        beating.cancel()

    try:
        asyncio.run(block_the_loop())
    finally:
        server.shutdown()
    assert seen == [503]
