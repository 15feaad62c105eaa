"""Start and stop for the test servers, written once.

:class:`Service` is anything a test starts and stops (``with service:`` does both);
:class:`ThreadedHTTPService` is a Service whose HTTP server runs on loopback in a daemon thread
(the fakes of GitHub, Docker Hub and Harbor, the token server, the git server). A subclass
builds its server in :meth:`ThreadedHTTPService._bind` and names itself in ``service_name``.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from http.server import HTTPServer
from types import TracebackType
from typing import ClassVar, Self


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
