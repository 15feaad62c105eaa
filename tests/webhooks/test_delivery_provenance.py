"""What a delivery's pushes carry for the replay check (planning/replay.py): the delivery that
reported them and the commit time the payload gives."""

from __future__ import annotations

from datetime import UTC, datetime

from fakes import MemoryIndex
from multidict import CIMultiDict

from autobuild.api.models import Provider
from autobuild.planning.planner import PushEvent, delivery_key
from autobuild.webhooks.deliveries import parse_delivery
from autobuild.webhooks.receiver import Receiver
from tests.support import webhook_payloads as wp

SECRET = b"cavityflow-hook-secret"
AT = datetime(2026, 11, 29, 8, 0, 0, tzinfo=UTC)


def test_each_provider_gives_the_commit_time_and_names_itself() -> None:
    github = parse_delivery(Provider.GITHUB, "push", wp.encode(wp.github_push()), "")
    gitlab = parse_delivery(Provider.GITLAB, "Push Hook", wp.encode(wp.gitlab_push()), "")
    change = wp.bitbucket_change("branch", "main", wp.AFTER, full_name="acme/app")
    bitbucket = parse_delivery(
        Provider.BITBUCKET, "repo:push", wp.encode(wp.bitbucket_push([change])), ""
    )
    for delivery, provider in ((github, "github"), (gitlab, "gitlab"), (bitbucket, "bitbucket")):
        (push,) = delivery.pushes
        assert push.commit_time == AT
        assert push.delivery == f"{provider}:"  # from a webhook; the receiver adds the id


def test_a_gitlab_tag_push_gives_no_commit_time() -> None:
    payload = wp.gitlab_push("refs/tags/v1", checkout_sha=wp.AFTER)
    (push,) = parse_delivery(Provider.GITLAB, "Tag Push Hook", wp.encode(payload), "").pushes
    assert push.commit_time is None


def test_times_without_an_offset_are_utc_and_unreadable_ones_none() -> None:
    for given, expected in (
        ("2026-11-29T08:00:00", AT),
        ("2026-11-29T09:00:00+01:00", AT),
        ("2026-11-29T08:00:00Z", AT),
        ("yesterday", None),
        (12345, None),
        ("2026-11-29T08:00:00" + "0" * 100, None),
    ):
        payload = wp.github_push()
        payload["head_commit"]["timestamp"] = given
        (push,) = parse_delivery(Provider.GITHUB, "push", wp.encode(payload), "").pushes
        assert push.commit_time == expected, given


def test_the_receiver_puts_the_delivery_id_on_every_push_it_submits() -> None:
    index = MemoryIndex()
    index.add("app", "github.com/acme/app", SECRET)
    body = wp.encode(wp.github_push())
    headers = CIMultiDict(wp.github_headers("push", body, SECRET, "72d3162e-cc78-11e3"))
    answer = Receiver(index).receive(Provider.GITHUB, headers, body)
    ((_, pushes),) = answer.submissions
    assert [push.delivery for push in pushes] == ["github:72d3162e-cc78-11e3"]
    assert pushes[0].commit_time == AT


def test_long_delivery_ids_are_kept_short_and_stable() -> None:
    long_id = "x" * 200
    key = delivery_key("github", long_id)
    assert key == delivery_key("github", long_id)
    assert len(key) <= len("github:") + 64
    assert key != delivery_key("github", "x" * 199)


def test_provenance_is_not_part_of_a_push_event_s_equality() -> None:
    plain = PushEvent.parse("refs/heads/main", wp.AFTER)
    reported = PushEvent.parse("refs/heads/main", wp.AFTER, delivery="github:1", commit_time=AT)
    assert plain == reported
