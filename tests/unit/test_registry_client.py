"""Pure parts of the registry client: challenges, token grants, digest comparison."""

from __future__ import annotations

import base64
import json

import pytest

from autobuild.api.conditions import Reason
from autobuild.registry.client import (
    Challenge,
    Response,
    is_private_ip_literal,
    open_session,
    parse_challenge,
    token_grants,
)
from autobuild.registry.digests import TagDigest, compare_digests


def test_bearer_challenge_with_quoted_commas_and_escapes() -> None:
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:acme/app:pull,push",error="insufficient_scope",note="a \\"q\\""'
    )
    assert parse_challenge(header) == Challenge(
        "bearer",
        {
            "realm": "https://auth.docker.io/token",
            "service": "registry.docker.io",
            "scope": "repository:acme/app:pull,push",
            "error": "insufficient_scope",
            "note": 'a "q"',
        },
    )


def test_basic_challenge_and_empty_header() -> None:
    assert parse_challenge('Basic realm="Registry Realm"') == Challenge(
        "basic", {"realm": "Registry Realm"}
    )
    assert parse_challenge("") is None


def _jwt(claims: object) -> str:
    def part(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2ln"


def test_token_grants_reads_the_access_claim_for_the_repository_only() -> None:
    token = _jwt(
        {
            "access": [
                {"type": "repository", "name": "acme/app", "actions": ["pull"]},
                {"type": "repository", "name": "acme/other", "actions": ["push", "pull"]},
            ]
        }
    )
    assert token_grants(token, "acme/app") == frozenset({"pull"})
    assert token_grants(token, "acme/none") == frozenset()
    assert token_grants(_jwt({"sub": "x"}), "acme/app") is None
    assert token_grants("opaque-token", "acme/app") is None
    assert token_grants("a.!!!.c", "acme/app") is None


def test_error_text_of_registry_errors() -> None:
    body = json.dumps({"errors": [{"code": "DENIED", "message": "requested access denied"}]})
    assert Response(403, {}, body.encode()).error_text() == (
        "HTTP 403 (DENIED: requested access denied)"
    )
    assert Response(404, {}, b"<html>").error_text() == "HTTP 404"


def test_compare_digests() -> None:
    good = compare_digests("sha256:a", [TagDigest("v1", "sha256:a"), TagDigest("l", "sha256:a")])
    assert (good.ok, good.reason) == (True, "")
    bad = compare_digests("sha256:a", [TagDigest("v1", "sha256:a"), TagDigest("l", None)])
    assert (bad.ok, bad.reason) == (False, Reason.DIGEST_MISMATCH)
    assert bad.message == "Kaniko reported sha256:a, the registry has l: not found"
    assert bad.as_status() == {"v1": "sha256:a", "l": None}


def test_a_ca_bundle_that_is_not_pem_is_refused() -> None:
    with pytest.raises(ValueError, match="not PEM certificates"):
        open_session(b"not a certificate")


@pytest.mark.parametrize(
    ("host", "private"),
    [
        ("127.0.0.1", True),
        ("127.1", True),  # inet_aton form: the resolver connects to 127.0.0.1
        ("0x7f.1", True),
        ("10.1.2.3", True),
        ("169.254.169.254", True),  # cloud metadata
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("fe80::1%eth0", True),
        ("0.0.0.0", True),
        ("8.8.8.8", False),
        ("2001:4860:4860::8888", False),
        ("auth.docker.io", False),
        ("localhost", False),  # a name, not a literal: as go-containerregistry treats it
    ],
)
def testis_private_ip_literals_for_token_realms(host: str, private: bool) -> None:
    assert is_private_ip_literal(host) is private


def test_the_internal_realm_hosts_setting() -> None:
    from autobuild.registry.client import realm_host_allowed
    from autobuild.settings import BuildSettings

    settings = BuildSettings.from_env(
        {"AUTOBUILD_INTERNAL_REALM_HOSTS": " Auth.Registry.svc , localhost:5001,,"}
    )
    assert settings.internal_realm_hosts == ("Auth.Registry.svc", "localhost:5001")
    assert realm_host_allowed("auth.registry.svc", settings.internal_realm_hosts)
    assert realm_host_allowed("LOCALHOST", settings.internal_realm_hosts)  # no port compared
    assert not realm_host_allowed("registry.svc", settings.internal_realm_hosts)
    assert not realm_host_allowed("auth.registry.svc.evil.io", settings.internal_realm_hosts)
    assert not realm_host_allowed("127.0.0.1", ())
    assert realm_host_allowed("169.254.169.254", ("*",))
    assert BuildSettings().internal_realm_hosts == ()
