"""Push credentials from a ``kubernetes.io/dockerconfigjson`` Secret (pure).

A pushSecret is used only for the registry named in ``spec.image``: the only lookup offered is
"the entry for this registry", so credentials for other hosts in the same Secret are never read
into a request. Errors are :class:`PushSecretError` (reason ``PushSecretInvalid``) with a
message that names the Secret and the problem, never a credential.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from autobuild.registry import reasons
from autobuild.registry.hosts import DOCKER_HUB, DOCKER_HUB_CONFIG_KEY, normalize_registry

SECRET_TYPE: Final = "kubernetes.io/dockerconfigjson"  # noqa: S105 (a type name)
SECRET_KEY: Final = ".dockerconfigjson"  # noqa: S105 (a key name)
LEGACY_SECRET_TYPE: Final = "kubernetes.io/dockercfg"  # noqa: S105 (a type name)


@dataclass(frozen=True)
class Credentials:
    """A user name and password (or access token) for one registry; the password never prints."""

    username: str
    password: str = field(repr=False)


class PushSecretError(ValueError):
    """The push Secret is missing, of the wrong type, malformed, or lacks the registry."""

    reason: Final = reasons.PUSH_SECRET_INVALID

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def credentials_from_secret(
    secret: Mapping[str, Any] | None, secret_name: str, registry: str
) -> Credentials:
    """The credentials for ``registry`` in a Secret object as read from the API (``data`` base64).

    ``secret`` is ``None`` when the Secret does not exist. Accepts the dict form of a Secret
    (``{"type": ..., "data": {".dockerconfigjson": "<base64>"}}``).
    """
    if secret is None:
        raise PushSecretError(f"push Secret {secret_name!r} not found")
    secret_type = secret.get("type")
    if secret_type == LEGACY_SECRET_TYPE:
        raise PushSecretError(
            f"push Secret {secret_name!r} is a legacy {LEGACY_SECRET_TYPE} Secret; Kaniko reads "
            f"config.json: recreate it with `kubectl create secret docker-registry` "
            f"(type {SECRET_TYPE})"
        )
    if secret_type != SECRET_TYPE:
        raise PushSecretError(
            f"push Secret {secret_name!r} has type {secret_type!r}, expected {SECRET_TYPE}"
        )
    encoded = (secret.get("data") or {}).get(SECRET_KEY)
    if not encoded:
        raise PushSecretError(f"push Secret {secret_name!r} has no key {SECRET_KEY}")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise PushSecretError(
            f"push Secret {secret_name!r}: {SECRET_KEY} is not valid base64"
        ) from None
    return credentials_for(raw, registry, secret_name=secret_name)


def credentials_for(config_json: bytes | str, registry: str, *, secret_name: str) -> Credentials:
    """The credentials for ``registry`` in a docker ``config.json`` document.

    Keys match by host: ``https://index.docker.io/v1/``, ``index.docker.io``,
    ``registry-1.docker.io`` and ``docker.io`` all name Docker Hub; a scheme, a path and the
    letter case of the host are ignored; ports must match.
    """
    auths = _auths(config_json, secret_name)
    wanted = normalize_registry(registry)
    matches = [(key, entry) for key, entry in auths.items() if normalize_registry(key) == wanted]
    if not matches:
        hint = f" (Docker Hub's key is {DOCKER_HUB_CONFIG_KEY})" if wanted == DOCKER_HUB else ""
        raise PushSecretError(
            f"push Secret {secret_name!r} has no entry for registry {wanted}{hint}; "
            f"it has entries for: {', '.join(sorted(auths)) or 'none'}"
        )
    found = {_entry_credentials(key, entry, secret_name) for key, entry in matches}
    if len(found) > 1:
        raise PushSecretError(
            f"push Secret {secret_name!r} has conflicting entries for registry {wanted}: "
            f"{', '.join(sorted(key for key, _ in matches))}"
        )
    return found.pop()


def _auths(config_json: bytes | str, secret_name: str) -> Mapping[str, Any]:
    try:
        document = json.loads(config_json)
    except (ValueError, UnicodeDecodeError):
        raise PushSecretError(f"push Secret {secret_name!r}: {SECRET_KEY} is not JSON") from None
    auths = document.get("auths") if isinstance(document, dict) else None
    if not isinstance(auths, dict):
        raise PushSecretError(
            f'push Secret {secret_name!r}: {SECRET_KEY} has no "auths" object '
            "(a docker config.json is expected)"
        )
    return auths


def _entry_credentials(key: str, entry: Any, secret_name: str) -> Credentials:
    where = f"push Secret {secret_name!r}, entry {key!r}"
    if not isinstance(entry, dict):
        raise PushSecretError(f"{where}: not an object")
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(str(entry["auth"]), validate=True).decode()
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise PushSecretError(f'{where}: "auth" is not base64 of user:password') from None
        username, sep, password = decoded.partition(":")
        if not sep or not username:
            raise PushSecretError(f'{where}: "auth" is not base64 of user:password')
        return Credentials(username, password)
    user, secret = entry.get("username"), entry.get("password")
    if isinstance(user, str) and user and isinstance(secret, str):
        return Credentials(user, secret)
    if entry.get("identitytoken") or entry.get("registrytoken"):
        raise PushSecretError(
            f"{where}: identity and registry tokens are not supported; store a user name with "
            "a password or access token"
        )
    raise PushSecretError(f'{where}: neither "auth" nor "username" and "password"')
