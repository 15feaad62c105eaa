"""Harbor's API (v2.0): project visibility and repository description.

Harbor is the self-hosted registry with a visibility notion that most people run (a CNCF
graduated project, packaged by its Helm chart and most platforms); Quay's per-repository
visibility is closer to Docker Hub's, but far fewer clusters run Quay. Harbor's visibility
belongs to the *project* (``metadata.public``), the first path component of the image; the
short description belongs to the repository. Calls, with HTTP Basic auth (a user or robot
account, as in the push secret), from Harbor's swagger (``api/v2.0/swagger.yaml``):

- ``GET /api/v2.0/systeminfo``: tells a Harbor from other registries.
- ``GET /api/v2.0/projects/{project_name}`` (header ``X-Is-Resource-Name: true``): 404 when
  missing; ``POST /api/v2.0/projects`` ``{project_name, metadata: {public}}``; ``PUT
  /api/v2.0/projects/{project_name}`` ``{metadata: {public}}``.
- ``GET /api/v2.0/projects/{project_name}/repositories?page=&page_size=`` (``X-Total-Count``);
  ``GET``/``PUT /api/v2.0/projects/{project_name}/repositories/{repository_name}``
  ``{description}``, the repository name URL-encoded twice when it has a slash (``a/b`` →
  ``a%252Fb``).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Final

import aiohttp

from autobuild.registry.api import ApiResponse, call, refused
from autobuild.registry.client import basic_authorization
from autobuild.registry.dockerconfig import Credentials
from autobuild.registry.plan import (
    CreateProject,
    HarborProject,
    Observed,
    SetDescription,
    SetProjectVisibility,
    Step,
)

WHAT = "Harbor"
PAGE_SIZE: Final = 100
# Bounds the listing of a project's repositories (100 pages of 100): enough to see "others".
MAX_PAGES: Final = 100


@dataclass
class Harbor:
    """A Harbor API client for one registry and account."""

    session: aiohttp.ClientSession
    base_url: str
    credentials: Credentials | None
    timeout: float

    async def is_harbor(self) -> bool:
        """Whether the registry answers Harbor's systeminfo (anonymously allowed)."""
        url = f"{self.base_url}/api/v2.0/systeminfo"
        response = await self._call("GET", url, anonymous=True)
        document = response.document
        return (
            response.status == 200
            and isinstance(document, dict)
            and ("harbor_version" in document or "auth_mode" in document)
        )

    async def project(self, project: str) -> HarborProject | None:
        """The project's visibility and repositories; None when it does not exist."""
        url = f"{self.base_url}/api/v2.0/projects/{_quote(project)}"
        response = await self._call("GET", url, headers={"X-Is-Resource-Name": "true"})
        if response.status == 404:
            return None
        if response.status != 200 or not isinstance(response.document, dict):
            raise refused(WHAT, "GET", url, response)
        metadata = response.document.get("metadata") or {}
        public = str(metadata.get("public", "false")).lower() == "true"
        return HarborProject(public=public, repositories=await self._repositories(project))

    async def repository(self, project: str, repository: str) -> Observed | None:
        """The repository's description (privacy is the project's); None when missing."""
        url = self._repository_url(project, repository)
        response = await self._call("GET", url)
        if response.status == 404:
            return None
        if response.status != 200 or not isinstance(response.document, dict):
            raise refused(WHAT, "GET", url, response)
        return Observed(private=False, description=str(response.document.get("description") or ""))

    async def apply(self, project: str, repository: str, step: Step) -> None:
        """Make one planned call."""
        match step:
            case CreateProject(public=public):
                method, url = "POST", f"{self.base_url}/api/v2.0/projects"
                body: dict[str, object] = {
                    "project_name": project,
                    "metadata": {"public": str(public).lower()},
                }
            case SetProjectVisibility(public=public):
                method = "PUT"
                url = f"{self.base_url}/api/v2.0/projects/{_quote(project)}"
                body = {"metadata": {"public": str(public).lower()}}
            case SetDescription(description=description):
                method, url = "PUT", self._repository_url(project, repository)
                body = {"description": description}
            case _:
                raise ValueError(f"not a Harbor step: {step}")
        headers = {"X-Is-Resource-Name": "true"} if isinstance(step, SetProjectVisibility) else {}
        response = await self._call(method, url, body=body, headers=headers)
        if not 200 <= response.status < 300:
            raise refused(WHAT, method, url, response)

    async def _repositories(self, project: str) -> tuple[str, ...]:
        names: list[str] = []
        base = f"{self.base_url}/api/v2.0/projects/{_quote(project)}/repositories"
        for page in range(1, MAX_PAGES + 1):
            url = f"{base}?page={page}&page_size={PAGE_SIZE}"
            response = await self._call("GET", url)
            if response.status != 200 or not isinstance(response.document, list):
                raise refused(WHAT, "GET", url, response)
            names.extend(
                str(item.get("name")) for item in response.document if isinstance(item, dict)
            )
            total = response.headers.get("X-Total-Count", "")
            complete = total.isdigit() and len(names) >= int(total)
            if len(response.document) < PAGE_SIZE or complete:
                break
        return tuple(names)

    def _repository_url(self, project: str, repository: str) -> str:
        # Harbor decodes the path once before routing: a slash must arrive encoded twice.
        encoded = urllib.parse.quote(urllib.parse.quote(repository, safe=""), safe="")
        return f"{self.base_url}/api/v2.0/projects/{_quote(project)}/repositories/{encoded}"

    async def _call(
        self,
        method: str,
        url: str,
        *,
        body: object = None,
        headers: dict[str, str] | None = None,
        anonymous: bool = False,
    ) -> ApiResponse:
        all_headers = dict(headers or {})
        if self.credentials is not None and not anonymous:
            all_headers["Authorization"] = basic_authorization(self.credentials)
        return await call(
            self.session,
            method,
            url,
            what=WHAT,
            headers=all_headers,
            body=body,
            timeout=self.timeout,
        )


def _quote(part: str) -> str:
    return urllib.parse.quote(part, safe="")
