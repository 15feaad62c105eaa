"""Hostile git hosts on loopback, for the tests that a repository URL cannot hurt the operator.

- :class:`ManyRefsServer` answers a smart-HTTP ref advertisement of as many refs as asked
  (1,000,000 is 62 MB), generated while it is sent, so the server itself stays small.
- :class:`RecordingGitServer` answers a tiny valid advertisement (one branch) and records every
  request with its ``Authorization`` header: the "other host" a token must never reach.
- :class:`RedirectServer` answers every request with a redirect to another base URL, and
  records the requests too.

Each binds a free port on its own loopback address (``127.0.0.1`` by default; ``127.0.0.2`` is
another host to git, to curl and to Go's net/http).

As a script (serves until killed; prints the URL on the first line of stdout)::

    python -m tests.support.hostilegit many-refs --refs 1000000 [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.httpserver import ThreadedHTTPService

__all__ = ["ManyRefsServer", "RecordingGitServer", "RedirectServer", "Request"]

COMMIT = "1" * 40
_BATCH = 2000


def pkt_line(data: bytes) -> bytes:
    """One pkt-line: four hex digits of length (themselves included), then the data."""
    return b"%04x" % (len(data) + 4) + data


def _advertisement_head(first_ref: bytes) -> bytes:
    """The start of a protocol v0 upload-pack advertisement, ``first_ref`` carrying the
    capabilities."""
    return (
        pkt_line(b"# service=git-upload-pack\n")
        + b"0000"
        + pkt_line(COMMIT.encode() + b" " + first_ref + b"\0multi_ack side-band-64k ofs-delta\n")
    )


@dataclass(frozen=True)
class Request:
    """One request a server saw."""

    method: str
    path: str
    authorization: str | None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: Any, host: str, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__((host, 0), handler)
        self.owner = owner


class _Recording(ThreadedHTTPService):
    """A loopback service that records the requests it answers."""

    def __init__(self, host: str) -> None:
        super().__init__()
        self.host = host
        self._lock = threading.Lock()
        self._requests: list[Request] = []

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` (no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[Request]:
        """The requests so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def record(self, handler: BaseHTTPRequestHandler) -> None:
        """Note a request (called by the handler)."""
        with self._lock:
            self._requests.append(
                Request(handler.command, handler.path, handler.headers.get("Authorization"))
            )


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # the body ends when the connection closes

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the servers record what they are asked."""

    def _drain(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)


class _ManyRefsHandler(_Handler):
    def do_GET(self) -> None:
        owner: ManyRefsServer = self.server.owner
        owner.record(self)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-git-upload-pack-advertisement")
        self.end_headers()
        try:
            self.wfile.write(_advertisement_head(b"refs/heads/main"))
            sha = COMMIT.encode()
            for start in range(0, owner.refs, _BATCH):
                end = min(start + _BATCH, owner.refs)
                self.wfile.write(
                    b"".join(
                        pkt_line(b"%s refs/tags/t%09d\n" % (sha, i)) for i in range(start, end)
                    )
                )
            self.wfile.write(b"0000")
        except OSError:  # the client stopped reading (as it should, past its caps)
            pass

    def do_POST(self) -> None:
        self.server.owner.record(self)
        self._drain()
        self.send_error(500, "ls-remote only")


class ManyRefsServer(_Recording):
    """A git host whose every repository advertises ``refs`` tags (and ``refs/heads/main``),
    all at commit :data:`COMMIT`, in protocol v0 whatever the client asks for."""

    service_name = "many-refs-git"

    def __init__(self, refs: int, *, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.refs = refs

    def _bind(self) -> _Server:
        return _Server(self, self.host, _ManyRefsHandler)


class _RecordingHandler(_Handler):
    def do_GET(self) -> None:
        self.server.owner.record(self)
        body = _advertisement_head(b"refs/heads/main") + b"0000"
        self.send_response(200)
        self.send_header("Content-Type", "application/x-git-upload-pack-advertisement")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.server.owner.record(self)
        self._drain()
        self.send_error(500, "recording only")


class RecordingGitServer(_Recording):
    """A git host that advertises one branch (``refs/heads/main`` at :data:`COMMIT`) and
    records every request."""

    service_name = "recording-git"

    def __init__(self, *, host: str = "127.0.0.1") -> None:
        super().__init__(host)

    def _bind(self) -> _Server:
        return _Server(self, self.host, _RecordingHandler)


class _RedirectHandler(_Handler):
    def _redirect(self) -> None:
        owner: RedirectServer = self.server.owner
        owner.record(self)
        self._drain()
        self.send_response(owner.status)
        self.send_header("Location", owner.target + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._redirect()

    def do_POST(self) -> None:
        self._redirect()


class RedirectServer(_Recording):
    """A host that redirects every request to the same path under ``target``
    (``http://127.0.0.2:PORT``), with ``status`` (302 by default)."""

    service_name = "redirecting-git"

    def __init__(self, target: str, *, status: int = 302, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.target = target.rstrip("/")
        self.status = status

    def _bind(self) -> _Server:
        return _Server(self, self.host, _RedirectHandler)


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    many = sub.add_parser("many-refs", help="advertise --refs tags until killed")
    many.add_argument("--refs", type=int, default=1_000_000)
    many.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    with ManyRefsServer(args.refs, host=args.host) as server:
        print(server.url, flush=True)
        threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(_main())
