"""The real aiohttp webhook server on 127.0.0.1, receiving real signed requests over TCP."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from fakes import MemoryIndex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families
from served import MAX_BODY, SECRET, TOKEN, Served

from autobuild.api.models import Provider, SourceType
from autobuild.webhooks.receiver import (
    create_app,
    parse_address,
    redact_path,
    start_server,
)
from autobuild.webhooks.trigger import TriggerScope, TriggerURLRequest
from tests.support import webhook_payloads as wp


@pytest.fixture
def index() -> MemoryIndex:
    index = MemoryIndex()
    index.add("app", "github.com/acme/app", SECRET, trigger_token=TOKEN.encode())
    index.add("bb", "https://bitbucket.org/acme/app", SECRET, provider=Provider.BITBUCKET)
    index.add("gl", "gitlab.com/acme/app", SECRET, provider=Provider.GITLAB)
    index.add("local", "http://127.0.0.1:8080/acme/local.git", SECRET, provider=Provider.GIT)
    return index


@pytest.fixture
def served(index: MemoryIndex) -> Iterator[Served]:
    server = Served(index)
    try:
        yield server
    finally:
        server.close()


def post_github(served: Served, payload: dict[str, Any], secret: bytes | None, **kw: str):  # type: ignore[no-untyped-def]
    body = wp.encode(payload)
    event = "ping" if "zen" in payload else "push"
    return served.request(
        "POST", "/hooks/github", body, wp.github_headers(event, body, secret, **kw)
    )


def test_signed_github_push_is_accepted_and_submitted(served: Served) -> None:
    status, answer = post_github(served, wp.github_push(), SECRET)
    assert status == 202
    assert answer == {
        "status": "accepted",
        "automatedBuilds": ["ci/app"],
        "refs": ["refs/heads/main"],
    }
    ((namespace, name, (event,)),) = served.pushes
    assert (namespace, name) == ("ci", "app")
    assert (event.source_type, event.name, event.commit) == (SourceType.BRANCH, "main", wp.AFTER)
    assert event.message.startswith("Fix the cavity flow boundary")
    assert event.author == "Ada Lovelace <ada@example.com>"


def test_github_tag_push_and_form_encoded_delivery(served: Served) -> None:
    payload = wp.github_push("refs/tags/v1.0", wp.TAG_OBJECT, commit=wp.AFTER)
    body = urlencode({"payload": json.dumps(payload)}).encode()
    headers = wp.github_headers("push", body, SECRET)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    assert served.request("POST", "/hooks/github", body, headers)[0] == 202
    ((_, _, (event,)),) = served.pushes
    assert (event.git_ref, event.commit) == ("refs/tags/v1.0", wp.AFTER)


def test_ping_is_200(served: Served) -> None:
    assert post_github(served, wp.github_ping(), SECRET) == (200, {"status": "pong"})
    assert served.pushes == []


@pytest.mark.parametrize("secret", [None, b"wrong secret"])
def test_unsigned_or_wrongly_signed_is_401_and_nothing_happens(
    served: Served, secret: bytes | None
) -> None:
    status, answer = post_github(served, wp.github_push(), secret)
    assert status == 401
    assert answer == {"error": "no AutomatedBuild verifies this delivery"}
    assert served.pushes == []


def test_deleted_ref_is_202_and_builds_nothing(served: Served) -> None:
    status, answer = post_github(served, wp.github_push(after=wp.ZERO), SECRET)
    assert status == 202
    assert answer["refs"] == []
    assert served.pushes == []


def test_unknown_repository_answers_like_a_wrong_signature(served: Served) -> None:
    # Issue 17 item 5: was 404 (unknown) vs 401 (not verified), an oracle for which
    # repositories are built here; now one answer for both.
    status, answer = post_github(served, wp.github_push(full_name="acme/unknown"), SECRET)
    assert (status, answer) == (401, {"error": "no AutomatedBuild verifies this delivery"})


def test_malformed_json_is_400(served: Served) -> None:
    body = b'{"ref": "refs/heads/main",'
    status, answer = served.request(
        "POST", "/hooks/github", body, wp.github_headers("push", body, SECRET)
    )
    assert status == 400
    assert "not valid JSON" in answer["error"]


def test_body_over_the_limit_is_413(served: Served) -> None:
    payload = wp.github_push(message="x" * MAX_BODY)
    status, answer = post_github(served, payload, SECRET)
    assert (status, answer) == (413, {"error": f"body larger than {MAX_BODY} bytes"})
    assert served.pushes == []


def test_chunked_body_over_the_limit_is_413(served: Served) -> None:
    body = wp.encode(wp.github_push(message="x" * MAX_BODY))
    headers = wp.github_headers("push", body, SECRET)
    chunks = iter([body[i : i + 8192] for i in range(0, len(body), 8192)])
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    try:
        connection.request(
            "POST", "/hooks/github", body=chunks, headers=headers, encode_chunked=True
        )
        response = connection.getresponse()
        assert response.status == 413
    finally:
        connection.close()
    assert served.pushes == []


@pytest.mark.parametrize(
    "path", ["/hooks/github", "/hooks/bitbucket", "/hooks/gitlab", f"/hooks/trigger/ci/app/{TOKEN}"]
)
def test_wrong_method_is_405(served: Served, path: str) -> None:
    assert served.request("GET", path)[0] == 405
    assert served.request("PUT", path, b"{}")[0] == 405


def test_redelivery_builds_once(served: Served) -> None:
    first = post_github(served, wp.github_push(), SECRET, delivery="72d3162e-cc78-11e3-81ab")
    again = post_github(served, wp.github_push(), SECRET, delivery="72d3162e-cc78-11e3-81ab")
    assert first[0] == again[0] == 202
    assert again[1]["status"] == "duplicate"
    assert len(served.pushes) == 1


def test_bitbucket_push_with_several_refs(served: Served) -> None:
    changes = [
        wp.bitbucket_change("branch", "main", wp.AFTER, full_name="acme/app"),
        wp.bitbucket_change("tag", "v2.0", wp.BEFORE, full_name="acme/app"),
        wp.bitbucket_change("branch", "gone", None, full_name="acme/app"),
    ]
    body = wp.encode(wp.bitbucket_push(changes))
    headers = wp.bitbucket_headers(body, SECRET, delivery="{b1f6c4a2-0000-4000-8000-1}")
    status, answer = served.request("POST", "/hooks/bitbucket", body, headers)
    assert status == 202
    assert answer["refs"] == ["refs/heads/main", "refs/tags/v2.0"]
    assert answer["skipped"] == ["branch gone was deleted"]
    ((_, name, events),) = served.pushes
    assert name == "bb"
    assert [(e.git_ref, e.commit) for e in events] == [
        ("refs/heads/main", wp.AFTER),
        ("refs/tags/v2.0", wp.BEFORE),
    ]
    assert served.request("POST", "/hooks/bitbucket", body, headers)[1]["status"] == "duplicate"
    unsigned = wp.bitbucket_headers(body, None)
    assert served.request("POST", "/hooks/bitbucket", body, unsigned)[0] == 401
    assert len(served.pushes) == 1


def test_gitlab_push_and_tag_push(served: Served) -> None:
    body = wp.encode(wp.gitlab_push())
    headers = wp.gitlab_headers("Push Hook", SECRET.decode())
    assert served.request("POST", "/hooks/gitlab", body, headers)[0] == 202
    tag = wp.encode(wp.gitlab_push("refs/tags/v3", wp.TAG_OBJECT, checkout_sha=wp.BEFORE))
    headers = wp.gitlab_headers("Tag Push Hook", SECRET.decode())
    assert served.request("POST", "/hooks/gitlab", tag, headers)[0] == 202
    assert [(name, events[0].git_ref, events[0].commit) for _, name, events in served.pushes] == [
        ("gl", "refs/heads/main", wp.AFTER),
        ("gl", "refs/tags/v3", wp.BEFORE),
    ]
    wrong = wp.gitlab_headers("Push Hook", "guess")
    assert served.request("POST", "/hooks/gitlab", body, wrong)[0] == 401
    assert (
        served.request("POST", "/hooks/gitlab", body, wp.gitlab_headers("Push Hook", None))[0]
        == 401
    )
    assert len(served.pushes) == 2


def test_plain_git_host_on_a_port_receives_github_style_deliveries(served: Served) -> None:
    payload = wp.github_push(full_name="acme/local", host="127.0.0.1:8080")
    assert post_github(served, payload, SECRET)[0] == 202
    assert served.pushes[0][1] == "local"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", TriggerURLRequest(TriggerScope.ALL)),
        (b'{"build": true}', TriggerURLRequest(TriggerScope.ALL)),
        (
            b'{"source_type": "Branch", "source_name": "staging"}',
            TriggerURLRequest(TriggerScope.SOURCE, SourceType.BRANCH, "staging"),
        ),
        (
            b'{"source_type": "Tag", "source_name": "v1.1"}',
            TriggerURLRequest(TriggerScope.SOURCE, SourceType.TAG, "v1.1"),
        ),
        (
            b'{"docker_tag": "latest"}',
            TriggerURLRequest(TriggerScope.DOCKER_TAG, docker_tag="latest"),
        ),
    ],
)
def test_trigger_url_body_forms(served: Served, body: bytes, expected: TriggerURLRequest) -> None:
    headers = {"Content-Type": "application/json"}
    status, answer = served.request("POST", f"/hooks/trigger/ci/app/{TOKEN}/", body, headers)
    assert (status, answer) == (202, {"status": "accepted", "automatedBuild": "ci/app"})
    assert served.triggers == [("ci", "app", expected)]


def test_trigger_url_refusals(served: Served) -> None:
    # Issue 17 item 5: a wrong token answered 401 and an unknown object 404; now one answer.
    answers = {
        json.dumps(served.request("POST", path, b'{"build": true}'))
        for path in (
            "/hooks/trigger/ci/app/wrong-token",
            f"/hooks/trigger/ci/nope/{TOKEN}",
            f"/hooks/trigger/ci/bb/{TOKEN}",  # exists, has no trigger secret
            f"/hooks/trigger/other/app/{TOKEN}",
        )
    }
    assert answers == {json.dumps([404, {"error": "no such build trigger"}])}
    assert served.triggers == []
    status, answer = served.request("POST", f"/hooks/trigger/ci/app/{TOKEN}", b'{"build": 1}')
    assert status == 400
    assert "expected" in answer["error"]
    assert served.request("POST", f"/hooks/trigger/ci/app/{TOKEN}", b"{nope")[0] == 400
    assert served.triggers == []


def test_logs_carry_no_secret_signature_or_token(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = wp.encode(wp.github_push())
    headers = wp.github_headers("push", body, SECRET)
    served.request("POST", "/hooks/github", body, headers)
    served.request("POST", "/hooks/github", body, wp.github_headers("push", body, b"bad"))
    served.request("POST", f"/hooks/trigger/ci/app/{TOKEN}?token={TOKEN}", b"")
    served.request("POST", "/hooks/trigger/ci/app/not-the-token", b"")
    gitlab = wp.encode(wp.gitlab_push())
    served.request("POST", "/hooks/gitlab", gitlab, wp.gitlab_headers("Push Hook", "guess"))
    text = caplog.text
    assert "/hooks/trigger/ci/app/*** 202" in text
    signature = headers["X-Hub-Signature-256"]
    for secret in (SECRET.decode(), TOKEN, "not-the-token", "guess", signature[7:]):
        assert secret not in text


def raw_request(port: int, data: bytes) -> bytes:
    """Send bytes an HTTP client would refuse to send; return the status line."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(data)
        return connection.makefile("rb").readline()


def test_malformed_http_is_refused_without_logging_its_bytes(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # A header line without a colon, holding the secret: refused before any handler runs.
    request = b"POST /hooks/gitlab HTTP/1.1\r\nHost: x\r\nX-Gitlab-Token " + SECRET + b"\r\n\r\n"
    assert b" 400 " in raw_request(served.port, request)
    assert "malformed HTTP request refused: 400" in caplog.text
    assert SECRET.decode() not in caplog.text
    assert "Traceback" not in caplog.text


def test_a_body_that_does_not_arrive_is_408(index: MemoryIndex) -> None:
    slow = Served(index, body_timeout=1.0)
    try:
        head = b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
        status = raw_request(slow.port, head + b"Content-Length: 100\r\n\r\n{")
        assert b" 408 " in status
    finally:
        slow.close()
    assert slow.pushes == []


def test_healthz(served: Served) -> None:
    assert served.request("GET", "/healthz") == (200, "ok\n")


def scrape(served: Served, accept: str | None = None) -> tuple[str, str]:
    """GET /metrics: the Content-Type and the exposition text."""
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    try:
        connection.request("GET", "/metrics", headers={"Accept": accept} if accept else {})
        response = connection.getresponse()
        text = response.read().decode()
        assert response.status == 200
        return response.getheader("Content-Type", ""), text
    finally:
        connection.close()


def deliveries(families: Any) -> dict[tuple[str, str], float]:
    return {
        (sample.labels["provider"], sample.labels["code"]): sample.value
        for family in families
        if family.name == "autobuild_webhook_deliveries"
        for sample in family.samples
        if sample.name == "autobuild_webhook_deliveries_total"
    }


def test_metrics_count_every_answer_of_the_webhook_routes(served: Served) -> None:
    assert deliveries(text_string_to_metric_families(scrape(served)[1])) == {}
    assert post_github(served, wp.github_push(), SECRET)[0] == 202
    assert post_github(served, wp.github_push(), None)[0] == 401
    assert post_github(served, wp.github_push(), b"wrong secret")[0] == 401
    assert served.request("GET", "/hooks/gitlab")[0] == 405
    assert served.request("POST", "/hooks/trigger/ci/app/wrong-token", b"")[0] == 404
    assert served.request("POST", f"/hooks/trigger/ci/app/{TOKEN}/", b"")[0] == 202
    assert served.request("GET", "/healthz")[0] == 200  # not a delivery
    assert served.request("POST", "/hooks/gitea", b"{}")[0] == 404  # no such route: no label
    content_type, text = scrape(served)
    assert content_type.startswith("text/plain; version=")
    expected = {
        ("github", "202"): 1.0,
        ("github", "401"): 2.0,
        ("gitlab", "405"): 1.0,
        ("trigger", "404"): 1.0,
        ("trigger", "202"): 1.0,
    }
    assert deliveries(text_string_to_metric_families(text)) == expected
    # Prometheus asks for OpenMetrics first; the answer is that format, and says so.
    content_type, text = scrape(served, "application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert deliveries(parse_openmetrics(text)) == expected
    assert (
        served.metrics.registry.get_sample_value(
            "autobuild_webhook_deliveries_total", {"provider": "github", "code": "401"}
        )
        == 2.0
    )


def test_start_server_on_a_taken_port_fails_cleanly(served: Served, index: MemoryIndex) -> None:
    async def start_twice() -> None:
        app = create_app(index, lambda *_: None, lambda *_: None)
        await start_server(app, f"127.0.0.1:{served.port}")

    with pytest.raises(OSError, match="address already in use"):
        asyncio.run(start_twice())


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("0.0.0.0:8080", ("0.0.0.0", 8080)),
        (":8080", ("0.0.0.0", 8080)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("[::]:9000", ("::", 9000)),
        ("localhost:80", ("localhost", 80)),
    ],
)
def test_parse_address(address: str, expected: tuple[str, int]) -> None:
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", ["8080", "host:", "host:http", "host:70000", ""])
def test_parse_address_refuses(address: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_address(address)


def test_redact_path() -> None:
    assert redact_path(f"/hooks/trigger/ci/app/{TOKEN}") == "/hooks/trigger/ci/app/***"
    assert redact_path(f"/hooks/trigger/ci/app/{TOKEN}/") == "/hooks/trigger/ci/app/***/"
    assert redact_path("/hooks/github") == "/hooks/github"


header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80
)  # what an HTTP client can put in a header


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    path=st.sampled_from(["/hooks/github", "/hooks/bitbucket", "/hooks/gitlab"]),
    body=st.one_of(
        st.binary(max_size=300),
        st.builds(
            wp.encode,
            st.sampled_from([wp.github_push(), wp.github_ping(), wp.gitlab_push()]),
        ),
    ),
    event=st.one_of(st.sampled_from(["push", "ping", "repo:push", "Push Hook"]), header_text),
    proof=header_text,
    content_type=st.sampled_from(["application/json", "application/x-www-form-urlencoded"]),
)
def test_fuzz_the_server_answers_every_request_and_builds_nothing_unsigned(
    served: Served, path: str, body: bytes, event: str, proof: str, content_type: str
) -> None:
    headers = {"Content-Type": content_type, **wp.every_provider_headers(event, proof)}
    status, _ = served.request("POST", path, body, headers)
    assert status in (200, 202, 400, 401, 404)
    assert served.pushes == []
