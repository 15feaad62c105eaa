"""Liveness and readiness endpoints for the operator (``/healthz``, ``/readyz``).

Liveness means the operator's event loop still turns (a heartbeat task stamps the time);
readiness means kopf has finished starting up and the loop is alive.
"""

from __future__ import annotations

import asyncio
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

_HEARTBEAT_SECONDS: Final = 5.0
_STALE_AFTER_SECONDS: Final = 30.0


class Probes:
    """Operator health, shared between the kopf loop and the probe server's thread."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self._last_beat = time.monotonic()

    def beat(self) -> None:
        """Record that the event loop is turning."""
        self._last_beat = time.monotonic()

    def alive(self) -> bool:
        """True while the event loop has beaten recently."""
        return time.monotonic() - self._last_beat < _STALE_AFTER_SECONDS

    async def heartbeat(self) -> None:
        """Beat forever on the event loop (run as a task)."""
        while True:
            self.beat()
            await asyncio.sleep(_HEARTBEAT_SECONDS)

    def serve(self, host: str, port: int) -> ThreadingHTTPServer:
        """Serve /healthz and /readyz from a daemon thread; returns the server (port 0: any)."""
        probes = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/healthz":
                    ok = probes.alive()
                elif self.path == "/readyz":
                    ok = probes.alive() and probes.ready.is_set()
                else:
                    self.send_error(404)
                    return
                body = b"ok\n" if ok else b"not ok\n"
                self.send_response(200 if ok else 503)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Probes every few seconds would drown the operator's log."""

        server = ThreadingHTTPServer((host, port), Handler)
        threading.Thread(target=server.serve_forever, name="probes", daemon=True).start()
        return server
