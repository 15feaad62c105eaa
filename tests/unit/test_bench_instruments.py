"""The bench's instruments (tests/bench): what they count must be right, or its numbers lie."""

import hashlib
import hmac
import json
import random
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

from tests.bench.bench_operator import github_push, github_signature, parse_sizes  # noqa: E402
from tests.bench.benchkit import AuditLog, Mark, percentile, summarize  # noqa: E402

USER = "system:serviceaccount:autobuild-system:autobuild-operator"


def test_github_signature_matches_githubs_documented_vector() -> None:
    assert github_signature(b"It's a Secret to Everybody", b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


def test_push_delivery_is_signed_over_its_exact_body_and_names_the_repository() -> None:
    delivery = github_push(random.Random(1), "http://127.0.0.1:9", 7, "refs/heads/main", b"k")
    payload = json.loads(delivery.body)
    assert delivery.headers["X-Hub-Signature-256"] == github_signature(b"k", delivery.body)
    sha1 = "sha1=" + hmac.new(b"k", delivery.body, hashlib.sha1).hexdigest()
    assert delivery.headers["X-Hub-Signature"] == sha1
    assert delivery.headers["X-GitHub-Event"] == "push"
    assert payload["after"] == payload["head_commit"]["id"] == delivery.commit
    assert payload["repository"]["clone_url"] == "http://127.0.0.1:9/acme/app-00007.git"
    assert (payload["repository"]["full_name"], delivery.name) == ("acme/app-00007", "app-00007")
    again = github_push(random.Random(1), "http://127.0.0.1:9", 7, "refs/heads/main", b"k")
    assert again == delivery  # a fixed seed gives the same deliveries


def _event(
    audit_id: str, stage: str, received: str, verb: str, user: str = USER, **ref: str
) -> str:
    return json.dumps(
        {
            "auditID": audit_id,
            "stage": stage,
            "verb": verb,
            "user": {"username": user},
            "requestURI": "/apis" if not ref else f"/x/{ref['resource']}",
            "requestReceivedTimestamp": received,
            "responseStatus": {"code": 200},
            **({"objectRef": ref} if ref else {}),
        }
    )


def test_audit_log_counts_each_request_of_the_user_once_from_the_mark(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_text(_event("old", "ResponseComplete", "2026-01-01T00:00:00.000000Z", "list") + "\n")
    audit = AuditLog(log, USER)
    mark = Mark(audit.size(), since=1767225600.5)  # 2026-01-01T00:00:00.5Z
    lines = [
        # A watch logs two stages; it is one request.
        _event("w", "ResponseStarted", "2026-01-01T00:00:01.000000Z", "watch", resource="jobs"),
        _event("w", "ResponseComplete", "2026-01-01T00:00:01.000000Z", "watch", resource="jobs"),
        _event(
            "s",
            "ResponseComplete",
            "2026-01-01T00:00:02.000000Z",
            "patch",
            resource="automatedbuilds",
            subresource="status",
        ),
        _event("d", "ResponseComplete", "2026-01-01T00:00:03.000000Z", "get"),
        # Another client, and a request received before the mark but logged after it.
        _event("k", "ResponseComplete", "2026-01-01T00:00:02.000000Z", "create", user="kwok"),
        _event("e", "ResponseComplete", "2026-01-01T00:00:00.100000Z", "list", resource="pods"),
    ]
    with log.open("a") as out:
        out.write("\n".join(lines) + "\n")
    requests = audit.requests(mark)
    assert summarize(requests) == {
        "get discovery (/api, /apis)": 1,
        "patch automatedbuilds/status": 1,
        "watch jobs": 1,
    }
    assert [r.write for r in requests] == [False, True, False]


def test_percentile_is_nearest_rank() -> None:
    samples = [float(n) for n in range(1, 101)]
    assert (percentile(samples, 50), percentile(samples, 99), percentile([7.0], 99)) == (
        50.0,
        99.0,
        7.0,
    )


def test_sizes_default_to_the_issue_and_scale_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTOBUILD_BENCH_SCALE", raising=False)
    default, _ = parse_sizes([])
    assert (default.small, default.large, default.deliveries, default.builds) == (
        1000,
        10000,
        500,
        20,
    )
    tenth, _ = parse_sizes(["--scale", "0.1"])
    assert (tenth.small, tenth.large, tenth.deliveries, tenth.builds) == (100, 1000, 50, 5)
    objects, _ = parse_sizes(["--objects", "200"])
    assert (objects.small, objects.large) == (200, 200)
