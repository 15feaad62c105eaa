"""What the test servers share, written once: start and stop, the loopback server, Basic auth.

:class:`Service` is anything a test starts and stops (``with service:`` does both);
:class:`ThreadedHTTPService` is a Service whose HTTP server runs on loopback in a daemon thread
(the fakes of GitHub, Docker Hub and Harbor, the token server, the git server). A subclass
builds its server in :meth:`ThreadedHTTPService._bind` and names itself in ``service_name``;
:class:`OwnedHTTPServer` is that server for a handler that asks its fake (``server.owner``),
and :class:`JSONHandler` the base of the handlers of the fake JSON APIs.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Generic, Literal, Self, TypeVar

OwnerT = TypeVar("OwnerT")


class Service(ABC):
    """Something a test starts and stops; a context manager that does both."""

    @abstractmethod
    def start(self) -> Self:
        """Start serving; returns self."""

    @abstractmethod
    def stop(self) -> None:
        """Stop serving and release what start took; idempotent."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ThreadedHTTPService(Service):
    """An HTTP server served by a daemon thread of this process.

    Subclasses call ``super().__init__()``, set ``service_name`` (the thread's name and the
    subject of "not started" errors) and build a bound, not yet serving, server in ``_bind``.
    """

    service_name: ClassVar[str]

    def __init__(self) -> None:
        self._running: tuple[HTTPServer, threading.Thread] | None = None

    @abstractmethod
    def _bind(self) -> HTTPServer:
        """A new server bound to its loopback port."""

    @property
    def port(self) -> int:
        """The port the server listens on; RuntimeError before start."""
        if self._running is None:
            raise RuntimeError(f"{self.service_name} is not started")
        return self._running[0].server_port

    def start(self) -> Self:
        """Serve in a background thread; returns self. A no-op while serving."""
        if self._running is None:
            server = self._bind()
            thread = threading.Thread(
                target=server.serve_forever, name=self.service_name, daemon=True
            )
            thread.start()
            self._running = (server, thread)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; idempotent."""
        running, self._running = self._running, None
        if running is not None:
            server, thread = running
            server.shutdown()
            server.server_close()
            thread.join()


class OwnedHTTPServer(ThreadingHTTPServer, Generic[OwnerT]):
    """A threading HTTP server on 127.0.0.1 (a free port); its handlers reach ``owner``."""

    daemon_threads = True

    def __init__(self, owner: OwnerT, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.owner = owner


class JSONHandler(BaseHTTPRequestHandler):
    """A handler of a fake JSON API: HTTP/1.1, and no request log (the fakes record requests)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the fake records what it was asked."""

    def read_body(self) -> bytes:
        """The request body (``Content-Length`` bytes; none without the header)."""
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_json(
        self,
        status: int,
        document: Any,
        headers: Mapping[str, str] | None = None,
        *,
        head: bool = False,
    ) -> None:
        """Answer ``document`` as JSON (no body for None), with ``headers`` after the content
        headers; ``head``: headers only, with ``Content-Length: 0``."""
        data = b"" if document is None else json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(0 if head else len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(data)


def basic_credentials(header: str) -> tuple[str, str] | None:
    """User and password of an HTTP Basic ``Authorization`` header; None when it is not one."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password


def basic_user(header: str, users: Mapping[str, str]) -> str | Literal[False]:
    """Who an ``Authorization`` header proves to be among ``users`` (name → password).

    "" when there is no header (anonymous), False for any other scheme or wrong credentials.
    """
    if not header:
        return ""
    credentials = basic_credentials(header)
    if credentials is None:
        return False
    user, password = credentials
    expected = users.get(user)
    return user if expected is not None and hmac.compare_digest(expected, password) else False
