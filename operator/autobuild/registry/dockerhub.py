"""Docker Hub's repository API: privacy and short description of one repository.

Endpoints (base URL: setting ``AUTOBUILD_DOCKERHUB_URL``, default ``https://hub.docker.com``):

- ``POST /v2/auth/token`` ``{identifier, secret}`` → ``{access_token}`` ("Create access token",
  https://docs.docker.com/reference/api/hub/latest/#tag/authentication-api/operation/AuthCreateAccessToken;
  a password, personal access token or organization access token as ``secret``).
- ``GET /v2/namespaces/{namespace}/repositories/{repository}`` → ``repository_info``
  (``is_private``, ``description``), 404 when missing.
- ``POST /v2/namespaces/{namespace}/repositories`` ``{name, namespace, description,
  is_private, registry}`` → 201 ("Create a new repository", CreateRepository; description at
  most 100 characters).
- ``PATCH /v2/repositories/{namespace}/{repository}/`` ``{description}`` and
  ``POST /v2/repositories/{namespace}/{repository}/privacy`` ``{is_private}``: not in the public
  reference; they are the calls Docker's own Terraform provider makes
  (docker/terraform-provider-docker, internal/hubclient/client_repository.go:
  UpdateRepository, SetRepositoryPrivacy).

Only the one repository named in the call is ever read or written. Rate limits (429 with
``Retry-After`` or ``X-Retry-After``) become reason ``RateLimited``.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

import aiohttp

from autobuild.registry.api import ApiResponse, call, refused
from autobuild.registry.dockerconfig import Credentials
from autobuild.registry.plan import (
    CreateRepository,
    Observed,
    SetDescription,
    SetPrivacy,
    Step,
)

WHAT = "Docker Hub"


@dataclass
class DockerHub:
    """An authenticated client of Docker Hub's API for one account."""

    session: aiohttp.ClientSession
    base_url: str
    timeout: float
    token: str = ""

    async def login(self, credentials: Credentials) -> None:
        """Exchange the push secret's user name and password/token for an access token."""
        url = f"{self.base_url}/v2/auth/token"
        body = {"identifier": credentials.username, "secret": credentials.password}
        response = await call(self.session, "POST", url, what=WHAT, body=body, timeout=self.timeout)
        token = response.document.get("access_token") if response.status == 200 else None
        if not isinstance(token, str) or not token:
            raise refused(WHAT, "POST", url, response)
        self.token = token

    async def get(self, namespace: str, name: str) -> Observed | None:
        """The repository's privacy and description; None when it does not exist."""
        url = f"{self.base_url}/v2/namespaces/{_quote(namespace)}/repositories/{_quote(name)}"
        response = await self._call("GET", url)
        if response.status == 404:
            return None
        if response.status != 200 or not isinstance(response.document, dict):
            raise refused(WHAT, "GET", url, response)
        return Observed(
            private=bool(response.document.get("is_private")),
            description=str(response.document.get("description") or ""),
        )

    async def apply(self, namespace: str, name: str, step: Step) -> None:
        """Make one planned call."""
        repo = f"{self.base_url}/v2/repositories/{_quote(namespace)}/{_quote(name)}"
        match step:
            case CreateRepository(private=private, description=description):
                method = "POST"
                url = f"{self.base_url}/v2/namespaces/{_quote(namespace)}/repositories"
                body: dict[str, object] = {
                    "name": name,
                    "namespace": namespace,
                    "description": description,
                    "is_private": private,
                    "registry": "docker.io",
                }
            case SetPrivacy(private=private):
                method, url, body = "POST", f"{repo}/privacy", {"is_private": private}
            case SetDescription(description=description):
                method, url, body = "PATCH", f"{repo}/", {"description": description}
            case _:
                raise ValueError(f"not a Docker Hub step: {step}")
        response = await self._call(method, url, body)
        if not 200 <= response.status < 300:
            raise refused(WHAT, method, url, response)

    async def _call(self, method: str, url: str, body: object = None) -> ApiResponse:
        if not self.token:
            raise RuntimeError("DockerHub.login() first")
        return await call(
            self.session,
            method,
            url,
            what=WHAT,
            headers={"Authorization": f"Bearer {self.token}"},
            body=body,
            timeout=self.timeout,
        )


def _quote(part: str) -> str:
    return urllib.parse.quote(part, safe="")
