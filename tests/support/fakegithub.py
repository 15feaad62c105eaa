"""A fake GitHub REST API on 127.0.0.1 that speaks GitHub's wire format, for tests.

It is a real HTTP server (Werkzeug's threaded server and router) with the state of a few users
and repositories, answering exactly the routes autobuild calls through PyGithub:

* ``GET /user``, ``GET /user/repos`` (``per_page``/``page`` and a ``Link`` header);
* ``GET /repos/{owner}/{repo}`` (``permissions`` of the caller);
* ``GET/POST /repos/{o}/{r}/hooks``, ``GET/PATCH/DELETE /repos/{o}/{r}/hooks/{id}``: admins
  only (404 for others, as GitHub hides them), 20 ``push`` hooks at most (422 with GitHub's
  error body), one hook per URL (422 "Hook already exists"), the secret shown as ``********``;
* ``GET /repos/{o}/{r}/contents/{path}?ref=`` (base64 content in 60-character lines, as GitHub
  sends it; directories as lists);
* ``GET /repos/{o}/{r}/commits/{sha}``, ``POST /repos/{o}/{r}/statuses/{sha}`` (writers only;
  ``state`` and the 140-character ``description`` validated).

Every answer carries ``X-RateLimit-*`` headers, GET answers an ``ETag`` (``If-None-Match`` gives
304, which does not count against an authenticated caller's rate limit, as on GitHub).
``Authorization: token X`` or ``Bearer X``; an unknown token gets 401 "Bad credentials"; no
header is an anonymous caller who sees public repositories only. ``prefix="/api/v3"`` serves
GitHub Enterprise's paths. :meth:`FakeGitHub.fail_next` makes the next requests answer primary
or secondary rate limits (403 or 429) or server errors, like GitHub does.

Usage::

    with FakeGitHub() as gh:
        gh.add_user("octocat", token="ghp_x")
        repo = gh.add_repo("octocat/app", admins={"octocat"})
        sha = repo.add_commit({"Dockerfile": b"FROM scratch\\n"})
        Github(auth=Auth.Token("ghp_x"), base_url=gh.base_url).get_repo("octocat/app")
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlencode

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from tests.support.httpserver import ThreadedHTTPService

__all__ = ["FakeGitHub", "FakeRepo", "RecordedRequest"]

DOCS: Final = "https://docs.github.com/rest"
HOOK_LIMIT: Final = 20
RATE_LIMIT: Final = 5000
_ROLES: Final = ("read", "write", "admin")
_STATES: Final = ("error", "failure", "pending", "success")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Answer(Exception):  # noqa: N818 (control flow: "answer with this")
    """Raised by a route to answer with a GitHub error body."""

    def __init__(
        self, status: int, message: str, headers: Mapping[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"message": message, **extra, "documentation_url": DOCS, "status": str(status)}
        self.headers = dict(headers or {})


@dataclass
class FakeRepo:
    """One repository: who may do what, its commits (files), hooks and statuses."""

    owner: str
    name: str
    id: int
    private: bool = False
    description: str | None = None
    default_branch: str = "main"
    roles: dict[str, str] = field(default_factory=dict)  # login -> read | write | admin
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    hooks: dict[int, dict[str, Any]] = field(default_factory=dict)
    hook_secrets: dict[int, str] = field(default_factory=dict)
    statuses: list[dict[str, Any]] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        """``owner/name``."""
        return f"{self.owner}/{self.name}"

    def add_commit(self, files: Mapping[str, bytes], branch: str | None = None) -> str:
        """Record a commit holding ``files`` as the new head of ``branch`` (default branch)."""
        payload = json.dumps(
            {k: base64.b64encode(v).decode() for k, v in sorted(files.items())}
        ).encode()
        sha = hashlib.sha1(payload + str(len(self.commits)).encode()).hexdigest()
        self.commits[sha] = dict(files)
        self.branches[branch or self.default_branch] = sha
        return sha

    def add_hook(self, hook_id: int, url: str, secret: str = "") -> None:
        """A hook created by someone else (the web UI, another operator replica)."""
        self.hooks[hook_id] = {
            "id": hook_id,
            "name": "web",
            "active": True,
            "events": ["push"],
            "config": {"url": url, "content_type": "json", "insecure_ssl": "0", "secret": secret},
            "created_at": _now(),
            "updated_at": _now(),
            "last_response": {"code": 200, "status": "active", "message": "OK"},
        }
        self.hook_secrets[hook_id] = secret

    def set_hook_last_response(
        self, hook_id: int, code: int | None, status: str, message: str | None
    ) -> None:
        """Record GitHub's answer to a delivery of hook ``hook_id`` (``last_response``), as
        GitHub does after each delivery: ``200, "active", "OK"``, ``None, "unused", None``, or a
        failure such as ``502, "failed", "Invalid HTTP Response: 502"``. Its ETag changes."""
        self.hooks[hook_id]["last_response"] = {"code": code, "status": status, "message": message}

    def role(self, login: str | None) -> str | None:
        """The caller's role; anonymous callers and strangers read public repos only."""
        if login is not None and login in self.roles:
            return self.roles[login]
        return None if self.private else "read"


@dataclass(frozen=True)
class RecordedRequest:
    """A request the fake answered (for asserting what the client sent)."""

    method: str
    path: str
    query: dict[str, str]
    login: str | None
    body: Any
    status: int
    if_none_match: str | None = None  # the conditional request's ETag, if it sent one


class FakeGitHub(ThreadedHTTPService):
    """A started fake GitHub API; ``base_url`` is what ``Github(base_url=...)`` takes."""

    service_name = "fakegithub"

    def __init__(self, *, prefix: str = "", host: str = "127.0.0.1") -> None:
        super().__init__()
        self.prefix = prefix.rstrip("/")
        self._host = host
        self._tokens: dict[str, tuple[str, str]] = {}  # token -> (login, scopes)
        self._user_ids: dict[str, int] = {}
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[RecordedRequest] = []
        self._failures: list[tuple[str, float, str]] = []
        self._remaining: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._open = threading.Event()
        self._open.set()
        self.held: list[str | None] = []  # logins of the requests waiting while paused
        self._before: list[tuple[str, str, Callable[[], None]]] = []
        self._routes = Map(
            [
                Rule(f"{self.prefix}/user", endpoint="user", methods=["GET"]),
                Rule(f"{self.prefix}/user/repos", endpoint="user_repos", methods=["GET"]),
                Rule(f"{self.prefix}/repos/<owner>/<repo>", endpoint="repo", methods=["GET"]),
                Rule(
                    f"{self.prefix}/repos/<owner>/<repo>/hooks",
                    endpoint="hooks",
                    methods=["GET", "POST"],
                ),
                Rule(
                    f"{self.prefix}/repos/<owner>/<repo>/hooks/<int:hook_id>",
                    endpoint="hook",
                    methods=["GET", "PATCH", "DELETE"],
                ),
                Rule(
                    f"{self.prefix}/repos/<owner>/<repo>/contents/",
                    endpoint="contents",
                    methods=["GET"],
                    defaults={"path": ""},
                ),
                Rule(
                    f"{self.prefix}/repos/<owner>/<repo>/contents/<path:path>",
                    endpoint="contents",
                    methods=["GET"],
                ),
                Rule(
                    f"{self.prefix}/repos/<owner>/<repo>/commits/<sha>",
                    endpoint="commit",
                    methods=["GET"],
                ),
                Rule(
                    f"{self.prefix}/repos/<owner>/<repo>/statuses/<sha>",
                    endpoint="statuses",
                    methods=["POST"],
                ),
            ],
            strict_slashes=False,
        )

    # -- set-up -------------------------------------------------------------------------------

    def add_user(self, login: str, token: str, scopes: str = "repo, admin:repo_hook") -> None:
        """A user whose ``token`` authenticates as ``login`` (``X-OAuth-Scopes: scopes``)."""
        with self._lock:
            self._user_ids.setdefault(login, next(self._ids))
            self._tokens[token] = (login, scopes)

    def add_repo(
        self,
        full_name: str,
        *,
        private: bool = False,
        description: str | None = None,
        default_branch: str = "main",
        admins: Iterable[str] = (),
        writers: Iterable[str] = (),
        readers: Iterable[str] = (),
    ) -> FakeRepo:
        """A repository with the given collaborators (its owner is an admin when a user)."""
        owner, name = full_name.split("/")
        roles = {login: "read" for login in readers}
        roles |= {login: "write" for login in writers}
        roles |= {login: "admin" for login in admins}
        if owner in self._user_ids:
            roles[owner] = "admin"
        repo = FakeRepo(
            owner=owner,
            name=name,
            id=next(self._ids),
            private=private,
            description=description,
            default_branch=default_branch,
            roles=roles,
        )
        with self._lock:
            self.repos[full_name.lower()] = repo
        return repo

    def fail_next(
        self,
        kind: str,
        count: int = 1,
        wait: float = 1,
        *,
        clear: bool = False,
        path_suffix: str = "",
    ) -> None:
        """Answer the next ``count`` requests with a failure, as GitHub does.

        ``kind``: ``primary`` (403 "API rate limit exceeded", remaining 0, reset in ``wait``
        seconds), ``secondary`` (403 secondary rate limit with ``Retry-After: wait``),
        ``too-many`` (429 with ``Retry-After: wait``) or ``server-error`` (502). ``clear``
        first drops the failures still queued (GitHub is back). ``path_suffix``: only
        requests whose path ends with it (other calls go on unharmed).
        """
        if kind not in ("primary", "secondary", "too-many", "server-error"):
            raise ValueError(f"unknown failure kind {kind!r}")
        with self._lock:
            if clear:
                self._failures.clear()
            self._failures += [(kind, wait, path_suffix)] * count

    def pause(self) -> None:
        """Hold every new request until :meth:`resume` (at most 60 s)."""
        self._open.clear()

    def resume(self) -> None:
        """Answer the held requests and stop holding."""
        self._open.set()

    def before_next(self, method: str, path_suffix: str, action: Callable[[], None]) -> None:
        """Run ``action`` once, just before answering the next matching request (a concurrent
        writer racing the client)."""
        with self._lock:
            self._before.append((method, path_suffix, action))

    def requests_to(self, method: str, path_suffix: str) -> list[RecordedRequest]:
        """Recorded requests with this method whose path ends with ``path_suffix``."""
        return [r for r in self.requests if r.method == method and r.path.endswith(path_suffix)]

    # -- server -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The API root, e.g. ``http://127.0.0.1:PORT`` or ``.../api/v3``."""
        return f"http://{self._host}:{self.port}{self.prefix}"

    def _bind(self) -> BaseWSGIServer:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        return make_server(self._host, 0, self._wsgi, threaded=True)

    # -- request handling ---------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        response = self._answer(request)
        return response(environ, start_response)

    def _answer(self, request: Request) -> Response:
        if not self._open.is_set():
            _, _, token = request.headers.get("Authorization", "").partition(" ")
            with self._lock:
                self.held.append(self._tokens.get(token.strip(), (None, None))[0])
            self._open.wait(timeout=60)
        with self._lock:
            due = next(
                (b for b in self._before if b[0] == request.method and request.path.endswith(b[1])),
                None,
            )
            if due is not None:
                self._before.remove(due)
        if due is not None:
            due[2]()
        login: str | None = None
        body: Any = None
        status = 500
        headers: dict[str, str] = {}
        try:
            try:
                login, scopes = self._authenticate(request)
            finally:
                headers = self._rate_headers(login, request.remote_addr or "")
            if scopes is not None:
                headers["X-OAuth-Scopes"] = scopes
            self._inject_failure(headers, request.path)
            endpoint, args = self._routes.bind_to_environ(request.environ).match(
                method=request.method
            )
            if request.method in ("POST", "PATCH"):
                body = self._json_body(request)
            with self._lock:
                status, payload, extra = getattr(self, f"_{endpoint}")(request, login, body, **args)
            headers |= extra
        except _Answer as answer:
            status, payload = answer.status, answer.body
            headers |= answer.headers
        except MethodNotAllowed:
            status, payload = 404, {"message": "Not Found", "documentation_url": DOCS}
        except NotFound:
            status, payload = 404, {"message": "Not Found", "documentation_url": DOCS}
        except HTTPException as exc:
            status, payload = exc.code or 500, {"message": exc.description}
        response = self._respond(request, status, payload, headers)
        if response.status_code == 304 and login is not None:
            response.headers.update(self._refund(login))
        self.requests.append(
            RecordedRequest(
                request.method,
                request.path,
                dict(request.args),
                login,
                body,
                response.status_code,
                request.headers.get("If-None-Match"),
            )
        )
        return response

    def _respond(
        self, request: Request, status: int, payload: Any, headers: dict[str, str]
    ) -> Response:
        headers |= {
            "X-GitHub-Media-Type": "github.v3; format=json",
            "X-GitHub-Request-Id": f"FAKE:{next(self._ids):08X}",
        }
        if status == 204:
            return Response(status=204, headers=headers)
        text = json.dumps(payload, indent=2)
        if request.method == "GET" and status == 200:
            etag = 'W/"' + hashlib.sha256(text.encode()).hexdigest() + '"'
            headers["ETag"] = etag
            if etag in request.headers.get("If-None-Match", ""):
                return Response(status=304, headers=headers)
        return Response(
            text, status=status, headers=headers, content_type="application/json; charset=utf-8"
        )

    def _authenticate(self, request: Request) -> tuple[str | None, str | None]:
        header = request.headers.get("Authorization")
        if header is None:
            return None, None
        scheme, _, token = header.partition(" ")
        known = self._tokens.get(token.strip()) if scheme.lower() in ("token", "bearer") else None
        if known is None:
            raise _Answer(401, "Bad credentials")
        return known

    def _rate_headers(self, login: str | None, address: str) -> dict[str, str]:
        key = login or f"ip:{address}"
        with self._lock:
            remaining = self._remaining.get(key, RATE_LIMIT if login else 60) - 1
            self._remaining[key] = max(remaining, 0)
        limit = RATE_LIMIT if login else 60
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(remaining, 0)),
            "X-RateLimit-Reset": str(int(time.time()) + 3600),
            "X-RateLimit-Used": str(limit - max(remaining, 0)),
            "X-RateLimit-Resource": "core",
        }

    def _refund(self, login: str) -> dict[str, str]:
        """Give back the request a 304 cost (GitHub does not count them when authenticated)."""
        with self._lock:
            remaining = min(self._remaining[login] + 1, RATE_LIMIT)
            self._remaining[login] = remaining
        return {
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Used": str(RATE_LIMIT - remaining),
        }

    def _inject_failure(self, headers: dict[str, str], path: str) -> None:
        with self._lock:
            found = next((i for i, f in enumerate(self._failures) if path.endswith(f[2])), None)
            if found is None:
                return
            kind, wait, _ = self._failures.pop(found)
        if kind == "primary":
            headers |= {
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int(time.time() + wait)),
            }
            raise _Answer(403, "API rate limit exceeded for user ID 1.", headers)
        if kind in ("secondary", "too-many"):
            # The same secondary-limit answer; GitHub sends it as a 403 or as a 429.
            raise _Answer(
                403 if kind == "secondary" else 429,
                "You have exceeded a secondary rate limit. "
                "Please wait a few minutes before you try again.",
                {"Retry-After": str(int(wait))},
            )
        raise _Answer(502, "Server Error")

    @staticmethod
    def _json_body(request: Request) -> Any:
        try:
            return json.loads(request.get_data(as_text=True) or "null")
        except json.JSONDecodeError as exc:
            raise _Answer(400, "Problems parsing JSON") from exc

    # -- JSON shapes ------------------------------------------------------------------------------

    def _api(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def _user_json(self, login: str) -> dict[str, Any]:
        return {
            "login": login,
            "id": self._user_ids.get(login, 0),
            "node_id": f"U_{login}",
            "type": "User",
            "site_admin": False,
            "url": self._api(f"/users/{login}"),
            "html_url": f"http://{self._host}/{login}",
            "repos_url": self._api(f"/users/{login}/repos"),
        }

    def _repo_json(self, repo: FakeRepo, login: str | None) -> dict[str, Any]:
        role = repo.role(login)
        rank = _ROLES.index(role) if role else -1
        web = f"http://{self._host}/{repo.full_name}"
        return {
            "id": repo.id,
            "node_id": f"R_{repo.id}",
            "name": repo.name,
            "full_name": repo.full_name,
            "private": repo.private,
            "visibility": "private" if repo.private else "public",
            "owner": self._user_json(repo.owner),
            "html_url": web,
            "description": repo.description,
            "fork": False,
            "url": self._api(f"/repos/{repo.full_name}"),
            "hooks_url": self._api(f"/repos/{repo.full_name}/hooks"),
            "statuses_url": self._api(f"/repos/{repo.full_name}/statuses/{{sha}}"),
            "contents_url": self._api(f"/repos/{repo.full_name}/contents/{{+path}}"),
            "clone_url": f"{web}.git",
            "git_url": f"git://{self._host}/{repo.full_name}.git",
            "ssh_url": f"git@{self._host}:{repo.full_name}.git",
            "default_branch": repo.default_branch,
            "archived": False,
            "disabled": False,
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
            "pushed_at": "2024-01-01T00:00:00Z",
            "permissions": {
                "admin": rank >= 2,
                "maintain": rank >= 2,
                "push": rank >= 1,
                "triage": rank >= 1,
                "pull": rank >= 0,
            },
        }

    def _hook_json(self, repo: FakeRepo, hook: dict[str, Any]) -> dict[str, Any]:
        base = self._api(f"/repos/{repo.full_name}/hooks/{hook['id']}")
        config = dict(hook["config"])
        if "secret" in config:
            config["secret"] = "********"  # GitHub never returns a hook's secret
        return {
            **hook,
            "type": "Repository",
            "config": config,
            "url": base,
            "test_url": f"{base}/test",
            "ping_url": f"{base}/pings",
            "deliveries_url": f"{base}/deliveries",
        }

    # -- routes (called with self._lock held) --------------------------------------------------

    def _repo_for(self, owner: str, name: str, login: str | None, need: str = "read") -> FakeRepo:
        repo = self.repos.get(f"{owner}/{name}".lower())
        role = repo.role(login) if repo is not None else None
        if repo is None or role is None or _ROLES.index(role) < _ROLES.index(need):
            raise _Answer(404, "Not Found")
        return repo

    def _commit_of(self, repo: FakeRepo, ref: str) -> str:
        sha = repo.branches.get(ref, ref)
        if sha not in repo.commits:
            raise _Answer(404, f"No commit found for the ref {ref}")
        return sha

    def _user(
        self, request: Request, login: str | None, body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        if login is None:
            raise _Answer(401, "Requires authentication")
        return 200, {**self._user_json(login), "name": login.title()}, {}

    def _user_repos(
        self, request: Request, login: str | None, body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        if login is None:
            raise _Answer(401, "Requires authentication")
        visible = sorted(
            (r for r in self.repos.values() if login in r.roles),
            key=lambda r: r.full_name.lower(),
        )
        try:
            per_page = min(int(request.args.get("per_page", 30)), 100)
            page = max(int(request.args.get("page", 1)), 1)
        except ValueError as exc:
            raise _Answer(422, "Invalid request: per_page and page must be integers") from exc
        pages = max((len(visible) + per_page - 1) // per_page, 1)
        chunk = visible[(page - 1) * per_page : page * per_page]
        links = []
        query = {k: v for k, v in request.args.items() if k not in ("page", "per_page")}

        def link(number: int, rel: str) -> str:
            params = urlencode({**query, "per_page": per_page, "page": number})
            return f'<{self._api("/user/repos")}?{params}>; rel="{rel}"'

        if page > 1:
            links += [link(page - 1, "prev"), link(1, "first")]
        if page < pages:
            links += [link(page + 1, "next"), link(pages, "last")]
        headers = {"Link": ", ".join(links)} if links else {}
        return 200, [self._repo_json(r, login) for r in chunk], headers

    def _repo(
        self, request: Request, login: str | None, body: Any, owner: str, repo: str
    ) -> tuple[int, Any, dict[str, str]]:
        found = self._repo_for(owner, repo, login)
        return 200, self._repo_json(found, login), {}

    def _hooks(
        self, request: Request, login: str | None, body: Any, owner: str, repo: str
    ) -> tuple[int, Any, dict[str, str]]:
        found = self._repo_for(owner, repo, login, need="admin")
        if request.method == "GET":
            return 200, [self._hook_json(found, h) for h in found.hooks.values()], {}
        if not isinstance(body, dict) or not isinstance(body.get("config"), dict):
            raise _Answer(422, 'Invalid request.\n\n"config" wasn\'t supplied.')
        if body.get("name", "web") != "web":
            raise _Answer(422, "Validation Failed", errors=[_error("name", "invalid")])
        config = body["config"]
        events = body.get("events") or ["push"]
        if not isinstance(config.get("url"), str) or not config["url"]:
            raise _Answer(422, "Validation Failed", errors=[_error("url", "missing_field")])
        self._check_hook(found, config["url"], events, ignore=None)
        hook_id = next(self._ids)
        stamp = _now()
        found.hooks[hook_id] = {
            "id": hook_id,
            "name": "web",
            "active": bool(body.get("active", True)),
            "events": list(events),
            "config": {"insecure_ssl": "0", "content_type": "form", **config},
            "created_at": stamp,
            "updated_at": stamp,
            "last_response": {"code": None, "status": "unused", "message": None},
        }
        found.hook_secrets[hook_id] = str(config.get("secret", ""))
        location = self._api(f"/repos/{found.full_name}/hooks/{hook_id}")
        return 201, self._hook_json(found, found.hooks[hook_id]), {"Location": location}

    def _check_hook(self, repo: FakeRepo, url: str, events: list[str], ignore: int | None) -> None:
        others = [h for i, h in repo.hooks.items() if i != ignore]
        if any(h["config"].get("url") == url for h in others):
            raise _Answer(
                422,
                "Validation Failed",
                errors=[_custom("Hook already exists on this repository")],
            )
        full = [e for e in events if sum(e in h["events"] for h in others) >= HOOK_LIMIT]
        if full:
            raise _Answer(
                422,
                "Validation Failed",
                errors=[
                    _custom(f'The "{e}" event cannot have more than {HOOK_LIMIT} hooks')
                    for e in full
                ],
            )

    def _hook(
        self,
        request: Request,
        login: str | None,
        body: Any,
        owner: str,
        repo: str,
        hook_id: int,
    ) -> tuple[int, Any, dict[str, str]]:
        found = self._repo_for(owner, repo, login, need="admin")
        hook = found.hooks.get(hook_id)
        if hook is None:
            raise _Answer(404, "Not Found")
        if request.method == "DELETE":
            del found.hooks[hook_id]
            found.hook_secrets.pop(hook_id, None)
            return 204, None, {}
        if request.method == "PATCH":
            if not isinstance(body, dict):
                raise _Answer(400, "Problems parsing JSON")
            config = body.get("config", hook["config"])
            events = list(body.get("events", hook["events"]))
            events += [e for e in body.get("add_events", []) if e not in events]
            events = [e for e in events if e not in body.get("remove_events", [])]
            self._check_hook(found, str(config.get("url", "")), events, ignore=hook_id)
            if "config" in body:
                hook["config"] = {"insecure_ssl": "0", "content_type": "form", **config}
                found.hook_secrets[hook_id] = str(config.get("secret", ""))
            hook["events"] = events
            hook["active"] = bool(body.get("active", hook["active"]))
            hook["updated_at"] = _now()
        return 200, self._hook_json(found, hook), {}

    def _contents(
        self, request: Request, login: str | None, body: Any, owner: str, repo: str, path: str
    ) -> tuple[int, Any, dict[str, str]]:
        found = self._repo_for(owner, repo, login)
        ref = request.args.get("ref") or found.default_branch
        sha = self._commit_of(found, ref)
        files = found.commits[sha]
        path = path.strip("/")
        if path in files:
            return 200, self._content_json(found, sha, ref, path, files[path]), {}
        prefix = f"{path}/" if path else ""
        children = sorted({p[len(prefix) :].split("/")[0] for p in files if p.startswith(prefix)})
        if not children:
            raise _Answer(404, "Not Found")
        entries = []
        for child in children:
            child_path = f"{prefix}{child}"
            if child_path in files:
                entry = self._content_json(found, sha, ref, child_path, files[child_path])
                del entry["content"], entry["encoding"]
            else:
                entry = {"type": "dir", "name": child, "path": child_path, "size": 0}
            entries.append(entry)
        return 200, entries, {}

    def _content_json(
        self, repo: FakeRepo, commit: str, ref: str, path: str, data: bytes
    ) -> dict[str, Any]:
        blob = hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()
        encoded = base64.b64encode(data).decode()
        lines = [encoded[i : i + 60] for i in range(0, len(encoded), 60)]
        url = self._api(f"/repos/{repo.full_name}/contents/{path}?ref={ref}")
        git_url = self._api(f"/repos/{repo.full_name}/git/blobs/{blob}")
        html = f"http://{self._host}/{repo.full_name}/blob/{commit}/{path}"
        return {
            "type": "file",
            "encoding": "base64",
            "size": len(data),
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "content": "\n".join(lines) + "\n",
            "sha": blob,
            "url": url,
            "git_url": git_url,
            "html_url": html,
            "download_url": f"http://{self._host}/raw/{repo.full_name}/{commit}/{path}",
            "_links": {"self": url, "git": git_url, "html": html},
        }

    def _commit(
        self, request: Request, login: str | None, body: Any, owner: str, repo: str, sha: str
    ) -> tuple[int, Any, dict[str, str]]:
        found = self._repo_for(owner, repo, login)
        commit = found.branches.get(sha, sha)
        if commit not in found.commits:
            raise _Answer(422, f"No commit found for SHA: {sha}")
        url = self._api(f"/repos/{found.full_name}/commits/{commit}")
        person = {"name": found.owner, "email": f"{found.owner}@example.com", "date": _now()}
        return (
            200,
            {
                "sha": commit,
                "node_id": f"C_{commit}",
                "url": url,
                "html_url": f"http://{self._host}/{found.full_name}/commit/{commit}",
                "commit": {
                    "url": self._api(f"/repos/{found.full_name}/git/commits/{commit}"),
                    "message": "commit",
                    "author": person,
                    "committer": person,
                    "tree": {"sha": "0" * 40},
                },
                "author": self._user_json(found.owner),
                "committer": self._user_json(found.owner),
                "parents": [],
                "files": [
                    {"filename": name, "status": "added", "additions": 1, "deletions": 0}
                    for name in sorted(found.commits[commit])
                ],
            },
            {},
        )

    def _statuses(
        self, request: Request, login: str | None, body: Any, owner: str, repo: str, sha: str
    ) -> tuple[int, Any, dict[str, str]]:
        found = self._repo_for(owner, repo, login, need="write")
        if sha not in found.commits:
            raise _Answer(422, f"No commit found for SHA: {sha}")
        if not isinstance(body, dict) or body.get("state") not in _STATES:
            raise _Answer(422, "Validation Failed", errors=[_error("state", "invalid", "Status")])
        description = body.get("description")
        if description is not None and len(description) > 140:
            raise _Answer(
                422,
                "Validation Failed",
                errors=[_custom("description is too long (maximum is 140 characters)", "Status")],
            )
        stamp = _now()
        status_id = next(self._ids)
        status = {
            "id": status_id,
            "node_id": f"SC_{status_id}",
            "url": self._api(f"/repos/{found.full_name}/statuses/{sha}"),
            "avatar_url": None,
            "state": body["state"],
            "description": description,
            "target_url": body.get("target_url"),
            "context": body.get("context") or "default",
            "created_at": stamp,
            "updated_at": stamp,
            "creator": self._user_json(login or ""),
            "sha": sha,
        }
        found.statuses.append(status)
        return 201, {k: v for k, v in status.items() if k != "sha"}, {}


def _error(field_name: str, code: str, resource: str = "Hook") -> dict[str, str]:
    return {"resource": resource, "code": code, "field": field_name}


def _custom(message: str, resource: str = "Hook") -> dict[str, str]:
    return {"resource": resource, "code": "custom", "message": message}
