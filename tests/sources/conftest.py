"""Fixtures for the source tests: a real git server on 127.0.0.1."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# tests/ on sys.path makes ``support`` importable without a tests package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support.gitserver import GitServer


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    """A started :class:`GitServer`, shared by the tests of one module."""
    with GitServer(tmp_path_factory.mktemp("gitserver")) as server:
        yield server
