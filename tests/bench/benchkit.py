"""Measuring instruments for `make bench`, all from outside the operator.

- :class:`Api`: a plain keep-alive HTTPS client of the API server (admin client certificate);
- :class:`Watch`: follows one collection (list, then watch) in a thread and time-stamps every
  event on arrival, so "the Job exists" and "every object is reconciled" are seen as they happen
  without polling the API server;
- :class:`AuditLog`: the API server's own record of one user's requests (kube-apiserver
  ``--audit-log-path``), so reads and writes are counted server-side;
- :class:`Process`: a child process (the operator, the no-op operator, the git server) that is
  always stopped, with its resident memory and CPU pinning;
- :func:`percentile`.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import http.client
import json
import math
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

T = TypeVar("T")

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by the nearest-rank method; NaN without samples."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class ApiError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body[:500]}")
        self.status = status


class Api:
    """JSON requests to the API server as admin, over one keep-alive connection per thread."""

    def __init__(self, server: str, ca: Path, cert: Path, key: Path) -> None:
        url = urllib.parse.urlsplit(server)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 443
        self.context = ssl.create_default_context(cafile=str(ca))
        self.context.load_cert_chain(str(cert), str(key))
        self._local = threading.local()

    def _connect(self, timeout: float | None) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            self.host, self.port, context=self.context, timeout=timeout
        )

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        allow: Iterable[int] = (),
    ) -> Any:
        """Send one request; the decoded JSON answer. Statuses >= 400 raise unless allowed."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        for attempt in (1, 2):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = self._connect(timeout=120)
            try:
                conn.request(method, path, body=data, headers=headers)
                answer = conn.getresponse()
                raw = answer.read()
                break
            except (http.client.HTTPException, ConnectionError, ssl.SSLError):
                # The server closed an idle keep-alive connection: open a new one, once.
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
        if answer.status >= 400 and answer.status not in allow:
            raise ApiError(method, path, answer.status, raw.decode(errors="replace"))
        return json.loads(raw) if raw else None

    def open_stream(self, path: str) -> tuple[http.client.HTTPSConnection, Any]:
        """A dedicated connection streaming ``path`` (a watch); the caller closes it."""
        conn = self._connect(timeout=None)
        conn.request("GET", path, headers={"Accept": "application/json"})
        answer = conn.getresponse()
        if answer.status != 200:
            body = answer.read().decode(errors="replace")
            conn.close()
            raise ApiError("GET", path, answer.status, body)
        return conn, answer


@dataclass
class Waiter(Generic[T]):
    """Waits until ``done(name, state)`` holds for every one of ``pending`` names."""

    pending: set[str]
    done: Callable[[str, T], bool]
    total: int
    finished_at: float | None = None


class Watch(Generic[T]):
    """Follows a collection in a background thread: the current state of every object, as
    ``project(obj)`` (a small summary, so 10,000 objects stay cheap), each time-stamped with
    ``time.monotonic()`` when its event arrived. ``on_event(type, obj, arrived)`` sees raw
    events first."""

    def __init__(
        self,
        api: Api,
        collection: str,
        project: Callable[[Mapping[str, Any]], T],
        *,
        label_selector: str = "",
        on_event: Callable[[str, Mapping[str, Any], float], None] | None = None,
    ) -> None:
        self.api, self.collection, self.project = api, collection, project
        self.selector = label_selector
        self.on_event = on_event
        self.state: dict[str, T] = {}
        self._lock = threading.Condition()
        self._waiters: list[Waiter[T]] = []
        self._stopped = threading.Event()
        self._conn: http.client.HTTPSConnection | None = None
        self._thread: threading.Thread | None = None
        self.resource_version = ""

    def _query(self, **params: str) -> str:
        if self.selector:
            params["labelSelector"] = self.selector
        return f"{self.collection}?{urllib.parse.urlencode(params)}"

    def _list(self) -> None:
        items: list[Mapping[str, Any]] = []
        token = ""
        while True:
            page = self.api.request(
                "GET", self._query(limit="500", **({"continue": token} if token else {}))
            )
            items += page["items"]
            token = page["metadata"].get("continue") or ""
            if not token:
                break
        arrived = time.monotonic()
        with self._lock:
            self.state.clear()
            for obj in items:
                self._apply("ADDED", obj, arrived)
        self.resource_version = page["metadata"]["resourceVersion"]

    def _apply(self, kind: str, obj: Mapping[str, Any], arrived: float) -> None:
        name = obj["metadata"]["name"]
        if kind == "DELETED":
            self.state.pop(name, None)
            return
        state = self.state[name] = self.project(obj)
        for waiter in self._waiters:
            if name in waiter.pending and waiter.done(name, state):
                waiter.pending.discard(name)
                if not waiter.pending:
                    waiter.finished_at = arrived
        self._lock.notify_all()

    def start(self) -> Watch[T]:
        self._list()
        self._thread = threading.Thread(target=self._run, name=f"watch {self.collection}")
        self._thread.daemon = True
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                self._follow()
            except (OSError, http.client.HTTPException, ValueError, ApiError):
                if self._stopped.is_set():
                    return
                time.sleep(0.2)

    def _follow(self) -> None:
        path = self._query(
            watch="1",
            allowWatchBookmarks="true",
            resourceVersion=self.resource_version,
            timeoutSeconds="300",
        )
        self._conn, answer = self.api.open_stream(path)
        try:
            for line in answer:
                arrived = time.monotonic()
                event = json.loads(line)
                obj = event["object"]
                if event["type"] == "ERROR":
                    if obj.get("code") == 410:  # our resourceVersion is too old: list again
                        self._list()
                    return
                self.resource_version = obj["metadata"]["resourceVersion"]
                if event["type"] == "BOOKMARK":
                    continue
                if self.on_event is not None:
                    self.on_event(event["type"], obj, arrived)
                with self._lock:
                    self._apply(event["type"], obj, arrived)
        finally:
            self._conn.close()

    def stop(self) -> None:
        self._stopped.set()
        conn = self._conn
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> Watch[T]:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def waiter(self, names: Iterable[str], done: Callable[[str, T], bool]) -> Waiter[T]:
        """Start waiting for ``done`` on every name now (register before causing the change)."""
        with self._lock:
            pending = {n for n in names if not (n in self.state and done(n, self.state[n]))}
            waiter = Waiter(pending, done, total=len(set(names)))
            if not pending:
                waiter.finished_at = time.monotonic()
            self._waiters.append(waiter)
            return waiter

    def wait(
        self, waiter: Waiter[T], timeout: float, alive: Callable[[], None] = lambda: None
    ) -> float | None:
        """The monotonic time the last name became done, or None after ``timeout`` seconds.
        ``alive`` is called every second and may raise (e.g. the operator died)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            try:
                while waiter.finished_at is None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._lock.wait(min(1.0, left))
                    alive()
            finally:
                self._waiters.remove(waiter)
        return waiter.finished_at


@dataclass(frozen=True)
class Request:
    """One API request as the API server's audit log recorded it."""

    verb: str
    what: str  # "automatedbuilds/status", "jobs", or the path of a non-resource request
    code: int
    received: float  # epoch seconds

    @property
    def write(self) -> bool:
        return self.verb in WRITE_VERBS


@dataclass(frozen=True)
class Mark:
    """A point in the audit log: its size then, and the epoch time."""

    offset: int
    since: float


class AuditLog:
    """The requests of one user, read from kube-apiserver's JSON audit log."""

    def __init__(self, path: Path, username: str) -> None:
        self.path, self.username = path, username

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def mark(self) -> Mark:
        """Now: requests received from now on are logged after this offset."""
        return Mark(self.size(), time.time())

    def requests(self, mark: Mark) -> list[Request]:
        """Requests received since ``mark``, each once (audit logs several stages of long
        requests such as watches); read from the mark's offset, line by line."""
        seen: dict[str, Request] = {}
        try:
            log = self.path.open("rb")
        except FileNotFoundError:
            return []
        with log:
            log.seek(mark.offset)
            lines = log.readlines()
        for line in lines:
            if not line.endswith(b"\n"):
                break  # being written
            event = json.loads(line)
            if event.get("user", {}).get("username") != self.username:
                continue
            received = _epoch(event["requestReceivedTimestamp"])
            if received < mark.since or event["auditID"] in seen:
                continue
            ref = event.get("objectRef") or {}
            what = ref.get("resource", "")
            if ref.get("subresource"):
                what += "/" + ref["subresource"]
            if not what:
                what = event["requestURI"].split("?")[0]
            code = int((event.get("responseStatus") or {}).get("code", 0))
            seen[event["auditID"]] = Request(event["verb"], what, code, received)
        return sorted(seen.values(), key=lambda r: r.received)

    def wait_quiet(self, quiet: float, timeout: float) -> bool:
        """Wait until the user made no request for ``quiet`` seconds; False on timeout."""
        deadline = time.monotonic() + timeout
        size, changed = self.size(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.25)
            now = self.size()
            if now != size:
                size, changed = now, time.monotonic()
            elif time.monotonic() - changed >= quiet:
                return True
        return False


def _epoch(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def summarize(requests: Iterable[Request]) -> dict[str, int]:
    """``"verb what" -> count``, discovery requests (/api, /apis/...) folded into one line."""
    counts: dict[str, int] = {}
    for r in requests:
        what = "discovery (/api, /apis)" if r.what.startswith("/api") else r.what
        key = f"{r.verb} {what}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """SIGKILL the child when the bench dies, however it dies (PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


class Process:
    """A child process with its log in a file; :meth:`stop` is idempotent and always ends it."""

    def __init__(self, name: str, log: Path) -> None:
        self.name, self.log = name, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self, argv: Sequence[str], env: Mapping[str, str]) -> float:
        """Start it; return the monotonic start time."""
        with self.log.open("ab") as out:
            out.write(f"\n==== {datetime.datetime.now().isoformat()} {list(argv)!r}\n".encode())
            out.flush()
            self.started = time.monotonic()
            self.proc = subprocess.Popen(
                list(argv),
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        return self.started

    def start_piped(self, argv: Sequence[str], env: Mapping[str, str]) -> IO[bytes]:
        """Start it with stdout on a pipe (for a first line such as a URL); stderr to the log."""
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(
                list(argv),
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                preexec_fn=_die_with_parent,
            )
        assert self.proc.stdout is not None
        return self.proc.stdout

    def check_alive(self) -> None:
        """Raise if it exited (with the end of its log)."""
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} is not running"
        return self.proc.pid

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmRSS for {self.name}")

    def pin(self, cpus: set[int]) -> None:
        """Run every thread of it on ``cpus`` (threads started later inherit it)."""
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(int(task.name), cpus)

    def stop(self, grace: float = 20) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None


def settled_rss(process: Process, *, samples: int = 3, interval: float = 1.0) -> float:
    """Median of a few RSS samples ``interval`` seconds apart (MiB)."""
    values = []
    for i in range(samples):
        if i:
            time.sleep(interval)
        values.append(process.rss_mib())
    return sorted(values)[len(values) // 2]
