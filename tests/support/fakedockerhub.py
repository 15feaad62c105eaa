"""A local fake of Docker Hub's repository API (hub.docker.com), speaking its wire format.

Served on 127.0.0.1 in a background thread; the real client code (``autobuild.registry``) runs
against it through the ``AUTOBUILD_DOCKERHUB_URL`` setting. What it speaks:

- ``POST /v2/auth/token`` ``{identifier, secret}`` → 200 ``{access_token}`` (a JWT) or 401
  ``{"message": "...", "errinfo": null}``; also the deprecated ``POST /v2/users/login``
  ``{username, password}`` → ``{token}``.
- ``GET``/``HEAD /v2/namespaces/{ns}/repositories/{name}`` → 200 ``repository_info`` or 404
  (also for a private repository the caller may not see, as Hub hides them).
- ``POST /v2/namespaces/{ns}/repositories`` → 201, 400 (invalid name, description over 100),
  403 (namespace not writable by the account), 409 (exists).
- ``PATCH /v2/repositories/{ns}/{name}/`` ``{description, full_description}`` → 200.
- ``POST /v2/repositories/{ns}/{name}/privacy`` ``{is_private}`` → 200.
- ``Authorization: Bearer <token>`` on repository calls, 401 without a valid one; every answer
  carries ``X-RateLimit-Limit``, ``X-RateLimit-Remaining``, ``X-RateLimit-Reset``; past the
  limit, 429 with ``Retry-After`` (seconds) and ``X-Retry-After`` (unix time).

Accounts are ``{user: password}``; a user may write its own namespace and the organisations
given in ``orgs={"acme": {"alice"}}``. ``calls`` records (method, path, user) for assertions.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from tests.support.httpserver import JSONHandler, OwnedHTTPServer, ThreadedHTTPService

__all__ = ["FakeDockerHub"]

_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_REPO = re.compile(r"^/v2/namespaces/([^/]+)/repositories/([^/]+)/?$")
_CREATE = re.compile(r"^/v2/namespaces/([^/]+)/repositories/?$")
_LEGACY = re.compile(r"^/v2/repositories/([^/]+)/([^/]+)/?$")
_PRIVACY = re.compile(r"^/v2/repositories/([^/]+)/([^/]+)/privacy/?$")
RATE_WINDOW_S = 60


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Handler(JSONHandler):
    server: OwnedHTTPServer[FakeDockerHub]

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        hub = self.server.owner
        path = self.path.split("?", 1)[0]
        raw = self.read_body()
        user = hub.user_for(self.headers.get("Authorization", ""))
        hub.record(method, path, user)
        limited = hub.take_rate_limit()
        if limited is not None:
            self._json(429, {"message": "Rate limit exceeded", "errinfo": {}}, limited)
            return
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            self._json(400, {"message": "invalid JSON body", "errinfo": {}})
            return
        if method == "POST" and path in ("/v2/auth/token", "/v2/users/login", "/v2/users/login/"):
            self._login(path, body)
            return
        if user is None:
            self._json(401, {"message": "unauthorized", "errinfo": None})
            return
        status, document = hub.route(method, path, body, user)
        self._json(status, document, head=method == "HEAD")

    def _login(self, path: str, body: Mapping[str, Any]) -> None:
        hub = self.server.owner
        legacy = path.startswith("/v2/users/login")
        user = body.get("username" if legacy else "identifier")
        password = body.get("password" if legacy else "secret")
        token = hub.login(user, password)
        if token is None:
            if legacy:
                self._json(401, {"detail": "Incorrect authentication credentials"})
            else:
                self._json(401, {"message": "incorrect username or password", "errinfo": {}})
            return
        self._json(200, {"token": token} if legacy else {"access_token": token})

    def _json(
        self,
        status: int,
        document: Any,
        rate: tuple[int, int, int, float | None] | None = None,
        *,
        head: bool = False,
    ) -> None:
        limit, remaining, reset, retry_after = rate or self.server.owner.rate_headers()
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(reset),
        }
        if retry_after is not None:
            headers["Retry-After"] = str(int(retry_after))
            headers["X-Retry-After"] = str(int(time.time() + retry_after))
        self.send_json(status, document, headers, head=head)


class FakeDockerHub(ThreadedHTTPService):
    """Docker Hub's repository API on loopback; see the module docstring."""

    service_name = "fakedockerhub"

    def __init__(
        self,
        accounts: Mapping[str, str],
        *,
        orgs: Mapping[str, set[str]] | None = None,
        rate_limit: int = 180,
    ) -> None:
        super().__init__()
        self.accounts = dict(accounts)
        self.orgs = {org: set(members) for org, members in (orgs or {}).items()}
        self.rate_limit = rate_limit
        # (namespace, name) → repository_info fields.
        self.repositories: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str, str | None]] = []
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()
        self._window_start = time.time()
        self._used = 0

    @property
    def url(self) -> str:
        """The base URL, for ``AUTOBUILD_DOCKERHUB_URL``."""
        return f"http://127.0.0.1:{self.port}"

    def add_repository(
        self, namespace: str, name: str, *, private: bool, description: str = ""
    ) -> None:
        """Seed an existing repository."""
        with self._lock:
            self.repositories[(namespace, name)] = self._info(namespace, name, private, description)

    def exhaust_rate_limit(self) -> None:
        """Use up the current window: the next requests get 429 until it resets."""
        with self._lock:
            self._used = self.rate_limit

    def _bind(self) -> OwnedHTTPServer[FakeDockerHub]:
        return OwnedHTTPServer(self, _Handler)

    # -- called by the handler ------------------------------------------------------------------

    def record(self, method: str, path: str, user: str | None) -> None:
        """Remember one request."""
        with self._lock:
            self.calls.append((method, path, user))

    def take_rate_limit(self) -> tuple[int, int, int, float | None] | None:
        """Count one request; the 429 headers when the window is used up."""
        with self._lock:
            now = time.time()
            if now - self._window_start >= RATE_WINDOW_S:
                self._window_start, self._used = now, 0
            if self._used >= self.rate_limit:
                reset = self._window_start + RATE_WINDOW_S
                return (self.rate_limit, 0, int(reset), max(1.0, reset - now))
            self._used += 1
            return None

    def rate_headers(self) -> tuple[int, int, int, float | None]:
        """X-RateLimit-* values now."""
        with self._lock:
            reset = int(self._window_start + RATE_WINDOW_S)
            return (self.rate_limit, max(0, self.rate_limit - self._used), reset, None)

    def login(self, user: Any, password: Any) -> str | None:
        """A new access token (JWT-shaped) for right credentials, else None."""
        expected = self.accounts.get(user) if isinstance(user, str) else None
        if expected is None or not isinstance(password, str):
            return None
        if not hmac.compare_digest(expected, password):
            return None
        claims = {"sub": user, "exp": int(time.time()) + 600, "jti": secrets.token_hex(8)}
        parts = [{"alg": "HS256", "typ": "JWT"}, claims]
        token = ".".join(
            base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
            for part in parts
        )
        token += "." + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = user
        return token

    def user_for(self, authorization: str) -> str | None:
        """The account of a ``Bearer`` (or legacy ``JWT``) token; None when invalid."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() not in ("bearer", "jwt"):
            return None
        with self._lock:
            return self._tokens.get(token)

    def route(self, method: str, path: str, body: Mapping[str, Any], user: str) -> tuple[int, Any]:
        """The status and JSON document for one authenticated request."""
        with self._lock:
            if (match := _CREATE.match(path)) and method == "POST":
                return self._create(match.group(1), body, user)
            if (match := _REPO.match(path)) and method in ("GET", "HEAD"):
                return self._read(match.group(1), match.group(2), user)
            if (match := _PRIVACY.match(path)) and method == "POST":
                return self._edit(match.group(1), match.group(2), user, body, self._privacy)
            if (match := _LEGACY.match(path)) and method == "PATCH":
                return self._edit(match.group(1), match.group(2), user, body, self._update)
            return 404, {"message": "not found", "errinfo": None}

    # -- repository operations (lock held) ------------------------------------------------------

    def _writable(self, namespace: str, user: str) -> bool:
        return namespace == user or user in self.orgs.get(namespace, set())

    def _info(self, namespace: str, name: str, private: bool, description: str) -> dict[str, Any]:
        now = _now()
        return {
            "name": name,
            "namespace": namespace,
            "user": namespace,
            "hub_user": namespace,
            "repository_type": "image",
            "status": 1,
            "status_description": "active",
            "description": description,
            "full_description": "",
            "is_private": private,
            "is_automated": False,
            "star_count": 0,
            "pull_count": 0,
            "collaborator_count": 0,
            "last_updated": None,
            "date_registered": now,
            "affiliation": "",
            "media_types": [],
            "content_types": [],
            "categories": [],
            "has_starred": False,
            "permissions": {"read": True, "write": True, "admin": True},
        }

    def _visible(self, namespace: str, name: str, user: str) -> dict[str, Any] | None:
        repository = self.repositories.get((namespace, name))
        if repository is None:
            return None
        if repository["is_private"] and not self._writable(namespace, user):
            return None  # Hub answers 404 for private repositories one cannot see
        return repository

    def _read(self, namespace: str, name: str, user: str) -> tuple[int, Any]:
        repository = self._visible(namespace, name, user)
        if repository is None:
            return 404, {"message": "object not found", "errinfo": {}}
        return 200, repository

    def _create(self, namespace: str, body: Mapping[str, Any], user: str) -> tuple[int, Any]:
        name = body.get("name")
        description = body.get("description", "")
        if body.get("namespace", namespace) != namespace:
            return 400, {"message": "namespace in body and path differ", "errinfo": {}}
        if not isinstance(name, str) or not 2 <= len(name) <= 255 or not _NAME.match(name):
            return 400, {"message": "invalid repository name", "errinfo": {"field": "name"}}
        if not isinstance(description, str) or len(description) > 100:
            return 400, {
                "message": "description: ensure this field has no more than 100 characters",
                "errinfo": {"field": "description"},
            }
        if not self._writable(namespace, user):
            return 403, {"message": "permission denied", "errinfo": {}}
        if (namespace, name) in self.repositories:
            return 409, {"message": "repository already exists", "errinfo": {}}
        info = self._info(namespace, name, bool(body.get("is_private", False)), description)
        info["full_description"] = body.get("full_description", "")
        self.repositories[(namespace, name)] = info
        return 201, info

    def _edit(
        self,
        namespace: str,
        name: str,
        user: str,
        body: Mapping[str, Any],
        change: Callable[[dict[str, Any], Mapping[str, Any]], tuple[int, Any]],
    ) -> tuple[int, Any]:
        """``change`` a repository ``user`` may see (else 404) and write to (else 403)."""
        repository = self._visible(namespace, name, user)
        if repository is None:
            return 404, {"message": "object not found", "errinfo": {}}
        if not self._writable(namespace, user):
            return 403, {"message": "permission denied", "errinfo": {}}
        return change(repository, body)

    def _update(self, repository: dict[str, Any], body: Mapping[str, Any]) -> tuple[int, Any]:
        description = body.get("description", repository["description"])
        if not isinstance(description, str) or len(description) > 100:
            return 400, {"message": "description: too long", "errinfo": {}}
        repository["description"] = description
        repository["full_description"] = body.get(
            "full_description", repository["full_description"]
        )
        repository["last_updated"] = _now()
        return 200, repository

    def _privacy(self, repository: dict[str, Any], body: Mapping[str, Any]) -> tuple[int, Any]:
        if not isinstance(body.get("is_private"), bool):
            return 400, {"message": "is_private: a boolean is required", "errinfo": {}}
        repository["is_private"] = body["is_private"]
        return 200, {"is_private": repository["is_private"]}
