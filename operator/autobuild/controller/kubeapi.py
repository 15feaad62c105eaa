"""One asynchronous Kubernetes API client for the whole operator process (aiohttp, which kopf
already ships): paginated LISTs, WATCH streams, and the writes. Objects stay plain JSON dicts.

Configuration comes from the official client's loaders (in-cluster service account, else
KUBECONFIG / ~/.kube/config), so certificates, tokens and token refresh behave as kubectl's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final, Protocol
from urllib.parse import quote

import aiohttp

from autobuild import API_GROUP, API_VERSION

Obj = dict[str, Any]
log = logging.getLogger("autobuild.kubeapi")

PAGE_SIZE: Final = 500
# Watch lines can hold large objects (a Pod with many statuses): allow up to 16 MiB a line.
_LINE_LIMIT: Final = 16 * 1024 * 1024
_WATCH_SECONDS: Final = 300
_REQUEST_TIMEOUT: Final = 60.0
# The pseudo-event a watch starts with: the API server accepted it.
OPENED: Final = "OPENED"
# Metadata only (PartialObjectMetadata): what a LIST or WATCH of Secrets asks for, so that the
# values of every Secret in the cluster never cross the wire or sit in memory.
METADATA_LIST: Final = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
METADATA_WATCH: Final = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
# The API path of the AutomatedBuilds' group and version.
AB_GROUP: Final = f"/apis/{API_GROUP}/{API_VERSION}"


def segment(text: str) -> str:
    """One path segment of an API URL from a name (quoted: a '/' or '..' in a name must never
    reach another object or namespace)."""
    if text in ("", ".", ".."):
        raise ValueError(f"not an object name: {text!r}")
    return quote(text, safe="")


class ApiError(Exception):
    """An answer of the API server other than 2xx: status code, reason and message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class GoneError(ApiError):
    """410: the resourceVersion a watch asked for is too old; list again."""


class NotLeaderError(ApiError):
    """A write refused before it left the process: this replica may not write now (it is not
    the leader, or could not renew its Lease in time). Status 0: no API server said it."""

    def __init__(self, method: str, path: str) -> None:
        super().__init__(0, "NotLeader", f"{method} {path}: this replica is not the leader")


class Fence(Protocol):
    """Who says whether this process may write now (the leader election's
    :class:`autobuild.controller.leader.Elector`)."""

    def may_write(self) -> bool:
        """True while this process may write."""


def _load_configuration() -> Any:
    from kubernetes import client, config

    configuration = client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)
    else:
        config.load_kube_config(
            config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
        )
    return configuration


class KubeApi:
    """The process's API client. Create it inside the running event loop."""

    def __init__(self, configuration: Any | None = None) -> None:
        self._config = configuration if configuration is not None else _load_configuration()
        context = ssl.create_default_context(cafile=self._config.ssl_ca_cert or None)
        if self._config.cert_file:
            context.load_cert_chain(self._config.cert_file, self._config.key_file)
        if not self._config.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        self._host = str(self._config.host).rstrip("/")
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context, limit=32))
        self.requests: dict[str, int] = {}
        # None: this process always writes (no leader election).
        self.fence: Fence | None = None

    def may_write(self) -> bool:
        """Whether this process may write now: the one check every write passes (the
        Kubernetes writes here, the GitHub and registry effects in executors.py)."""
        return self.fence is None or self.fence.may_write()

    def _headers(
        self, content_type: str | None = None, accept: str | None = None
    ) -> dict[str, str]:
        headers = {"Accept": accept or "application/json"}
        # The loaders store a token under BearerToken (older clients: authorization); this
        # call also runs the refresh hook (in-cluster tokens rotate).
        token = self._config.get_api_key_with_prefix("BearerToken", alias="authorization")
        if token:
            headers["Authorization"] = token
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def close(self) -> None:
        """Close the connection pool."""
        await self._session.close()

    async def request_text(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None
    ) -> str:
        """One API call whose answer is text (a Pod's log), or ApiError."""
        self.requests[method] = self.requests.get(method, 0) + 1
        async with self._session.request(
            method,
            self._host + path,
            params=params,
            headers=self._headers(),
            timeout=aiohttp.ClientTimeout(total=_REQUEST_TIMEOUT),
        ) as answer:
            text = await answer.text(errors="replace")
            if answer.status >= 300:
                raise _error(answer.status, text)
            return text

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        accept: str | None = None,
        fenced: bool = True,
    ) -> Obj:
        """One API call; the decoded JSON answer, or ApiError. A write (any method but GET)
        raises :class:`NotLeaderError` unless :meth:`may_write`; only the Lease's own writes pass
        ``fenced=False`` (they are how a replica becomes and stays the leader)."""
        if method != "GET" and fenced:
            if not self.may_write():
                raise NotLeaderError(method, path)
            # Which replica wrote what when, with --verbose (how the HA tests prove that two
            # replicas never wrote in the same time).
            log.debug("write %s %s", method, path)
        self.requests[method] = self.requests.get(method, 0) + 1
        data = None if body is None else json.dumps(body)
        async with self._session.request(
            method,
            self._host + path,
            params=params,
            data=data,
            headers=self._headers(content_type if data is not None else None, accept),
            timeout=aiohttp.ClientTimeout(total=_REQUEST_TIMEOUT),
        ) as answer:
            text = await answer.text()
            if answer.status >= 300:
                raise _error(answer.status, text)
            loaded: Obj = json.loads(text) if text else {}
            return loaded

    async def list(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        accept: str | None = None,
        keep: Callable[[Obj], bool] | None = None,
        page_size: int = PAGE_SIZE,
    ) -> tuple[list[Obj], str]:
        """Every object of a collection, page by page; and the list's resourceVersion.
        ``keep`` filters each page as it arrives: only one page of the rest is ever held."""
        items: list[Obj] = []
        query = {**(params or {}), "limit": str(page_size)}
        while True:
            page = await self.request("GET", path, params=query, accept=accept)
            found = page.get("items") or []
            items += found if keep is None else [item for item in found if keep(item)]
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                return items, str(meta.get("resourceVersion", ""))
            query = {**query, "continue": meta["continue"]}

    async def watch(
        self,
        path: str,
        resource_version: str,
        params: Mapping[str, str] | None = None,
        *,
        accept: str | None = None,
    ) -> AsyncIterator[tuple[str, Obj]]:
        """Watch events (type, object) from ``resource_version`` until the server ends the
        stream; first (OPENED, {}) once the server accepted the watch; bookmarks come as
        ("BOOKMARK", object). Raises GoneError on 410."""
        query = {
            **(params or {}),
            "watch": "1",
            "allowWatchBookmarks": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(_WATCH_SECONDS),
        }
        self.requests["WATCH"] = self.requests.get("WATCH", 0) + 1
        async with self._session.get(
            self._host + path,
            params=query,
            headers=self._headers(accept=accept),
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=30, sock_read=_WATCH_SECONDS + 30
            ),
        ) as answer:
            if answer.status >= 300:
                raise _error(answer.status, await answer.text())
            yield OPENED, {}
            while True:
                line = await answer.content.readline(max_line_length=_LINE_LIMIT)
                if not line:
                    return
                event = json.loads(line)
                kind, obj = event.get("type", ""), event.get("object") or {}
                if kind == "ERROR":
                    raise _error(int(obj.get("code") or 500), json.dumps(obj))
                yield kind, obj


def _error(status: int, text: str) -> ApiError:
    try:
        loaded = json.loads(text)
    except ValueError:
        loaded = {}
    reason = str(loaded.get("reason") or "")
    message = str(loaded.get("message") or text[:300])
    return (GoneError if status == 410 else ApiError)(status, reason, message)


async def sleep_backoff(attempt: int, cap: float = 30.0) -> None:
    """Wait 0.5 s, 1 s, 2 s ... up to ``cap`` before attempt number ``attempt`` + 1."""
    await asyncio.sleep(min(cap, 0.5 * 2 ** min(attempt, 10)))
