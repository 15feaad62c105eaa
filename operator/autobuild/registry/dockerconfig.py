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
from typing import Any, Final, Protocol

from autobuild.api.conditions import Reason
from autobuild.api.registries import DOCKER_HUB, DOCKER_HUB_CONFIG_KEY, normalize_registry

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

    reason: Final = Reason.PUSH_SECRET_INVALID

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SecretLike(Protocol):
    """A Secret as the operator keeps it: its type and its *decoded* values (the controller's
    ``SecretView`` fits; :func:`decode_secret` makes one from an API object)."""

    @property
    def type(self) -> str:
        """The Secret's ``type``."""
        ...

    @property
    def data(self) -> Mapping[str, str]:
        """Key → decoded value."""
        ...


@dataclass(frozen=True)
class DecodedSecret:
    """A Secret's type and decoded values."""

    type: str
    data: Mapping[str, str] = field(repr=False)


def decode_secret(obj: Mapping[str, Any], secret_name: str) -> DecodedSecret:
    """Decode a Secret object as read from the API (``data`` values in base64)."""
    data: dict[str, str] = {}
    for key, value in (obj.get("data") or {}).items():
        try:
            data[key] = base64.b64decode(value or "", validate=True).decode()
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise PushSecretError(
                f"push Secret {secret_name!r}: {key} is not valid base64 of UTF-8 text"
            ) from None
    return DecodedSecret(str(obj.get("type") or ""), data)


def credentials_from_secret(
    secret: SecretLike | None, secret_name: str, registry: str
) -> Credentials:
    """The credentials for ``registry`` in the push Secret; ``secret`` None: it does not exist."""
    if secret is None:
        raise PushSecretError(f"push Secret {secret_name!r} not found")
    if secret.type == LEGACY_SECRET_TYPE:
        raise PushSecretError(
            f"push Secret {secret_name!r} is a legacy {LEGACY_SECRET_TYPE} Secret; Kaniko reads "
            f"config.json: recreate it with `kubectl create secret docker-registry` "
            f"(type {SECRET_TYPE})"
        )
    if secret.type != SECRET_TYPE:
        raise PushSecretError(
            f"push Secret {secret_name!r} has type {secret.type!r}, expected {SECRET_TYPE}"
        )
    config = secret.data.get(SECRET_KEY)
    if not config:
        raise PushSecretError(f"push Secret {secret_name!r} has no key {SECRET_KEY}")
    return credentials_for(config, registry, secret_name=secret_name)


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
