"""A local fake of Harbor's API v2.0 (projects and repositories), speaking its wire format.

What it speaks (as Harbor's ``api/v2.0/swagger.yaml``): ``GET /api/v2.0/systeminfo``;
``GET``/``PUT /api/v2.0/projects/{name}``, ``POST /api/v2.0/projects`` (201 + ``Location``,
409 when the name exists); ``GET /api/v2.0/projects/{name}/repositories`` (pages,
``X-Total-Count``, ``Link``); ``GET``/``PUT /api/v2.0/projects/{name}/repositories/{repo}``
with the repository name URL-encoded twice when it has a slash. HTTP Basic auth; errors are
``{"errors": [{"code", "message"}]}``. Roles per project: ``projectAdmin`` may change the
project, ``maintainer``/``developer`` may describe repositories; any user may create projects.
``calls`` records (method, raw path, user).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.support.httpserver import JSONHandler, OwnedHTTPServer, ThreadedHTTPService, basic_user

__all__ = ["FakeHarbor"]

PREFIX = "/api/v2.0"
WRITE_REPO_ROLES = {"projectAdmin", "maintainer", "developer"}


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _error(status: int, code: str, message: str) -> tuple[int, Any, dict[str, str]]:
    return status, {"errors": [{"code": code, "message": message}]}, {}


@dataclass
class _Project:
    project_id: int
    name: str
    public: bool
    owner: str
    repositories: dict[str, dict[str, Any]] = field(default_factory=dict)


class _Handler(JSONHandler):
    server: OwnedHTTPServer[FakeHarbor]

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        harbor = self.server.owner
        raw = self.read_body()
        user = basic_user(self.headers.get("Authorization", ""), harbor.users)
        harbor.record(method, self.path, user)
        if user is False:
            status, document, headers = _error(401, "UNAUTHORIZED", "unauthorized")
        else:
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = None
            if body is None:
                status, document, headers = _error(400, "BAD_REQUEST", "invalid JSON")
            else:
                status, document, headers = harbor.route(method, self.path, body, user or None)
        if status == 401:
            headers = {**headers, "WWW-Authenticate": 'Basic realm="harbor"'}
        self.send_json(status, document, headers)


class FakeHarbor(ThreadedHTTPService):
    """Harbor's project and repository API on loopback; see the module docstring."""

    service_name = "fakeharbor"

    def __init__(
        self,
        users: Mapping[str, str],
        roles: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        super().__init__()
        self.users = dict(users)
        # project → user → role
        self.roles = {project: dict(members) for project, members in (roles or {}).items()}
        self.projects: dict[str, _Project] = {}
        self.calls: list[tuple[str, str, str | bool | None]] = []
        self._lock = threading.Lock()

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``: the registry host of image references."""
        return f"127.0.0.1:{self.port}"

    def add_project(self, name: str, *, public: bool, repositories: Mapping[str, str] = {}) -> None:
        """Seed a project with repositories (short name → description), owned by admin."""
        with self._lock:
            project = _Project(len(self.projects) + 1, name, public, "admin")
            for repo, description in repositories.items():
                project.repositories[repo] = self._repository(project, repo, description)
            self.projects[name] = project

    def _bind(self) -> OwnedHTTPServer[FakeHarbor]:
        return OwnedHTTPServer(self, _Handler)

    # -- called by the handler ------------------------------------------------------------------

    def record(self, method: str, path: str, user: str | bool) -> None:
        """Remember one request."""
        with self._lock:
            self.calls.append((method, path, user))

    def route(
        self, method: str, raw_path: str, body: Mapping[str, Any], user: str | None
    ) -> tuple[int, Any, dict[str, str]]:
        """Status, JSON document and extra headers for one request."""
        url = urllib.parse.urlsplit(raw_path)
        if not url.path.startswith(PREFIX):
            return _error(404, "NOT_FOUND", "not found")
        # Harbor's router decodes the path once, then splits it: a repository name with a
        # slash must arrive encoded twice (a%252Fb), and is decoded once more by the handler.
        parts = urllib.parse.unquote(url.path[len(PREFIX) :]).split("/")[1:]
        query = urllib.parse.parse_qs(url.query)
        with self._lock:
            match method, parts:
                case "GET", ["systeminfo"]:
                    return 200, {"auth_mode": "db_auth", "harbor_version": "v2.13.1-fake"}, {}
                case "POST", ["projects"]:
                    return self._create_project(body, user)
                case "GET", ["projects", name]:
                    return self._get_project(name, user)
                case "PUT", ["projects", name]:
                    return self._update_project(name, body, user)
                case "GET", ["projects", name, "repositories"]:
                    return self._list(name, user, query)
                case "GET", ["projects", name, "repositories", repo]:
                    return self._get_repository(name, urllib.parse.unquote(repo), user)
                case "PUT", ["projects", name, "repositories", repo]:
                    return self._update_repository(name, urllib.parse.unquote(repo), body, user)
            return _error(404, "NOT_FOUND", "not found")

    # -- operations (lock held) -----------------------------------------------------------------

    def _role(self, project: _Project, user: str | None) -> str | None:
        if user is None:
            return None
        if user == project.owner:
            return "projectAdmin"
        return self.roles.get(project.name, {}).get(user)

    def _readable(self, name: str, user: str | None) -> _Project | tuple[int, Any, dict[str, str]]:
        project = self.projects.get(name)
        if project is None:
            return _error(404, "NOT_FOUND", f"project {name} not found")
        if not project.public and self._role(project, user) is None:
            if user is None:
                return _error(401, "UNAUTHORIZED", "unauthorized")
            return _error(403, "FORBIDDEN", "forbidden")
        return project

    def _project_json(self, project: _Project) -> dict[str, Any]:
        return {
            "project_id": project.project_id,
            "name": project.name,
            "owner_name": project.owner,
            "repo_count": len(project.repositories),
            "metadata": {"public": "true" if project.public else "false"},
            "creation_time": _now(),
            "update_time": _now(),
        }

    def _repository(self, project: _Project, repo: str, description: str) -> dict[str, Any]:
        return {
            "id": len(project.repositories) + 1,
            "project_id": project.project_id,
            "name": f"{project.name}/{repo}",
            "description": description,
            "artifact_count": 1,
            "pull_count": 0,
            "creation_time": _now(),
            "update_time": _now(),
        }

    def _create_project(
        self, body: Mapping[str, Any], user: str | None
    ) -> tuple[int, Any, dict[str, str]]:
        if user is None:
            return _error(401, "UNAUTHORIZED", "unauthorized")
        name = body.get("project_name")
        if not isinstance(name, str) or not name:
            return _error(400, "BAD_REQUEST", "project_name is required")
        if name in self.projects:
            return _error(409, "CONFLICT", f"The project named {name} already exists")
        public = str((body.get("metadata") or {}).get("public", "false")).lower() == "true"
        project = _Project(len(self.projects) + 1, name, public, user)
        self.projects[name] = project
        return 201, None, {"Location": f"{PREFIX}/projects/{project.project_id}"}

    def _get_project(self, name: str, user: str | None) -> tuple[int, Any, dict[str, str]]:
        found = self._readable(name, user)
        return found if isinstance(found, tuple) else (200, self._project_json(found), {})

    def _update_project(
        self, name: str, body: Mapping[str, Any], user: str | None
    ) -> tuple[int, Any, dict[str, str]]:
        found = self._readable(name, user)
        if isinstance(found, tuple):
            return found
        if self._role(found, user) != "projectAdmin":
            return _error(403, "FORBIDDEN", "forbidden")
        public = (body.get("metadata") or {}).get("public")
        if public is not None:
            found.public = str(public).lower() == "true"
        return 200, None, {}

    def _list(
        self, name: str, user: str | None, query: Mapping[str, list[str]]
    ) -> tuple[int, Any, dict[str, str]]:
        found = self._readable(name, user)
        if isinstance(found, tuple):
            return found
        page = int(query.get("page", ["1"])[0])
        size = int(query.get("page_size", ["10"])[0])
        items = list(found.repositories.values())
        chunk = items[(page - 1) * size : page * size]
        headers = {"X-Total-Count": str(len(items))}
        if page * size < len(items):
            next_page = f"{PREFIX}/projects/{name}/repositories?page={page + 1}&page_size={size}"
            headers["Link"] = f'<{next_page}>; rel="next"'
        return 200, chunk, headers

    def _get_repository(
        self, name: str, repo: str, user: str | None
    ) -> tuple[int, Any, dict[str, str]]:
        found = self._readable(name, user)
        if isinstance(found, tuple):
            return found
        repository = found.repositories.get(repo)
        if repository is None:
            return _error(404, "NOT_FOUND", f"repository {name}/{repo} not found")
        return 200, repository, {}

    def _update_repository(
        self, name: str, repo: str, body: Mapping[str, Any], user: str | None
    ) -> tuple[int, Any, dict[str, str]]:
        found = self._readable(name, user)
        if isinstance(found, tuple):
            return found
        if self._role(found, user) not in WRITE_REPO_ROLES:
            return _error(403, "FORBIDDEN", "forbidden")
        repository = found.repositories.get(repo)
        if repository is None:
            return _error(404, "NOT_FOUND", f"repository {name}/{repo} not found")
        repository["description"] = str(body.get("description", repository["description"]))
        repository["update_time"] = _now()
        return 200, None, {}
