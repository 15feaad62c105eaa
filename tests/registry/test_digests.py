"""Digest verification against the real registry, with images pushed by crane."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from autobuild.api.conditions import Reason
from autobuild.registry.digests import TagDigest, read_tag_digests, verify_digests
from autobuild.registry.dockerconfig import Credentials
from tests.support.crane import Crane
from tests.support.registry import Registry, TokenRegistry


@pytest.fixture(scope="module")
def pushed(
    tmp_path_factory: pytest.TempPathFactory,
    basic_registry: Registry,
    token_registry: TokenRegistry,
) -> dict[str, str]:
    """Images in both registries: v1 and latest are one image, other is another."""
    home = tmp_path_factory.mktemp("crane")
    crane = Crane(
        home,
        {
            basic_registry.host: ("alice", "alice-pw"),
            token_registry.registry.host: ("alice", "alice-pw"),
        },
    )
    digests = {}
    for host in (basic_registry.host, token_registry.registry.host):
        digests[host] = crane.push_random_image(f"{host}/alice/app:v1")
        crane.tag(f"{host}/alice/app:v1", "latest")
        crane.push_random_image(f"{host}/alice/app:other")
    return digests


@pytest.mark.parametrize("auth", ["basic", "token"])
def test_tags_of_the_pushed_image_match_cranes_digest(
    auth: str,
    basic_registry: Registry,
    token_registry: TokenRegistry,
    pushed: dict[str, str],
    creds: Callable[[str], Credentials],
) -> None:
    registry = basic_registry if auth == "basic" else token_registry.registry
    expected = pushed[registry.host]
    result = asyncio.run(
        verify_digests(
            registry.host,
            "alice/app",
            ["v1", "latest"],
            expected,
            creds("bob"),  # reading needs pull only: bob may pull alice's repositories
            insecure_registries=[registry.host],
            internal_realm_hosts=["localhost"],  # the token server's realm (loopback)
        )
    )
    assert result.ok, result.message
    assert result.as_status() == {"v1": expected, "latest": expected}


def test_a_tag_with_another_image_or_missing_is_a_mismatch(
    basic_registry: Registry, pushed: dict[str, str], creds: Callable[[str], Credentials]
) -> None:
    expected = pushed[basic_registry.host]
    found = asyncio.run(
        read_tag_digests(
            basic_registry.host,
            "alice/app",
            ["v1", "other", "never-pushed"],
            creds("alice"),
            insecure_registries=[basic_registry.host],
        )
    )
    assert found[0] == TagDigest("v1", expected)
    assert found[1].digest is not None
    assert found[1].digest.startswith("sha256:")
    assert found[1].digest != expected
    assert found[2] == TagDigest("never-pushed", None)
    result = asyncio.run(
        verify_digests(
            basic_registry.host,
            "alice/app",
            ["v1", "other", "never-pushed"],
            expected,
            creds("alice"),
            insecure_registries=[basic_registry.host],
        )
    )
    assert (result.ok, result.reason) == (False, Reason.DIGEST_MISMATCH)
    assert f"other: {found[1].digest}" in result.message
    assert "never-pushed: not found" in result.message
    assert "v1:" not in result.message


def test_refused_credentials_are_reported_not_raised(
    basic_registry: Registry, pushed: dict[str, str], tmp_path: Path
) -> None:
    result = asyncio.run(
        verify_digests(
            basic_registry.host,
            "alice/app",
            ["v1"],
            pushed[basic_registry.host],
            Credentials("alice", "wrong"),
            insecure_registries=[basic_registry.host],
        )
    )
    assert (result.ok, result.reason, result.tags) == (False, Reason.PUSH_UNAUTHORIZED, ())
