"""Liveness and readiness endpoints for the operator (``/healthz``, ``/readyz``).

Liveness means the operator's event loop still turns (a heartbeat task stamps the time);
readiness means the controller has finished its first sync and the loop is alive.

The server runs on one thread of its own, not on the event loop: a stuck loop must still be
answered "not ok". It is one selector loop on that thread, whatever the number of clients (the
port listens on the pod's address, reachable from the cluster): a connection has
:data:`_REQUEST_SECONDS` to send its request and is closed after the answer, at most
:data:`_MAX_CONNECTIONS` are open (a new one closes the oldest, which a prober that sends its
request at once never is), and a request head larger than :data:`_MAX_REQUEST_BYTES` is refused.
The ThreadingHTTPServer it replaces started a thread per connection and kept an idle one open
forever (300 idle connections: 302 threads).
"""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Final

_HEARTBEAT_SECONDS: Final = 5.0
_STALE_AFTER_SECONDS: Final = 30.0
# A kubelet probe sends its whole request at once (its own timeout is 1 s by default).
_REQUEST_SECONDS: Final = 5.0
_MAX_CONNECTIONS: Final = 64
_MAX_REQUEST_BYTES: Final = 8 * 1024
_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


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

    def answer(self, request_line: bytes) -> int:
        """The status code for one request line (``GET /healthz HTTP/1.1``)."""
        parts = request_line.split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return 400
        if parts[0] != b"GET":
            return 405
        if parts[1] == b"/healthz":
            return 200 if self.alive() else 503
        if parts[1] == b"/readyz":
            return 200 if self.alive() and self.ready.is_set() else 503
        return 404

    def serve(self, host: str, port: int) -> ProbeServer:
        """Serve /healthz and /readyz from a daemon thread; returns the server (port 0: any)."""
        server = ProbeServer(self, host, port)
        server.start()
        return server


@dataclass
class _Connection:
    sock: socket.socket
    deadline: float
    received: bytearray = field(default_factory=bytearray)
    outgoing: bytes = b""


def _response(code: int) -> bytes:
    body = b"ok\n" if code == 200 else b"not ok\n" if code == 503 else b"%d\n" % code
    head = (
        f"HTTP/1.1 {code} {_REASONS[code]}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class ProbeServer:
    """The probes' HTTP/1.1 server: one thread, one selector, bounded connections."""

    def __init__(self, probes: Probes, host: str, port: int) -> None:
        self._probes = probes
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, port))
        self._listener.listen(128)
        self._listener.setblocking(False)
        self.server_address: tuple[str, int] = self._listener.getsockname()[:2]
        self._wake_read, self._wake_write = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        self._connections: dict[socket.socket, _Connection] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="probes", daemon=True)

    def start(self) -> None:
        """Start serving on the server's own thread."""
        self._thread.start()

    def shutdown(self) -> None:
        """Stop serving, close every socket and wait for the thread."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_write.send(b"x")
        self._thread.join()

    def connection_count(self) -> int:
        """Connections open now (for tests and curiosity)."""
        return len(self._connections)

    def _serve(self) -> None:
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake_read, selectors.EVENT_READ)
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                next_deadline = min(
                    (c.deadline for c in self._connections.values()), default=now + 60.0
                )
                for key, events in self._selector.select(max(0.0, next_deadline - now)):
                    sock = key.fileobj
                    if sock is self._listener:
                        self._accept()
                    elif sock is self._wake_read:
                        continue
                    elif isinstance(sock, socket.socket) and sock in self._connections:
                        self._service(self._connections[sock], events)
                self._expire(time.monotonic())
        finally:
            for sock in list(self._connections):
                self._close(sock)
            self._selector.close()
            for own in (self._listener, self._wake_read, self._wake_write):
                own.close()

    def _accept(self) -> None:
        # Drain what the backlog holds, up to the cap each time round.
        for _ in range(_MAX_CONNECTIONS):
            try:
                sock, _address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # E.g. out of file descriptors: the listener stays readable, so free one (the
                # oldest connection) or pause, instead of spinning on select.
                if self._connections:
                    oldest = min(self._connections.values(), key=lambda c: c.deadline)
                    self._close(oldest.sock)
                else:
                    time.sleep(0.1)
                return
            if len(self._connections) >= _MAX_CONNECTIONS:
                # The oldest connection goes: a prober sends at once and is answered at once,
                # so only a client holding a connection open loses it.
                oldest = min(self._connections.values(), key=lambda c: c.deadline)
                self._close(oldest.sock)
            sock.setblocking(False)
            deadline = time.monotonic() + _REQUEST_SECONDS
            self._connections[sock] = _Connection(sock, deadline)
            self._selector.register(sock, selectors.EVENT_READ)

    def _service(self, connection: _Connection, events: int) -> None:
        sock = connection.sock
        try:
            if events & selectors.EVENT_READ and not connection.outgoing:
                chunk = sock.recv(4096)
                if not chunk:
                    self._close(sock)
                    return
                connection.received += chunk
                self._parse(connection)
            if connection.outgoing:
                sent = sock.send(connection.outgoing)
                connection.outgoing = connection.outgoing[sent:]
                if not connection.outgoing:
                    self._close(sock)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(sock)

    def _parse(self, connection: _Connection) -> None:
        received = bytes(connection.received)
        end = received.find(b"\r\n\r\n")
        if end < 0:
            end = received.find(b"\n\n")
        if end < 0:
            if len(received) > _MAX_REQUEST_BYTES:
                self._reply(connection, 431)
            return
        if end > _MAX_REQUEST_BYTES:
            self._reply(connection, 431)
            return
        request_line = received.split(b"\n", 1)[0].rstrip(b"\r")
        self._reply(connection, self._probes.answer(request_line))

    def _reply(self, connection: _Connection, code: int) -> None:
        connection.outgoing = _response(code)
        connection.received.clear()
        self._selector.modify(connection.sock, selectors.EVENT_WRITE)

    def _expire(self, now: float) -> None:
        for connection in [c for c in self._connections.values() if c.deadline <= now]:
            self._close(connection.sock)

    def _close(self, sock: socket.socket) -> None:
        self._connections.pop(sock, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)
        with contextlib.suppress(OSError):
            sock.close()
