"""A Docker Registry v2 token server on 127.0.0.1 for tests (what auth.docker.io is to Hub).

It implements the token endpoint of the distribution token-auth spec: ``GET /token?service=S&
scope=repository:NAME:ACTIONS`` with optional HTTP Basic credentials answers
``{"token", "access_token", "expires_in", "issued_at"}``; the token is an RS256 JWT whose header
carries the signing certificate (``x5c``), which :class:`support.registry.Registry` trusts
through its ``rootcertbundle``. Like Docker Hub it grants only what the account may do: a scope
asking for more yields a token with fewer actions (not an error), and wrong credentials yield
``401``. The key and the self-signed certificate are made with ``cryptography`` per instance.

Who may do what: ``grants={"alice": {"team/app": ["pull", "push"], "team/*": ["pull"]}}``; a
user without an entry may pull and push under their own namespace (``alice/*``), as on Hub.

Use::

    with TokenServer(users={"alice": "pw"}) as tokens, Registry(token=tokens) as registry:
        ...
"""

from __future__ import annotations

import base64
import datetime as dt
import fnmatch
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.support.certificates import self_signed_certificate
from tests.support.httpserver import JSONHandler, OwnedHTTPServer, ThreadedHTTPService, basic_user

__all__ = ["TokenServer"]

TOKEN_TTL_S = 300


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class _Handler(JSONHandler):
    server: OwnedHTTPServer[TokenServer]
    error_content_type: ClassVar[str] = "application/json"

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/token":
            self._json(404, {"details": "not found"})
            return
        query = urllib.parse.parse_qs(url.query)
        owner = self.server.owner
        user = basic_user(self.headers.get("Authorization", ""), owner.users)
        owner.record(user, query)
        if user is False:
            self._json(401, {"details": "incorrect username or password"})
            return
        service = query.get("service", [""])[0]
        if service != owner.service:
            self._json(400, {"details": f"unknown service {service!r}"})
            return
        access = [owner.granted(user or None, scope) for scope in query.get("scope", [])]
        token = owner.sign(user or "", [entry for entry in access if entry is not None])
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._json(
            200,
            {"token": token, "access_token": token, "expires_in": TOKEN_TTL_S, "issued_at": now},
        )

    def _json(self, status: int, body: Mapping[str, Any]) -> None:
        challenge = {"WWW-Authenticate": 'Basic realm="autobuild-test"'} if status == 401 else {}
        self.send_json(status, body, challenge)


class TokenServer(ThreadedHTTPService):
    """Issues registry JWTs signed by its own key; see the module docstring."""

    service_name = "tokenserver"

    def __init__(
        self,
        *,
        users: Mapping[str, str],
        grants: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
        service: str = "autobuild-test-registry",
        issuer: str = "autobuild-test-token-server",
        realm_host: str = "localhost",
    ) -> None:
        super().__init__()
        self.users = dict(users)
        self.grants = {user: dict(rules) for user, rules in (grants or {}).items()}
        self.service = service
        self.issuer = issuer
        # A host name, not the IP literal: clients (crane, Kaniko, ours) refuse token realms on
        # private or loopback IP literals other than the registry's own host.
        self.realm_host = realm_host
        # Every token request as (user or "" when anonymous, False when refused; query).
        self.requests: list[tuple[str | bool, dict[str, list[str]]]] = []
        self._lock = threading.Lock()
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._certificate = self_signed_certificate(self._key, "autobuild test token signer")

    @property
    def certificate_pem(self) -> bytes:
        """The signing certificate, for the registry's ``auth.token.rootcertbundle``."""
        return self._certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def realm(self) -> str:
        """The token endpoint URL, for the registry's ``auth.token.realm``."""
        return f"http://{self.realm_host}:{self.port}/token"

    def _bind(self) -> OwnedHTTPServer[TokenServer]:
        return OwnedHTTPServer(self, _Handler)

    # -- policy and signing (called by the handler) ---------------------------------------------

    def record(self, user: str | bool, query: dict[str, list[str]]) -> None:
        """Remember one token request (tests assert on what clients asked for)."""
        with self._lock:
            self.requests.append((user, query))

    def granted(self, user: str | None, scope: str) -> dict[str, Any] | None:
        """The access entry for one requested scope: the asked actions the user may do."""
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind != "repository" or not name:
            return None
        allowed: set[str] = set()
        if user is not None:
            rules = self.grants.get(user, {f"{user}/*": ["pull", "push"]})
            for pattern, rule_actions in rules.items():
                if fnmatch.fnmatchcase(name, pattern):
                    allowed.update(rule_actions)
        wanted = [action for action in actions.split(",") if action]
        return {"type": "repository", "name": name, "actions": [a for a in wanted if a in allowed]}

    def sign(self, subject: str, access: list[dict[str, Any]]) -> str:
        """An RS256 JWT as distribution's token auth verifies it (x5c chain, iss, aud, exp)."""
        now = int(time.time())
        der = self._certificate.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + TOKEN_TTL_S,
            "nbf": now - 1,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = ".".join(
            _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        )
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"
