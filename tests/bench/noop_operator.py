#!/usr/bin/env python3
"""The framework's floor for `make bench`: a kopf operator that does nothing but count.

One ``on.event`` handler on AutomatedBuilds that only remembers the uids it has seen; the
count is served as JSON on a loopback port, so the bench times "has seen all N objects" from
outside, exactly as it times the real operator::

    python tests/bench/noop_operator.py --port 8099    # GET / -> {"seen": N, "events": M}

It writes nothing to the API server (event handlers add no finalizers or annotations).
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import kopf

_seen: set[str] = set()
_events = 0


@kopf.on.event("autobuild.dev", "v1alpha1", "automatedbuilds")
async def count(uid: str, **_: Any) -> None:
    """Count the event and the object (async: no thread-pool hop, the cheapest handler)."""
    global _events
    _events += 1
    _seen.add(uid)


class _CountHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"seen": len(_seen), "events": _events}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the bench polls often."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True, help="loopback port for the count")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), _CountHandler)
    threading.Thread(target=server.serve_forever, name="count", daemon=True).start()
    kopf.configure(verbose=False)
    try:
        kopf.run(standalone=True, clusterwide=True)
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
