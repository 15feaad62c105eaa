"""Issue 17, items 1-5: hostile input to the webhook server from anyone who can reach /hooks.

Each test reproduces one attack of the security review against the real aiohttp server on
127.0.0.1 (or the store it reads) and failed on the code before the fix.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from fakes import MemoryIndex
from multidict import CIMultiDict
from served import SECRET, TOKEN, Served

from autobuild.api.models import Provider
from autobuild.controller.store import Store
from autobuild.webhooks import receiver as receiver_module
from autobuild.webhooks.deliveries import PayloadError, decode_body
from autobuild.webhooks.receiver import (
    BODY_BUDGET_BYTES,
    HEADER_TIMEOUT_SECONDS,
    MAX_BODY_BYTES,
    MAX_CANDIDATE_SECRETS,
    Receiver,
    create_app,
    start_server,
)
from tests.support import webhook_payloads as wp

NOT_VERIFIED = (401, {"error": "no AutomatedBuild verifies this delivery"})
NO_TRIGGER = (404, {"error": "no such build trigger"})


# Item 1 -------------------------------------------------------------------------------------
def test_lookups_of_unknown_names_grow_no_memory() -> None:
    """20,000 trigger URLs / ?automatedbuild= / repositories of objects that do not exist: the
    store's memory does not grow (it cached a None per name, ~9 KiB each in the operator)."""
    store = Store(lambda key: None)
    store.trigger_token("ci", "warm-up")
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for number in range(20_000):
            assert store.trigger_token("ci", f"nope-{number}") is None
            assert store.target(f"ns-{number}", "nope") is None
            assert store.targets(f"github.com/acme/nope-{number}") == []
            assert store.parsed((f"ns-{number}", f"nope-{number}")) is None
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown < 64 * 1024, f"{grown} bytes kept for 20,000 unknown names"
    assert store._parsed == {}  # the cache the attack filled
    assert dict(store._by_repo) == {}  # a read must not grow it


# Item 2 -------------------------------------------------------------------------------------
def test_form_bodies_are_bounded_in_fields() -> None:
    """A form body is one ``payload`` field; one with thousands of fields was split whole
    (4 MiB: ~0.9 s on the loop) before being refused. Extra fields now refuse it at once."""
    payload = "payload=" + json.dumps(wp.github_push())
    padded = (payload + "&pad=1" * 20).encode()
    with pytest.raises(PayloadError):
        decode_body(padded, "application/x-www-form-urlencoded")
    assert decode_body(payload.encode(), "application/x-www-form-urlencoded")["ref"]


def test_a_push_fits_the_measured_body_cap() -> None:
    """The cap is what providers send: a push of 500 commits of 10 files each fits 1 MiB, and
    the cap is no larger (it bounds a parse of adversarial JSON to ~50 ms)."""
    push = wp.github_push()
    commit = push["commits"][0]
    many = {**commit, "modified": [f"src/module_{n}/file_{n}.py" for n in range(10)]}
    push["commits"] = [many] * 500
    assert len(wp.encode(push)) < MAX_BODY_BYTES <= 1024 * 1024


def test_one_hmac_per_distinct_secret_and_at_most_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """1,000 AutomatedBuilds of one repository cost 1,000 HMACs of every unsigned request."""
    calls: list[bytes] = []
    real = receiver_module.verify_sha256

    def counting(secret: bytes | None, body: bytes, header: str | None) -> bool:
        calls.append(secret or b"")
        return real(secret, body, header)

    monkeypatch.setattr(receiver_module, "verify_sha256", counting)
    distinct = MemoryIndex()
    for number in range(1000):
        distinct.add(f"app-{number:04}", "github.com/acme/app", f"secret-{number}".encode())
    body = wp.encode(wp.github_push())
    headers = CIMultiDict(wp.github_headers("push", body, b"guess"))
    answer = Receiver(distinct).receive(Provider.GITHUB, headers, body)
    assert (answer.status, dict(answer.body)) == NOT_VERIFIED
    assert len(calls) <= MAX_CANDIDATE_SECRETS
    # Sharing one secret (one hand-made hook per repository): one HMAC builds them all.
    calls.clear()
    shared = MemoryIndex()
    for number in range(1000):
        shared.add(f"app-{number:04}", "github.com/acme/app", SECRET)
    headers = CIMultiDict(wp.github_headers("push", body, SECRET))
    answer = Receiver(shared).receive(Provider.GITHUB, headers, body)
    assert answer.status == 202
    assert len(answer.submissions) == 1000
    assert len(calls) == 1


@pytest.fixture
def crowded() -> Iterator[Served]:
    """The server with the default body cap, and 200 AutomatedBuilds of one repository with
    200 secrets (before the fix: 200 HMACs of every body, on the event loop)."""
    index = MemoryIndex()
    for number in range(200):
        index.add(f"app-{number:03}", "github.com/acme/app", f"s-{number}".encode())
    index.add("app", "github.com/acme/app", SECRET, trigger_token=TOKEN.encode())
    server = Served(index, max_body=receiver_module.MAX_BODY_BYTES)  # the default cap
    try:
        yield server
    finally:
        server.close()


def _hostile_body(size: int) -> bytes:
    """A body naming the crowded repository, padded to ``size`` bytes."""
    head = wp.encode(wp.github_push())[:-1] + b',"pad":"'
    return head + b"x" * max(0, size - len(head) - 2) + b'"}'


def _flood(port: int, body: bytes, chunked: bool, stop: threading.Event) -> None:
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-Hub-Signature-256": "sha256=" + "0" * 64,
    }
    while not stop.is_set():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            if chunked:
                pieces = (body[i : i + 65536] for i in range(0, len(body), 65536))
                connection.request("POST", "/hooks/github", pieces, headers, encode_chunked=True)
            else:
                connection.request("POST", "/hooks/github", body, headers)
            connection.getresponse().read()
        except OSError:
            time.sleep(0.01)  # refused or reset mid-body: the server may do that
        finally:
            connection.close()


def test_a_signed_delivery_is_answered_within_a_second_while_six_clients_flood(
    crowded: Served,
) -> None:
    """Six clients send unsigned 4 MiB bodies (two with a length, two chunked, two of the
    largest size accepted) to a repository of 200 AutomatedBuilds; a signed delivery is
    answered in < 1 s (before the fix: parsed and HMACed 200 times on the loop, seconds)."""
    stop = threading.Event()
    bodies = [
        (_hostile_body(4 * 1024 * 1024), False),
        (_hostile_body(4 * 1024 * 1024), False),
        (_hostile_body(4 * 1024 * 1024), True),
        (_hostile_body(4 * 1024 * 1024), True),
        (_hostile_body(MAX_BODY_BYTES - 10), False),
        (_hostile_body(MAX_BODY_BYTES - 10), True),
    ]
    clients = [
        threading.Thread(target=_flood, args=(crowded.port, body, chunked, stop), daemon=True)
        for body, chunked in bodies
    ]
    for client in clients:
        client.start()
    latencies = []
    try:
        time.sleep(1.0)  # the flood is under way
        for number in range(10):
            body = wp.encode(wp.github_push(ref=f"refs/heads/b{number}"))
            headers = wp.github_headers("push", body, SECRET)
            started = time.monotonic()
            status, _ = crowded.request(
                "POST", "/hooks/github?automatedbuild=ci/app", body, headers
            )
            latencies.append(time.monotonic() - started)
            assert status == 202
            time.sleep(0.1)
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=60)
    assert max(latencies) < 1.0, f"signed deliveries took {sorted(latencies)} s"
    assert [push[1] for push in crowded.pushes] == ["app"] * 10


# Item 3 -------------------------------------------------------------------------------------
def _send_headers(port: int, path: str, length: int, extra: str = "") -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port), timeout=30)
    connection.sendall(
        (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"X-GitHub-Event: push\r\nX-Hub-Signature-256: sha256={'0' * 64}\r\n{extra}"
            f"Content-Length: {length}\r\n\r\n"
        ).encode()
    )
    return connection


def _status_within(connection: socket.socket, seconds: float) -> bytes:
    connection.settimeout(seconds)
    try:
        return connection.makefile("rb").readline()
    except TimeoutError:
        return b"(no answer)"


def test_bodies_in_flight_are_capped_across_connections(crowded: Served) -> None:
    """Slow senders each announce a full body and send nothing: once the budget of bytes in
    flight is taken, the next one is refused with 503 at once (before the fix every one of
    them was buffered: 130 slow senders of 4 MiB took 621 MiB)."""
    fits = BODY_BUDGET_BYTES // MAX_BODY_BYTES
    slow = [_send_headers(crowded.port, "/hooks/github", MAX_BODY_BYTES) for _ in range(fits)]
    try:
        time.sleep(0.5)  # the server has taken them all
        extra = [_send_headers(crowded.port, "/hooks/github", MAX_BODY_BYTES) for _ in range(4)]
        try:
            answers = [_status_within(connection, 5.0) for connection in extra]
        finally:
            for connection in extra:
                connection.close()
    finally:
        for connection in slow:
            connection.close()
    assert all(b" 503 " in answer for answer in answers), answers


def test_an_unknown_automatedbuild_is_refused_before_its_body_is_read(crowded: Served) -> None:
    """?automatedbuild= naming nothing: refused at once, the announced body never read (before
    the fix the server waited for the whole body, then answered 404)."""
    for path, extra in (
        ("/hooks/github?automatedbuild=ci/nope", ""),
        ("/hooks/github?automatedbuild=other/app", ""),
        ("/hooks/github?automatedbuild=not-a-name", ""),
        ("/hooks/gitlab?automatedbuild=ci/app", "X-Gitlab-Event: Push Hook\r\n"),
    ):
        connection = _send_headers(crowded.port, path, MAX_BODY_BYTES, extra)
        try:
            answer = _status_within(connection, 5.0)
        finally:
            connection.close()
        assert b" 401 " in answer, (path, answer)


# Item 4 -------------------------------------------------------------------------------------
def test_a_connection_that_never_finishes_its_headers_is_closed(crowded: Served) -> None:
    """Slowloris: half a request line and headers, then silence. aiohttp kept such a
    connection for an hour; now it is closed after HEADER_TIMEOUT_SECONDS."""
    connections = [socket.create_connection(("127.0.0.1", crowded.port)) for _ in range(3)]
    connections[0].sendall(b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nX-GitHub-Eve")
    connections[1].sendall(b"POS")
    started = time.monotonic()
    try:
        for connection in connections:
            connection.settimeout(HEADER_TIMEOUT_SECONDS + 20)
            try:
                while connection.recv(65536):  # the server may answer 408/400 first
                    pass
            except TimeoutError:
                pytest.fail("the server kept a connection that never finished its headers")
    finally:
        for connection in connections:
            connection.close()
    assert time.monotonic() - started < HEADER_TIMEOUT_SECONDS + 20


def test_connections_beyond_the_limit_are_refused(index: MemoryIndex) -> None:
    """Idle connections no longer accumulate without bound: past the limit, 503 and close."""
    served = Served(index)  # its event loop serves the limited server too
    app = create_app(index, lambda *a: None, lambda *a: None)
    limited = served._run(start_server(app, "127.0.0.1:0", max_connections=8))
    idle = [socket.create_connection(("127.0.0.1", limited.port)) for _ in range(8)]
    try:
        time.sleep(0.5)
        extra = socket.create_connection(("127.0.0.1", limited.port), timeout=10)
        try:
            assert b" 503 " in _status_within(extra, 10.0)
        finally:
            extra.close()
    finally:
        for connection in idle:
            connection.close()
        served._run(limited.stop())
        served.close()


@pytest.fixture
def index() -> MemoryIndex:
    index = MemoryIndex()
    index.add("app", "github.com/acme/app", SECRET, trigger_token=TOKEN.encode())
    index.add("bare", "github.com/acme/bare", SECRET)
    index.add("gl", "gitlab.com/acme/app", SECRET, provider=Provider.GITLAB)
    return index


@pytest.fixture
def served(index: MemoryIndex) -> Iterator[Served]:
    server = Served(index)
    try:
        yield server
    finally:
        server.close()


# Item 5 -------------------------------------------------------------------------------------
def test_unknown_and_not_verified_answer_the_same(served: Served) -> None:
    """Status and body do not tell which repositories are built under which names."""
    signed = wp.encode(wp.github_push())
    unknown_repo = wp.encode(wp.github_push(full_name="acme/nope"))
    answers: list[tuple[int, Any]] = [
        served.request("POST", path, body, wp.github_headers("push", body, secret))
        for path, body, secret in (
            ("/hooks/github", signed, b"wrong"),
            ("/hooks/github", signed, None),
            ("/hooks/github", unknown_repo, SECRET),
            ("/hooks/github", unknown_repo, b"wrong"),
            ("/hooks/github?automatedbuild=ci/app", signed, b"wrong"),
            ("/hooks/github?automatedbuild=ci/nope", signed, SECRET),
            ("/hooks/github?automatedbuild=ci/bare", signed, SECRET),  # another repository
            ("/hooks/github?automatedbuild=ci/gl", signed, SECRET),  # another provider
        )
    ]
    gitlab = wp.encode(wp.gitlab_push())
    for path, token in (
        ("/hooks/gitlab", "wrong"),
        ("/hooks/gitlab?automatedbuild=ci/gl", "wrong"),
        ("/hooks/gitlab?automatedbuild=ci/nope", SECRET.decode()),
    ):
        answers.append(served.request("POST", path, gitlab, wp.gitlab_headers("Push Hook", token)))
    assert answers == [NOT_VERIFIED] * len(answers)
    triggers = [
        served.request("POST", path, b"")
        for path in (
            "/hooks/trigger/ci/app/wrong-token",
            f"/hooks/trigger/ci/bare/{TOKEN}",
            f"/hooks/trigger/ci/nope/{TOKEN}",
        )
    ]
    assert triggers == [NO_TRIGGER] * 3
    assert served.pushes == []
    assert served.triggers == []


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/hooks/github", wp.github_headers("push", b"", b"x")),
        (f"/hooks/trigger/ci/app/{TOKEN}", {"Content-Type": "application/json"}),
    ],
)
def test_deeply_nested_json_is_a_400(
    served: Served, caplog: pytest.LogCaptureFixture, path: str, headers: dict[str, str]
) -> None:
    """json.loads raises RecursionError: that was a 500 and a traceback per request."""
    caplog.set_level(logging.DEBUG)
    status, answer = served.request("POST", path, b"[" * 3000, headers)
    assert status == 400
    assert "nested" in answer["error"]
    assert "Traceback" not in caplog.text
    assert "RecursionError" not in caplog.text


def test_control_characters_in_logged_values_are_escaped(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    """A percent-encoded CR/LF in a path would start a forged line in the plain log formats:
    the access log and the receiver's trigger-URL line printed them decoded."""
    caplog.set_level(logging.DEBUG)
    forged = "%0d%0a2026-12-04%20INFO%20autobuild:%20FORGED"
    served.request("POST", f"/hooks/trigger/ci{forged}/app{forged}/tok", b"")
    served.request("POST", f"/hooks/github{forged}", b"")
    # aiohttp itself refuses control characters in header values (400 before any handler).
    messages = [record.getMessage() for record in caplog.records]
    assert any("FORGED" in message for message in messages)
    for message in messages:
        assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in message), repr(message)
