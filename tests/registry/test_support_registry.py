"""The test harness itself: tests/support/registry.py runs a real registry and cleans up."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.registry import Registry, RegistryError
from tests.support.tokenserver import TokenServer


def _get(url: str, auth: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(url)
    if auth is not None:
        request.add_header("Authorization", _basic(*auth))
    return _status(request)


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


def test_token_registry_accepts_only_the_token_servers_grants(tmp_path: Path) -> None:
    with (
        TokenServer(users={"alice": "pw", "bob": "pw2"}) as tokens,
        Registry(token=tokens, workdir=tmp_path) as registry,
    ):
        status, challenge = _challenge(f"{registry.url}/v2/")
        assert status == 401
        assert challenge == (f'Bearer realm="{tokens.realm}",service="{tokens.service}"')
        for user, password, expected in (("alice", "pw", 202), ("bob", "pw2", 401)):
            token = _token(tokens, user, password, "repository:alice/app:push,pull")
            upload = urllib.request.Request(
                f"{registry.url}/v2/alice/app/blobs/uploads/",
                method="POST",
                headers={"Authorization": f"Bearer {token}"},
            )
            assert _status(upload) == expected
        wrong = urllib.request.Request(
            f"{tokens.realm}?service={tokens.service}",
            headers={"Authorization": _basic("alice", "nope")},
        )
        assert _status(wrong) == 401


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _status(request: urllib.request.Request) -> int:
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def _challenge(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status), ""
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("WWW-Authenticate", "")


def _token(tokens: TokenServer, user: str, password: str, scope: str) -> str:
    request = urllib.request.Request(
        f"{tokens.realm}?service={tokens.service}&scope={scope}",
        headers={"Authorization": _basic(user, password)},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.loads(response.read())["token"])
