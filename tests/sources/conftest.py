"""Fixtures for the source tests: a real git server on 127.0.0.1, and what git runs."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.gitserver import GitServer


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    """A started :class:`GitServer`, shared by the tests of one module."""
    with GitServer(tmp_path_factory.mktemp("gitserver")) as server:
        yield server


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Records the argv, env and pid of every process ``autobuild.sources.git`` starts."""
    calls: list[dict[str, Any]] = []
    real = asyncio.create_subprocess_exec

    async def recording(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        proc = await real(*args, **kwargs)
        calls.append({"argv": [str(a) for a in args], "env": kwargs.get("env"), "pid": proc.pid})
        return proc

    monkeypatch.setattr(asyncio, "create_subprocess_exec", recording)
    return calls


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose listener completes TCP handshakes but never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]
