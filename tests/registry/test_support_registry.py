"""The test harness itself: tests/support/registry.py runs a real registry and cleans up."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from support.registry import Registry, RegistryError


def _get(url: str, auth: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(url)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_anonymous_registry_answers_v2_and_leaves_nothing(tmp_path: Path) -> None:
    with Registry(workdir=tmp_path) as registry:
        assert registry.host.startswith("127.0.0.1:")
        assert _get(f"{registry.url}/v2/") == 200
        assert _get(f"{registry.url}/v2/team/app/tags/list") == 404
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RegistryError, match="not started"):
        _ = registry.host


def test_htpasswd_registry_checks_the_password(tmp_path: Path) -> None:
    with Registry(users={"alice": "s3cret"}, workdir=tmp_path) as registry:
        assert _get(f"{registry.url}/v2/") == 401
        assert _get(f"{registry.url}/v2/", ("alice", "wrong")) == 401
        assert _get(f"{registry.url}/v2/", ("alice", "s3cret")) == 200


def test_two_registries_run_side_by_side(tmp_path: Path) -> None:
    with Registry(workdir=tmp_path) as first, Registry(workdir=tmp_path) as second:
        assert first.host != second.host
        assert _get(f"{first.url}/v2/") == _get(f"{second.url}/v2/") == 200
