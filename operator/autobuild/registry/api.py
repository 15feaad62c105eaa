"""JSON calls to registry management APIs (Docker Hub, Harbor): errors become reasons."""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from autobuild.api.conditions import Reason


class ApiError(Exception):
    """A management API call failed; ``reason`` is a condition reason, ``message`` says why."""

    def __init__(self, reason: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class ApiResponse:
    """A 2xx or 4xx answer (5xx, 429 and network errors raise :class:`ApiError`)."""

    status: int
    headers: Mapping[str, str]
    document: Any


def retry_after_seconds(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds to wait after a 429: ``Retry-After`` (seconds) or ``X-Retry-After`` (a unix time,
    Docker Hub's older header)."""
    value = headers.get("Retry-After")
    if value is not None:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
    value = headers.get("X-Retry-After")
    if value is not None:
        try:
            return max(0.0, float(value) - now)
        except ValueError:
            pass
    return None


def error_message(document: Any, status: int) -> str:
    """The API's own words for an error: Docker Hub's ``message``/``detail``, Harbor's
    ``errors``, else the status."""
    if isinstance(document, dict):
        errors = document.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return f"HTTP {status}: {errors[0].get('message') or errors[0].get('code')}"
        for key in ("message", "detail"):
            if isinstance(document.get(key), str) and document[key]:
                return f"HTTP {status}: {document[key]}"
    return f"HTTP {status}"


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    what: str,
    headers: Mapping[str, str] | None = None,
    body: Any = None,
    timeout: float,
) -> ApiResponse:
    """One JSON request. ``what`` names the API in messages (e.g. ``Docker Hub``)."""
    path = urllib.parse.urlsplit(url).path
    try:
        async with session.request(
            method,
            url,
            headers={"Accept": "application/json", **(headers or {})},
            json=body,
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,
        ) as answer:
            raw = await answer.read()
            status, answer_headers = answer.status, answer.headers
    except (TimeoutError, aiohttp.ClientError, OSError) as error:
        raise ApiError(
            Reason.REGISTRY_UNREACHABLE,
            f"{what} is unreachable: {type(error).__name__}: {error}",
        ) from None
    try:
        document = json.loads(raw) if raw else None
    except ValueError:
        document = None
    if status == 429:
        wait = retry_after_seconds(answer_headers, time.time())
        raise ApiError(
            Reason.RATE_LIMITED,
            f"{what} rate-limited {method} {path}"
            + (f"; retry in {wait:.0f}s" if wait is not None else ""),
            retry_after=wait,
        )
    if status >= 500:
        raise ApiError(
            Reason.REGISTRY_UNREACHABLE,
            f"{what} failed {method} {path}: {error_message(document, status)}",
        )
    return ApiResponse(status, answer_headers, document)


def refused(what: str, method: str, url: str, response: ApiResponse) -> ApiError:
    """The error for an unexpected 4xx: 401/403 are ``RepositoryUnauthorized``."""
    path = urllib.parse.urlsplit(url).path
    reason = (
        Reason.REPOSITORY_UNAUTHORIZED
        if response.status in (401, 403)
        else Reason.REPOSITORY_SETTINGS_FAILED
    )
    return ApiError(
        reason,
        f"{what} refused {method} {path}: {error_message(response.document, response.status)}",
    )
