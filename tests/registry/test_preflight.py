"""Push preflight against the real registry: Basic auth and token auth, right and wrong."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path

from autobuild.api.conditions import Reason
from autobuild.registry.client import open_session
from autobuild.registry.dockerconfig import Credentials
from autobuild.registry.preflight import PushCheck, check_push
from tests.support.registry import Registry, TokenRegistry
from tests.support.tokenserver import TokenServer


def _check(registry: Registry, repository: str, credentials: Credentials | None) -> PushCheck:
    # The token server's realm is a name on loopback: allowed as the operator's
    # AUTOBUILD_INTERNAL_REALM_HOSTS allows it (test_client_edges tests the refusal).
    return asyncio.run(
        check_push(
            registry.host,
            repository,
            credentials,
            insecure_registries=[registry.host],
            internal_realm_hosts=["localhost"],
        )
    )


def test_basic_auth_right_credentials_may_push(
    basic_registry: Registry, creds: Callable[[str], Credentials]
) -> None:
    result = _check(basic_registry, "alice/app", creds("alice"))
    assert result == PushCheck(ok=True)
    # The upload it started was cancelled: the repository has no tags and no uploads left.
    assert "DELETE /v2/alice/app/blobs/uploads/" in basic_registry.log_text()


def test_basic_auth_wrong_password_is_unauthorized(basic_registry: Registry) -> None:
    result = _check(basic_registry, "alice/app", Credentials("alice", "not-the-password"))
    assert not result.ok
    assert result.reason == Reason.PUSH_UNAUTHORIZED
    assert basic_registry.host in result.message
    assert "not-the-password" not in result.message


def test_basic_auth_without_credentials_is_unauthorized(basic_registry: Registry) -> None:
    result = _check(basic_registry, "alice/app", None)
    assert (result.ok, result.reason) == (False, Reason.PUSH_UNAUTHORIZED)
    assert "requires credentials" in result.message


def test_token_auth_owner_may_push(
    token_registry: TokenRegistry, creds: Callable[[str], Credentials]
) -> None:
    result = _check(token_registry.registry, "alice/app", creds("alice"))
    assert result == PushCheck(ok=True)
    user, query = token_registry.tokens.requests[-1]
    assert user == "alice"
    assert query["scope"] == ["repository:alice/app:push,pull"]
    assert query["service"] == [token_registry.tokens.service]


def test_token_auth_pull_only_account_is_refused_with_the_grant(
    token_registry: TokenRegistry, creds: Callable[[str], Credentials]
) -> None:
    result = _check(token_registry.registry, "alice/app", creds("bob"))
    assert (result.ok, result.reason) == (False, Reason.PUSH_UNAUTHORIZED)
    assert "grants pull, not push" in result.message
    assert f"{token_registry.registry.host}/alice/app" in result.message


def test_token_auth_wrong_password_is_refused_by_the_token_endpoint(
    token_registry: TokenRegistry,
) -> None:
    result = _check(token_registry.registry, "alice/app", Credentials("alice", "wrong"))
    assert (result.ok, result.reason) == (False, Reason.PUSH_UNAUTHORIZED)
    assert "token endpoint" in result.message
    assert "refused the credentials" in result.message


def test_token_auth_foreign_namespace_is_refused(
    token_registry: TokenRegistry, creds: Callable[[str], Credentials]
) -> None:
    result = _check(token_registry.registry, "bob/app", creds("alice"))
    assert (result.ok, result.reason) == (False, Reason.PUSH_UNAUTHORIZED)
    assert "grants nothing, not push" in result.message


def test_unreachable_registry_is_a_distinct_reason(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{sock.getsockname()[1]}"
        # Bound but not listening: connections are refused.
        result = asyncio.run(
            check_push(host, "alice/app", Credentials("a", "b"), insecure_registries=[host])
        )
    assert (result.ok, result.reason) == (False, Reason.REGISTRY_UNREACHABLE)
    assert host in result.message


def test_credentials_never_go_over_http_unless_the_registry_is_insecure(
    token_registry: TokenRegistry, creds: Callable[[str], Credentials]
) -> None:
    before = len(token_registry.tokens.requests)
    # Not listed as insecure: the client speaks https to a plain-http registry and fails
    # before any credential is sent.
    result = asyncio.run(check_push(token_registry.registry.host, "alice/app", creds("alice")))
    assert (result.ok, result.reason) == (False, Reason.REGISTRY_UNREACHABLE)
    assert len(token_registry.tokens.requests) == before


def test_a_token_realm_on_a_private_ip_literal_is_refused(
    tmp_path: Path, creds: Callable[[str], Credentials]
) -> None:
    with (
        TokenServer(users={"alice": "alice-pw"}, realm_host="127.0.0.1") as tokens,
        Registry(token=tokens, workdir=tmp_path) as registry,
    ):
        result = _check(registry, "alice/app", creds("alice"))
        assert (result.ok, result.reason) == (False, Reason.PUSH_UNAUTHORIZED)
        assert "private address" in result.message
        assert tokens.requests == []


def test_an_anonymous_registry_needs_no_credentials(tmp_path: Path) -> None:
    with Registry(workdir=tmp_path) as registry:
        assert _check(registry, "team/app", None) == PushCheck(ok=True)


def test_a_self_signed_registry_is_trusted_only_with_its_ca_bundle(
    tmp_path: Path, creds: Callable[[str], Credentials]
) -> None:
    async def check(ca_bundle: bytes | None) -> PushCheck:
        async with open_session(ca_bundle) as session:
            return await check_push(registry.host, "alice/app", creds("alice"), session=session)

    with Registry(users={"alice": "alice-pw"}, tls=True, workdir=tmp_path) as registry:
        assert registry.url.startswith("https://")
        assert asyncio.run(check(registry.ca_pem)) == PushCheck(ok=True)
        untrusted = asyncio.run(check(None))
        # Not transient: Kaniko would fail on the same certificate.
        assert (untrusted.ok, untrusted.reason) == (
            False,
            Reason.REGISTRY_CERTIFICATE_UNTRUSTED,
        )
        assert "certificate" in untrusted.message.lower()
