"""The receiver's decisions (parse, match, verify, dedupe), without HTTP; and a fuzz test."""

from __future__ import annotations

import json

from fakes import MemoryIndex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from autobuild.api.models import Provider
from autobuild.webhooks.receiver import (
    NOT_VERIFIED,
    DeliveryLog,
    HookTarget,
    Receiver,
    addressed_to,
)
from tests.support import webhook_payloads as wp

SECRET = b"cavityflow-hook-secret"
OTHER = b"another-secret"


def receive(
    receiver: Receiver, provider: Provider, headers: dict[str, str], body: bytes
) -> tuple[int, dict[str, object], list[tuple[str, list[str]]]]:
    answer = receiver.receive(provider, CIMultiDict(headers), body)
    if answer.delivery is not None:
        receiver.remember(answer.delivery)
    submitted = [(t.name, [e.git_ref for e in events]) for t, events in answer.submissions]
    return answer.status, dict(answer.body), submitted


def github(receiver: Receiver, payload: dict[str, object], secret: bytes | None, **kw: str):  # type: ignore[no-untyped-def]
    body = wp.encode(payload)
    event = "ping" if "zen" in payload else "push"
    return receive(receiver, Provider.GITHUB, wp.github_headers(event, body, secret, **kw), body)


def test_a_delivery_builds_only_the_automated_builds_whose_secret_verifies() -> None:
    index = MemoryIndex()
    index.add("app", "github.com/acme/app", SECRET)
    index.add("app-debug", "https://github.com/Acme/App.git", SECRET)
    index.add("app-other-team", "github.com/acme/app", OTHER, namespace="team")
    index.add("app-no-secret", "github.com/acme/app", None)
    index.add("elsewhere", "github.com/acme/other", SECRET)
    status, body, submitted = github(Receiver(index), wp.github_push(), SECRET)
    assert status == 202
    assert submitted == [("app", ["refs/heads/main"]), ("app-debug", ["refs/heads/main"])]
    assert body["automatedBuilds"] == ["ci/app", "ci/app-debug"]


def test_a_hook_registered_for_one_automated_build_builds_only_that_one() -> None:
    index = MemoryIndex()
    index.add("app", "github.com/acme/app", SECRET)
    index.add("app-debug", "github.com/acme/app", SECRET)
    body = wp.encode(wp.github_push())
    headers = CIMultiDict(wp.github_headers("push", body, SECRET))
    answer = Receiver(index).receive(Provider.GITHUB, headers, body, ("ci", "app-debug"))
    assert answer.status == 202
    assert [t.name for t, _ in answer.submissions] == ["app-debug"]
    gone = Receiver(index).receive(Provider.GITHUB, headers, body, ("ci", "deleted"))
    assert gone == NOT_VERIFIED  # was 404: an unknown name answers like a wrong signature
    assert addressed_to("ci/app") == ("ci", "app")
    assert [addressed_to(v) for v in (None, "", "ci", "/app", "ci/", "a/b/c")] == [None] * 6


def test_unknown_repository_unsigned_or_wrong_all_answer_401_alike() -> None:
    index = MemoryIndex()
    index.add("app", "github.com/acme/app", SECRET)
    index.add("open", "github.com/acme/open", None)
    receiver = Receiver(index)
    not_verified = (401, dict(NOT_VERIFIED.body), [])
    # Was 404: an oracle for which repositories are built here (issue 17 item 5).
    assert github(receiver, wp.github_push(full_name="acme/nope"), SECRET) == not_verified
    assert github(receiver, wp.github_push(), None) == not_verified
    assert github(receiver, wp.github_push(), OTHER)[0] == 401
    # Without a webhookSecret nothing verifies: the push is refused, not built.
    assert github(receiver, wp.github_push(full_name="acme/open"), SECRET)[0] == 401


def test_ping_answers_200_once_verified() -> None:
    index = MemoryIndex()
    index.add("app", "github.com/acme/app", SECRET)
    receiver = Receiver(index)
    assert github(receiver, wp.github_ping(), SECRET) == (200, {"status": "pong"}, [])
    assert github(receiver, wp.github_ping(), OTHER)[0] == 401
    # An organisation hook's ping names no repository: nothing to verify, nothing happens.
    org_ping = {"zen": "Design for failure.", "hook_id": 7, "hook": {"type": "Organization"}}
    assert github(receiver, org_ping, None) == (200, {"status": "pong"}, [])


def test_deleted_and_unbuildable_refs_answer_202_and_submit_nothing() -> None:
    index = MemoryIndex()
    index.add("app", "github.com/acme/app", SECRET)
    receiver = Receiver(index)
    status, body, submitted = github(receiver, wp.github_push(after=wp.ZERO), SECRET)
    assert (status, submitted) == (202, [])
    assert body["refs"] == []
    assert "deleted" in str(body["skipped"])


def test_redelivery_builds_once_but_is_still_verified() -> None:
    index = MemoryIndex()
    index.add("app", "github.com/acme/app", SECRET)
    receiver = Receiver(index)
    first = github(receiver, wp.github_push(), SECRET, delivery="guid-1")
    assert first[2] == [("app", ["refs/heads/main"])]
    again = github(receiver, wp.github_push(), SECRET, delivery="guid-1")
    assert again == (202, {"status": "duplicate", "delivery": "guid-1"}, [])
    assert github(receiver, wp.github_push(), None, delivery="guid-1")[0] == 401
    assert github(receiver, wp.github_push(), SECRET, delivery="guid-2")[2] != []


def test_provider_routes_accept_their_providers_and_plain_git_hosts() -> None:
    index = MemoryIndex()
    index.add("lab", "gitlab.com/acme/app", SECRET, provider=Provider.GITLAB)
    index.add("gitea", "github.com/acme/app", SECRET, provider=Provider.GIT)
    index.add("hub", "github.com/acme/app", SECRET, provider=Provider.GITHUB)
    receiver = Receiver(index)
    assert github(receiver, wp.github_push(), SECRET)[2] == [
        ("gitea", ["refs/heads/main"]),
        ("hub", ["refs/heads/main"]),
    ]
    # A GitHub-format delivery naming the GitLab repository finds no GitHub/git target.
    payload = wp.github_push(host="gitlab.com")
    assert github(receiver, payload, SECRET)[0] == 401  # was 404: one answer (issue 17)


def test_bitbucket_and_gitlab_deliveries() -> None:
    index = MemoryIndex()
    index.add("bb", "bitbucket.org/acme/app", SECRET, provider=Provider.BITBUCKET)
    index.add("gl", "gitlab.com/acme/app", SECRET, provider=Provider.GITLAB)
    receiver = Receiver(index)
    changes = [
        wp.bitbucket_change("branch", "main", wp.AFTER, full_name="acme/app"),
        wp.bitbucket_change("tag", "v1", wp.BEFORE, full_name="acme/app"),
    ]
    body = wp.encode(wp.bitbucket_push(changes))
    status, _, submitted = receive(
        receiver, Provider.BITBUCKET, wp.bitbucket_headers(body, SECRET), body
    )
    assert (status, submitted) == (202, [("bb", ["refs/heads/main", "refs/tags/v1"])])
    assert receive(receiver, Provider.BITBUCKET, wp.bitbucket_headers(body, OTHER), body)[0] == 401
    body = wp.encode(wp.gitlab_push())
    headers = wp.gitlab_headers("Push Hook", SECRET.decode())
    assert receive(receiver, Provider.GITLAB, headers, body)[2] == [("gl", ["refs/heads/main"])]
    headers = wp.gitlab_headers("Push Hook", "wrong")
    assert receive(receiver, Provider.GITLAB, headers, body)[0] == 401


def test_missing_event_header_and_malformed_json_are_400() -> None:
    receiver = Receiver(MemoryIndex())
    assert receive(receiver, Provider.GITHUB, {}, b"{}")[0] == 400
    headers = wp.github_headers("push", b"{", SECRET)
    assert receive(receiver, Provider.GITHUB, headers, b"{")[0] == 400


def test_delivery_log_forgets_the_least_recently_seen() -> None:
    log = DeliveryLog(3)
    for key in ("a", "b", "c"):
        log.add(("github", key))
    assert ("github", "a") in log  # refreshes a
    log.add(("github", "d"))
    assert len(log) == 3
    assert ("github", "b") not in log
    assert all(("github", key) in log for key in ("a", "c", "d"))


def test_trigger_tokens_are_compared_whole() -> None:
    index = MemoryIndex()
    index.add("app", "github.com/acme/app", SECRET, trigger_token=b"tok-123")
    index.add("bare", "github.com/acme/bare", SECRET)
    receiver = Receiver(index)
    assert receiver.authorize_trigger("ci", "app", "tok-123") == 200
    for namespace, name, token, verdict in (
        # A wrong token answered 401 before issue 17: an oracle for objects with a trigger.
        ("ci", "app", "tok-12", 404),
        ("ci", "app", "", 404),
        ("ci", "app", "tok-1234", 404),
        ("ci", "bare", "", 404),
        ("ci", "bare", "tok-123", 404),
        ("ci", "nope", "tok-123", 404),
        ("other", "app", "tok-123", 404),
    ):
        assert receiver.authorize_trigger(namespace, name, token) == verdict


def test_secret_never_appears_in_a_hook_target_repr() -> None:
    assert "s3cret" not in repr(HookTarget("ci", "app", Provider.GITHUB, b"s3cret"))


# --- fuzz -----------------------------------------------------------------------------------

FUZZ_INDEX = MemoryIndex()
FUZZ_INDEX.add("hub", "github.com/acme/app", SECRET)
FUZZ_INDEX.add("bb", "bitbucket.org/acme/app", SECRET, provider=Provider.BITBUCKET)
FUZZ_INDEX.add("gl", "gitlab.com/acme/app", SECRET, provider=Provider.GITLAB)
FUZZ_INDEX.add("none", "github.com/acme/app", None)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[Provider, dict[str, str], bytes]:
    provider = draw(st.sampled_from([Provider.GITHUB, Provider.BITBUCKET, Provider.GITLAB]))
    base = {
        Provider.GITHUB: wp.github_push(),
        Provider.BITBUCKET: wp.bitbucket_push(
            [wp.bitbucket_change("branch", "main", wp.AFTER, full_name="acme/app")]
        ),
        Provider.GITLAB: wp.gitlab_push(),
    }[provider]
    keys = st.sampled_from([*sorted(base), "x"])
    mutations = draw(st.dictionaries(keys, json_values, max_size=3))
    payload = {**base, **mutations}
    body = draw(st.one_of(st.just(wp.encode(payload)), st.binary(max_size=200)))
    secret = draw(st.sampled_from([SECRET, OTHER, b""]))
    proof = draw(
        st.one_of(
            st.just(wp.signature(secret, body)),
            st.just(secret.decode()),
            st.text(max_size=80),
        )
    )
    event = draw(
        st.sampled_from(["push", "ping", "repo:push", "Push Hook", "Tag Push Hook", "", "zzz"])
    )
    headers = {
        **wp.every_provider_headers(event, proof),
        "X-GitHub-Delivery": draw(st.text(max_size=10)),
        "Content-Type": draw(
            st.sampled_from(["application/json", "application/x-www-form-urlencoded", ""])
        ),
    }
    return provider, headers, body


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deliveries())
def test_fuzz_no_input_crashes_or_builds_without_a_valid_signature(
    delivery: tuple[Provider, dict[str, str], bytes],
) -> None:
    provider, headers, body = delivery
    answer = Receiver(FUZZ_INDEX).receive(provider, CIMultiDict(headers), body)
    assert answer.status in (200, 202, 400, 401, 404)
    json.dumps(answer.body)  # always a JSON answer
    for target, events in answer.submissions:
        assert events
        assert target.secret == SECRET
        if provider is Provider.GITLAB:
            assert headers["X-Gitlab-Token"].encode() == SECRET
        else:
            expected = wp.signature(SECRET, body)
            assert headers["X-Hub-Signature-256"].strip().lower() == expected
    if answer.status != 202:
        assert answer.submissions == ()
