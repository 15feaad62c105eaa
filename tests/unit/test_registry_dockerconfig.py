"""Push secrets: which entry of a dockerconfigjson Secret serves the registry in spec.image."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from autobuild.api.conditions import Reason
from autobuild.api.registries import base_url, is_docker_hub, normalize_registry
from autobuild.registry.dockerconfig import (
    Credentials,
    PushSecretError,
    credentials_for,
    credentials_from_secret,
    decode_secret,
)


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def _lookup(secret: Any, registry: str) -> Credentials:
    """As the operator does: decode the API object (None: not found), then look up."""
    view = None if secret is None else decode_secret(secret, "regcred")
    return credentials_from_secret(view, "regcred", registry)


def _secret(auths: dict[str, Any], secret_type: str = "kubernetes.io/dockerconfigjson") -> Any:
    config = base64.b64encode(json.dumps({"auths": auths}).encode()).decode()
    return {"type": secret_type, "data": {".dockerconfigjson": config}}


@pytest.mark.parametrize(
    "key",
    [
        "https://index.docker.io/v1/",
        "index.docker.io",
        "docker.io",
        "registry-1.docker.io",
        "https://registry-1.docker.io/v2/",
    ],
)
@pytest.mark.parametrize("registry", ["docker.io", "index.docker.io", "registry-1.docker.io"])
def test_docker_hub_keys_and_aliases_all_match(key: str, registry: str) -> None:
    secret = _secret({key: {"auth": _auth("acme", "tok:en")}})
    assert _lookup(secret, registry) == Credentials("acme", "tok:en")


def test_hosts_with_ports_schemes_and_case_match_only_the_same_port() -> None:
    auths = {
        "http://Registry.Local:5000/": {"username": "a", "password": "one"},
        "registry.local:5001": {"username": "b", "password": "two"},
        "registry.local": {"username": "c", "password": "three"},
    }
    config = json.dumps({"auths": auths})
    assert credentials_for(config, "registry.local:5000", secret_name="s").password == "one"
    assert credentials_for(config, "registry.local:5001", secret_name="s").password == "two"
    assert credentials_for(config, "registry.local", secret_name="s").password == "three"


def test_no_entry_for_the_registry_names_the_keys_and_the_hub_quirk() -> None:
    secret = _secret({"ghcr.io": {"auth": _auth("a", "b")}})
    with pytest.raises(PushSecretError) as caught:
        _lookup(secret, "docker.io")
    assert caught.value.reason == Reason.PUSH_SECRET_INVALID
    assert "no entry for registry docker.io" in caught.value.message
    assert "https://index.docker.io/v1/" in caught.value.message
    assert "ghcr.io" in caught.value.message


def test_credentials_for_another_registry_are_never_returned() -> None:
    secret = _secret({"evil.example": {"auth": _auth("a", "b")}})
    with pytest.raises(PushSecretError, match=r"no entry for registry registry\.local"):
        _lookup(secret, "registry.local")


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        (None, "'regcred' not found"),
        ({"type": "Opaque", "data": {}}, "has type 'Opaque'"),
        ({"type": "kubernetes.io/dockercfg", "data": {}}, "legacy"),
        ({"type": "kubernetes.io/dockerconfigjson", "data": {}}, "no key .dockerconfigjson"),
        (
            {"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "%%%"}},
            "not valid base64 of UTF-8 text",
        ),
        (
            {
                "type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": base64.b64encode(b"{not json").decode()},
            },
            "not JSON",
        ),
        (
            {
                "type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": base64.b64encode(b'{"docker.io": {}}').decode()},
            },
            'no "auths" object',
        ),
        (_secret({"docker.io": {"auth": "bm9jb2xvbg=="}}), "not base64 of user:password"),
        (_secret({"docker.io": {"auth": "***"}}), "not base64 of user:password"),
        (_secret({"docker.io": {"identitytoken": "x"}}), "identity and registry tokens"),
        (_secret({"docker.io": {"username": "a"}}), 'neither "auth" nor'),
        (_secret({"docker.io": "text"}), "not an object"),
        (
            _secret(
                {
                    "docker.io": {"auth": _auth("a", "one")},
                    "https://index.docker.io/v1/": {"auth": _auth("a", "two")},
                }
            ),
            "conflicting entries",
        ),
    ],
)
def test_malformed_secrets_are_push_secret_invalid(secret: Any, message: str) -> None:
    with pytest.raises(PushSecretError) as caught:
        _lookup(secret, "docker.io")
    assert message in caught.value.message
    assert caught.value.reason == Reason.PUSH_SECRET_INVALID


def test_duplicate_entries_with_equal_credentials_are_fine() -> None:
    secret = _secret(
        {"docker.io": {"auth": _auth("a", "b")}, "index.docker.io": {"auth": _auth("a", "b")}}
    )
    assert _lookup(secret, "docker.io") == Credentials("a", "b")


def test_the_password_never_appears_in_repr() -> None:
    assert "hunter2" not in repr(Credentials("a", "hunter2"))


def test_hosts() -> None:
    assert normalize_registry("HTTPS://Index.Docker.IO/v1/") == "docker.io"
    assert normalize_registry("quay.io") == "quay.io"
    assert is_docker_hub("registry-1.docker.io")
    assert not is_docker_hub("docker.example.com")
    assert base_url("docker.io", []) == "https://registry-1.docker.io"
    assert base_url("127.0.0.1:5000", ["127.0.0.1:5000"]) == "http://127.0.0.1:5000"
    assert base_url("127.0.0.1:5000", ["127.0.0.1:5001"]) == "https://127.0.0.1:5000"
