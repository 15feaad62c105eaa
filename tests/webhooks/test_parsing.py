"""Repository keys, signatures and provider payloads -> push events."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from autobuild.api.models import Provider, SourceType, Trigger
from autobuild.webhooks.deliveries import (
    MAX_MESSAGE_CHARS,
    DeliveryKind,
    PayloadError,
    decode_body,
    parse_bitbucket,
    parse_delivery,
    parse_github,
    parse_gitlab,
)
from autobuild.webhooks.repokey import repo_key
from autobuild.webhooks.signatures import sign_sha256, verify_sha256, verify_token
from tests.support import webhook_payloads as wp

# --- repo_key -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "repo",
    [
        "github.com/acme/app",
        "github.com/acme/app/",
        "github.com/acme/app.git",
        "https://github.com/acme/app",
        "https://github.com/acme/app.git",
        "https://github.com/acme/app.git/",
        "http://github.com/acme/app",
        "https://GitHub.com/Acme/App",
        "https://github.com:443/acme/app",
        "  https://github.com/acme/app  ",
        "https://user@github.com/acme/app",
    ],
)
def test_repo_key_normalises_the_forms_of_one_repository(repo: str) -> None:
    assert repo_key(repo) == "github.com/acme/app"


@pytest.mark.parametrize(
    ("repo", "key"),
    [
        ("http://127.0.0.1:8080/acme/app.git", "127.0.0.1:8080/acme/app"),
        ("127.0.0.1:8080/acme/app", "127.0.0.1:8080/acme/app"),
        ("https://gitlab.example.com:8443/group/sub/app", "gitlab.example.com:8443/group/sub/app"),
        ("http://[::1]:3000/acme/app.git", "[::1]:3000/acme/app"),
        ("https://ghe.example.com/acme/app", "ghe.example.com/acme/app"),
    ],
)
def test_repo_key_keeps_ports_and_subgroups(repo: str, key: str) -> None:
    assert repo_key(repo) == key


def test_repo_key_separates_other_hosts_ports_and_names() -> None:
    keys = {
        repo_key(r)
        for r in (
            "github.com/acme/app",
            "gitlab.com/acme/app",
            "github.com/acme/app2",
            "github.com:8443/acme/app",
            "github.com/other/app",
        )
    }
    assert len(keys) == 5


@pytest.mark.parametrize(
    "repo",
    ["github.com", "https://github.com/acme", "ssh://git@github.com/acme/app", "", "https:///a/b"],
)
def test_repo_key_refuses_what_names_no_repository(repo: str) -> None:
    with pytest.raises(ValueError, match=r"repository|host|http"):
        repo_key(repo)


# --- signatures -----------------------------------------------------------------------------

GITHUB_SECRET = b"It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_github_documented_test_vector() -> None:
    assert sign_sha256(GITHUB_SECRET, GITHUB_BODY) == GITHUB_SIGNATURE
    assert verify_sha256(GITHUB_SECRET, GITHUB_BODY, GITHUB_SIGNATURE)
    assert verify_sha256(GITHUB_SECRET, GITHUB_BODY, GITHUB_SIGNATURE.upper().replace("SHA", "sha"))


@pytest.mark.parametrize(
    ("secret", "body", "header"),
    [
        (GITHUB_SECRET, b"Hello, World?", GITHUB_SIGNATURE),  # body changed
        (b"another secret", GITHUB_BODY, GITHUB_SIGNATURE),  # other secret
        (GITHUB_SECRET, GITHUB_BODY, GITHUB_SIGNATURE[7:]),  # prefix missing
        (GITHUB_SECRET, GITHUB_BODY, "sha1=" + GITHUB_SIGNATURE[7:]),
        (GITHUB_SECRET, GITHUB_BODY, GITHUB_SIGNATURE[:-1]),
        (GITHUB_SECRET, GITHUB_BODY, None),
        (GITHUB_SECRET, GITHUB_BODY, ""),
        (GITHUB_SECRET, GITHUB_BODY, "sha256=\u00e9\u00e9"),
        (None, GITHUB_BODY, GITHUB_SIGNATURE),
        (b"", GITHUB_BODY, sign_sha256(b"", GITHUB_BODY)),  # an empty secret verifies nothing
    ],
)
def test_hmac_refuses_wrong_or_missing_signatures(
    secret: bytes | None, body: bytes, header: str | None
) -> None:
    assert not verify_sha256(secret, body, header)


def test_gitlab_token_is_compared_whole() -> None:
    assert verify_token(b"s3cret", "s3cret")
    for header in ("s3cre", "s3cret ", "S3CRET", "", None):
        assert not verify_token(b"s3cret", header)
    assert not verify_token(None, "s3cret")
    assert not verify_token(b"", "")


# --- GitHub ---------------------------------------------------------------------------------


def test_github_branch_push_becomes_one_push_event() -> None:
    delivery = parse_github("push", wp.github_push())
    assert delivery.kind is DeliveryKind.PUSH
    assert delivery.repo_keys == {"github.com/acme/app"}
    (event,) = delivery.pushes
    assert (event.source_type, event.name, event.commit) == (SourceType.BRANCH, "main", wp.AFTER)
    assert event.trigger is Trigger.PUSH
    assert event.message == "Fix the cavity flow boundary\n\nLonger body."
    assert event.author == "Ada Lovelace <ada@example.com>"


def test_github_annotated_tag_builds_the_commit_not_the_tag_object() -> None:
    payload = wp.github_push("refs/tags/v1.2.0", wp.TAG_OBJECT, commit=wp.AFTER)
    (event,) = parse_github("push", payload).pushes
    assert (event.source_type, event.name, event.commit) == (SourceType.TAG, "v1.2.0", wp.AFTER)


def test_github_forced_push_builds_the_new_head() -> None:
    (event,) = parse_github("push", wp.github_push(forced=True)).pushes
    assert event.commit == wp.AFTER


@pytest.mark.parametrize("ref", ["refs/heads/main", "refs/tags/v1"])
def test_github_deleted_ref_builds_nothing(ref: str) -> None:
    delivery = parse_github("push", wp.github_push(ref, wp.ZERO))
    assert delivery.kind is DeliveryKind.PUSH
    assert delivery.pushes == ()
    assert "deleted" in delivery.skipped[0]


@pytest.mark.parametrize(
    "ref", ["refs/notes/commits", "refs/pull/1/head", "refs/heads/-rf", "refs/heads/a..b"]
)
def test_github_refs_that_cannot_build_are_skipped_with_a_note(ref: str) -> None:
    delivery = parse_github("push", wp.github_push(ref))
    assert delivery.pushes == ()
    assert len(delivery.skipped) == 1


def test_github_ping_and_other_events() -> None:
    ping = parse_github("ping", wp.github_ping())
    assert ping.kind is DeliveryKind.PING
    assert ping.repo_keys == {"github.com/acme/app"}
    assert parse_github("issues", {"repository": wp.github_ping()["repository"]}).kind is (
        DeliveryKind.IGNORED
    )
    org_ping = parse_github("ping", {"zen": "Keep it logically awesome.", "hook_id": 1})
    assert org_ping.repo_keys == frozenset()


def test_github_enterprise_host_comes_from_the_payload() -> None:
    delivery = parse_github("push", wp.github_push(host="ghe.example.com", full_name="Acme/App"))
    assert delivery.repo_keys == {"ghe.example.com/acme/app"}


@pytest.mark.parametrize(
    "change",
    [
        {"ref": None},
        {"ref": 5},
        {"after": ""},
        {"repository": None},
        {"repository": {"html_url": "not a url"}},
    ],
)
def test_github_push_without_required_fields_is_a_payload_error(change: dict[str, object]) -> None:
    payload = wp.github_push()
    payload.update(change)
    with pytest.raises(PayloadError):
        parse_github("push", payload)


def test_long_commit_messages_are_cut() -> None:
    (event,) = parse_github("push", wp.github_push(message="x" * 100_000)).pushes
    assert len(event.message) == MAX_MESSAGE_CHARS


# --- Bitbucket ------------------------------------------------------------------------------


def test_bitbucket_push_with_several_changes() -> None:
    other = "1111111111111111111111111111111111111111"
    payload = wp.bitbucket_push(
        [
            wp.bitbucket_change("branch", "main", wp.AFTER, full_name="acme/app"),
            wp.bitbucket_change("tag", "v2.0", other, full_name="acme/app"),
            wp.bitbucket_change("branch", "old-feature", None, full_name="acme/app"),
        ]
    )
    delivery = parse_bitbucket("repo:push", payload)
    assert delivery.repo_keys == {"bitbucket.org/acme/app"}
    assert [(e.git_ref, e.commit) for e in delivery.pushes] == [
        ("refs/heads/main", wp.AFTER),
        ("refs/tags/v2.0", other),
    ]
    assert delivery.pushes[0].message == "Update Dockerfile\n"
    assert delivery.pushes[0].author == "Ada Lovelace <ada@example.com>"
    assert delivery.skipped == ("branch old-feature was deleted",)


def test_bitbucket_other_events_are_ignored_and_bad_changes_refused() -> None:
    payload = wp.bitbucket_push([])
    assert parse_bitbucket("repo:fork", payload).kind is DeliveryKind.IGNORED
    assert parse_bitbucket("repo:push", payload).pushes == ()
    for changes in ([1], [{"new": {"type": "branch", "name": "main"}}], "x"):
        with pytest.raises(PayloadError):
            parse_bitbucket("repo:push", wp.bitbucket_push(changes))  # type: ignore[arg-type]


# --- GitLab ---------------------------------------------------------------------------------


def test_gitlab_push_hook() -> None:
    delivery = parse_gitlab("Push Hook", wp.gitlab_push())
    assert delivery.repo_keys == {"gitlab.com/acme/app"}
    (event,) = delivery.pushes
    assert (event.git_ref, event.commit) == ("refs/heads/main", wp.AFTER)
    assert event.message == "Update Dockerfile\n"
    assert event.author == "Ada Lovelace <ada@example.com>"


def test_gitlab_annotated_tag_push_builds_checkout_sha_with_the_tag_message() -> None:
    payload = wp.gitlab_push("refs/tags/v1.0.0", wp.TAG_OBJECT, checkout_sha=wp.AFTER)
    (event,) = parse_gitlab("Tag Push Hook", payload).pushes
    assert (event.source_type, event.name, event.commit) == (SourceType.TAG, "v1.0.0", wp.AFTER)
    assert event.message == "Release notes"
    assert event.author == "Ada Lovelace"  # the pusher; GitLab hides the email


def test_gitlab_self_hosted_subgroup_and_deletion() -> None:
    payload = wp.gitlab_push(path="group/sub/app", base="http://127.0.0.1:8929")
    assert parse_gitlab("Push Hook", payload).repo_keys == {"127.0.0.1:8929/group/sub/app"}
    deleted = parse_gitlab("Push Hook", wp.gitlab_push(after=wp.ZERO))
    assert deleted.pushes == ()
    assert "deleted" in deleted.skipped[0]
    assert parse_gitlab("Merge Request Hook", payload).kind is DeliveryKind.IGNORED


# --- bodies ---------------------------------------------------------------------------------


def test_form_encoded_github_body_is_decoded() -> None:
    payload = wp.github_push()
    body = urlencode({"payload": json.dumps(payload)}).encode()
    assert decode_body(body, "application/x-www-form-urlencoded") == payload
    delivery = parse_delivery(Provider.GITHUB, "push", body, "application/x-www-form-urlencoded")
    assert delivery.pushes[0].commit == wp.AFTER


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{", "application/json"),
        (b"[1, 2]", "application/json"),
        (b"\xff\xfe", "application/json"),
        (b"", "application/json"),
        (b"payload=%7B&payload=%7B", "application/x-www-form-urlencoded"),
        (b"other=1", "application/x-www-form-urlencoded"),
    ],
)
def test_malformed_bodies_are_payload_errors(body: bytes, content_type: str) -> None:
    with pytest.raises(PayloadError):
        decode_body(body, content_type)
