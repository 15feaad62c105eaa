"""A TCP proxy on loopback that can cut its connections off without closing them: the bytes
that arrive while it is cut are read and dropped (a network partition, not a refusal, and
nothing stale is delivered once it forwards again)."""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream`` until :meth:`cut`; :meth:`restore` forwards
    again (the connections cut stay broken: their streams lost bytes)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.forwarding = True
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def cut(self) -> None:
        """Stop forwarding: every byte from now on, either way, is dropped."""
        self.forwarding = False

    def restore(self) -> None:
        """Forward again (new connections work; the cut ones stay broken)."""
        self.forwarding = True

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets += [client, server]
            # A connection opened while cut is part of the partition too.
            broken = threading.Event()
            if not self.forwarding:
                broken.set()
            for source, target in ((client, server), (server, client)):
                threading.Thread(
                    target=self._pump, args=(source, target, broken), daemon=True
                ).start()

    def _pump(self, source: socket.socket, target: socket.socket, broken: threading.Event) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if not self.forwarding:
                    broken.set()
                if broken.is_set():
                    continue
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Stop listening and close every connection."""
        self._closed = True
        # shutdown() first: close() alone does not wake the accept() blocked in the other
        # thread, and that accept() keeps the port listening after close. Another server can
        # then bind the same port while the zombie still takes its connections and forwards
        # them upstream (a git server's push answered 400 by the API server, as seen in CI).
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._acceptor.join(timeout=5)
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # wakes the pumps blocked in recv()
                sock.close()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
