"""Replayed webhook pushes (issue 17, item 6): decide with the record in status.pushes.

The world is plain dicts, as in test_decide; a "restart" is a new snapshot from what the API
server keeps (the object with its status, the Jobs left after pruning) with nothing in memory.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from factories import COMMIT, OTHER_COMMIT, document
from hypothesis import given, settings
from hypothesis import strategies as st

from autobuild.api.conditions import Reason
from autobuild.api.models import MAX_BUILT_REFS, AutomatedBuild, PushRecord, Trigger
from autobuild.controller.store import Store
from autobuild.planning import registry_gate, replay
from autobuild.planning.decide import decide
from autobuild.planning.planner import PushEvent
from autobuild.planning.registry_gate import RegistryResult
from autobuild.planning.snapshot import Decision, HeadsResult, Snapshot
from autobuild.planning.status import Problem
from autobuild.settings import BuildSettings

NOW = datetime(2026, 11, 29, 8, 0, 0, tzinfo=UTC)
SETTINGS = BuildSettings()
THIRD_COMMIT = "f" * 40
_versions = itertools.count(100)


def body(**spec: Any) -> dict[str, Any]:
    doc = document(**spec)
    doc["metadata"].update(generation=1, resourceVersion=str(next(_versions)), annotations={})
    return doc


def registry_answers(b: dict[str, Any]) -> dict[str, RegistryResult]:
    """A registry that lets the push Secret push and has no visibility notion."""
    ab = AutomatedBuild.model_validate(b)
    preflight = registry_gate.push_preflight(ab, "", {}, NOW).request
    settings = registry_gate.repository_settings(
        registry_gate.image_fingerprint(ab, ""), None, {}, NOW
    ).request
    assert preflight is not None
    assert settings is not None
    unsupported = {"name": "acme/x", "kind": "Registry", "reason": "VisibilityUnsupported"}
    return {
        preflight.id: RegistryResult(NOW, True),
        settings.id: RegistryResult(NOW, True, status=unsupported),
    }


def webhook(
    ref: str, commit: str, at: datetime | None, delivery: str = "", trigger: Trigger = Trigger.PUSH
) -> PushEvent:
    """A push as the receiver queues it: with its delivery and the payload's commit time."""
    return PushEvent.parse(
        ref, commit, trigger=trigger, delivery=f"github:{delivery}", commit_time=at
    )


class World:
    """What the API server keeps and what the operator has in memory, acted on like act()."""

    def __init__(self, b: dict[str, Any], now: datetime = NOW) -> None:
        self.snapshot = Snapshot(
            body=b, jobs=(), pods=(), secrets={}, now=now, registry=registry_answers(b)
        )

    def push(self, *events: PushEvent) -> None:
        s = self.snapshot
        self.snapshot = replace(
            s, pushes=(*s.pushes, *events), push_count=s.push_count + len(events)
        )

    def decide(self) -> Decision:
        return decide(self.snapshot, SETTINGS)

    def act(self, decision: Decision, later: timedelta = timedelta(seconds=1)) -> None:
        s = self.snapshot
        jobs = {j["metadata"]["name"]: copy.deepcopy(dict(j)) for j in s.jobs}
        for created in decision.create:
            job = copy.deepcopy(created)
            job["metadata"].update(
                uid=f"uid-{job['metadata']['name']}",
                resourceVersion=str(next(_versions)),
                creationTimestamp=s.now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            )
            job["status"] = {}
            jobs[job["metadata"]["name"]] = job
        for write in decision.release:
            jobs[write.name]["spec"]["suspend"] = False
        for write in decision.delete:
            del jobs[write.name]
        new_body = copy.deepcopy(dict(s.body))
        if decision.status is not None:
            status = {**new_body.get("status", {}), **decision.status}
            new_body["status"] = {k: v for k, v in status.items() if v is not None}
        self.snapshot = replace(
            s,
            body=new_body,
            jobs=tuple(jobs.values()),
            pushes=tuple(s.pushes[decision.pushes_done :]),
            now=s.now + later,
        )

    def settle(self) -> list[Decision]:
        """Decide and act until nothing is left to write (heads requests stay unanswered)."""
        decisions = []
        for _ in range(8):
            decision = self.decide()
            decisions.append(decision)
            if decision.writes == 0:
                return decisions
            self.act(decision)
        raise AssertionError(f"no fixed point: {decisions[-1]}")

    def answer_heads(self, decision: Decision, refs: dict[str, str]) -> None:
        """The ls-remote a decision asked for, read now."""
        assert decision.resolve is not None
        request = decision.resolve
        result = HeadsResult(request.generation, request.request_id, self.snapshot.now, refs)
        self.snapshot = replace(self.snapshot, heads=result)

    def finish_all(self) -> None:
        """Every build Job completed (their pods ran and Kaniko pushed)."""
        jobs = []
        for job in self.snapshot.jobs:
            done = copy.deepcopy(dict(job))
            done["spec"]["suspend"] = False
            done["status"] = {
                "conditions": [{"type": "Complete", "status": "True"}],
                "startTime": "2026-11-29T08:00:00Z",
                "completionTime": "2026-11-29T08:00:01Z",
            }
            jobs.append(done)
        self.snapshot = replace(self.snapshot, jobs=tuple(jobs))

    def restart(self) -> None:
        """A new operator process: what the API server keeps, nothing from memory."""
        s = self.snapshot
        self.snapshot = Snapshot(
            body=s.body,
            jobs=s.jobs,
            pods=(),
            secrets={},
            now=s.now + timedelta(minutes=1),
            registry=registry_answers(s.body),
        )

    def created_commits(self, decisions: list[Decision]) -> list[str]:
        return [
            j["metadata"]["annotations"]["autobuild.dev/commit"]
            for d in decisions
            for j in d.create
        ]

    @property
    def record(self) -> PushRecord:
        return PushRecord.model_validate(self.snapshot.body["status"]["pushes"])


def created_world(**spec: Any) -> World:
    """An AutomatedBuild through its first visit (no rule had a head on creation)."""
    world = World(body(**spec))
    for _ in range(8):
        decision = world.decide()
        if decision.writes == 0 and decision.resolve is None:
            world.snapshot = replace(world.snapshot, heads=None)
            return world
        if decision.resolve is not None:
            world.answer_heads(decision, {})
        world.act(decision, later=timedelta(0))
    raise AssertionError("the first visit did not settle")


def built_twice_then_pruned() -> tuple[World, PushEvent, PushEvent]:
    """main built at COMMIT (delivery d1), then at OTHER_COMMIT (d2); historyLimit 1 prunes
    the first Job."""
    world = created_world(historyLimit={"succeeded": 1, "failed": 1})
    first = webhook("refs/heads/main", COMMIT, NOW + timedelta(seconds=5), "d1")
    world.snapshot = replace(world.snapshot, now=NOW + timedelta(seconds=10))
    world.push(first)
    assert world.created_commits(world.settle()) == [COMMIT]
    world.finish_all()
    world.settle()
    second = webhook(
        "refs/heads/main", OTHER_COMMIT, world.snapshot.now + timedelta(seconds=1), "d2"
    )
    world.snapshot = replace(world.snapshot, now=world.snapshot.now + timedelta(seconds=2))
    world.push(second)
    assert world.created_commits(world.settle()) == [OTHER_COMMIT]
    world.finish_all()
    world.settle()
    commits = [j["metadata"]["annotations"]["autobuild.dev/commit"] for j in world.snapshot.jobs]
    assert commits == [OTHER_COMMIT]  # the first build's Job is pruned
    return world, first, second


def test_a_replayed_old_push_after_a_restart_and_pruning_builds_nothing() -> None:
    world, first, _ = built_twice_then_pruned()
    world.restart()
    # The captured push again, under a delivery id never seen (the header is not signed).
    world.push(replace(first, delivery="github:forged-1"))
    decision = world.decide()
    assert decision.create == ()
    assert decision.resolve is not None  # older than the last build: is it still the head?
    assert decision.resolve.request_id == replay.heads_request_id(1)
    assert decision.pushes_done == 0
    world.act(decision)
    world.answer_heads(decision, {"refs/heads/main": OTHER_COMMIT})
    refused = world.decide()
    assert refused.create == ()
    assert refused.pushes_done == 1
    (event,) = refused.push_events
    assert (event.type, event.reason) == ("Warning", Reason.STALE_PUSH)
    assert "refs/heads/main@0123456" in event.message
    assert "github:forged-1" in event.message
    assert "head is 89abcde" in event.message
    world.act(refused)
    assert world.settle()[-1].writes == 0
    assert len(world.snapshot.jobs) == 1


def test_a_redelivery_after_a_restart_builds_nothing_and_asks_no_git_host() -> None:
    world, first, second = built_twice_then_pruned()
    world.restart()
    world.push(first, second)  # both with their own delivery ids, as GitHub redelivers
    decision = world.decide()
    assert decision.create == ()
    assert decision.resolve is None
    assert decision.pushes_done == 2
    assert decision.push_events == ()
    assert world.record.refs[0].deliveries == ["github:d2", "github:d1"]


def test_a_force_push_to_an_older_commit_is_the_head_and_builds() -> None:
    world, first, _ = built_twice_then_pruned()
    world.restart()
    forced = replace(first, delivery="github:forced")  # main was force-pushed back to COMMIT
    world.push(forced)
    decision = world.decide()
    world.act(decision)
    world.answer_heads(decision, {"refs/heads/main": COMMIT})
    built = world.decide()
    assert [j["metadata"]["annotations"]["autobuild.dev/commit"] for j in built.create] == [COMMIT]
    assert built.push_events == ()
    world.act(built)
    assert world.record.refs[0].commit == COMMIT
    assert world.record.refs[0].deliveries[0] == "github:forced"


def test_heads_read_before_a_push_arrived_do_not_decide_it() -> None:
    world, first, _ = built_twice_then_pruned()
    world.restart()
    world.push(replace(first, delivery="github:r1"))
    asked = world.decide()
    world.act(asked)
    world.push(replace(first, delivery="github:r2"))  # arrives while the ls-remote runs
    world.answer_heads(asked, {"refs/heads/main": COMMIT})  # read for push 1 only
    decision = world.decide()
    assert decision.pushes_done == 1
    assert len(decision.create) == 1  # push 1: the head when read
    assert decision.resolve is not None
    assert decision.resolve.request_id == replay.heads_request_id(2)


def test_newer_commits_build_without_asking_the_git_host() -> None:
    world = created_world(runPolicy="Parallel")
    start = world.snapshot.now
    world.snapshot = replace(world.snapshot, now=start + timedelta(seconds=10))
    world.push(
        webhook("refs/heads/main", COMMIT, start + timedelta(seconds=1), "q1"),
        webhook("refs/heads/main", OTHER_COMMIT, start + timedelta(seconds=2), "q2"),
    )
    decision = world.decide()
    assert decision.resolve is None
    assert len(decision.create) == 2  # two quick pushes: both newer than the build before
    world.act(decision)
    assert [r.deliveries for r in world.record.refs] == [["github:q2", "github:q1"]]


def test_a_commit_made_before_the_last_build_builds_while_it_is_the_head() -> None:
    world = created_world()
    start = world.snapshot.now
    world.snapshot = replace(world.snapshot, now=start + timedelta(seconds=10))
    world.push(webhook("refs/heads/main", COMMIT, start + timedelta(seconds=5), "a"))
    world.act(world.decide())
    # Committed before that build, pushed after it (a fast-forward of an older commit).
    world.push(webhook("refs/heads/main", OTHER_COMMIT, start + timedelta(seconds=6), "b"))
    asked = world.decide()
    assert asked.create == ()
    world.act(asked)
    world.answer_heads(asked, {"refs/heads/main": OTHER_COMMIT})
    assert len(world.decide().create) == 1


def test_pushes_without_a_commit_time_or_from_the_future_need_the_head() -> None:
    tags = [{"sourceType": "Tag", "source": "/^v.*/", "dockerTag": "{sourceref}"}]
    world = created_world(tags=tags, runPolicy="Parallel")
    now = world.snapshot.now
    ahead = now + timedelta(days=1)
    world.push(
        webhook("refs/tags/v1", COMMIT, None, "gitlab-tag"),  # GitLab tag pushes carry no commits
        webhook("refs/tags/v2", OTHER_COMMIT, ahead, "clock-ahead"),
        webhook("refs/tags/v3", THIRD_COMMIT, ahead, "moved-since"),
    )
    asked = world.decide()
    assert asked.create == ()
    assert asked.resolve is not None
    world.act(asked)
    heads = {"refs/tags/v1": COMMIT, "refs/tags/v2": OTHER_COMMIT, "refs/tags/v3": COMMIT}
    world.answer_heads(asked, heads)
    decision = world.decide()
    built = sorted(j["metadata"]["annotations"]["autobuild.dev/commit"] for j in decision.create)
    assert built == sorted([COMMIT, OTHER_COMMIT])
    (event,) = decision.push_events
    assert "refs/tags/v3@fffffff" in event.message
    assert "in the future" in event.message
    world.act(decision)
    # The future commit time that built moves v2's bound: a replay of it needs the head.
    by_ref = {r.ref: r for r in world.record.refs}
    assert by_ref["refs/tags/v1"].commit_time is None
    assert by_ref["refs/tags/v2"].commit_time == ahead


def test_heads_that_cannot_be_read_refuse_and_say_why() -> None:
    world, first, _ = built_twice_then_pruned()
    world.restart()
    world.push(replace(first, delivery="github:x"))
    asked = world.decide()
    world.act(asked)
    assert asked.resolve is not None
    failed = HeadsResult(
        1,
        asked.resolve.request_id,
        world.snapshot.now,
        problem=Problem(Reason.SOURCE_UNREACHABLE, "connection refused"),
    )
    world.snapshot = replace(world.snapshot, heads=failed)
    decision = world.decide()
    assert decision.create == ()
    (event,) = decision.push_events
    assert "could not be read: connection refused" in event.message


def test_polls_and_triggers_are_not_screened_but_their_builds_move_the_bound() -> None:
    world = created_world()
    start = world.snapshot.now
    world.snapshot = replace(world.snapshot, now=start + timedelta(seconds=60))
    world.push(PushEvent.parse("refs/heads/main", COMMIT, trigger=Trigger.POLL))
    built = world.decide()
    assert len(built.create) == 1
    assert built.resolve is None
    world.act(built)
    assert world.record.refs[0].time == start + timedelta(seconds=60)
    # A webhook push of a commit made before that poll's build is checked against the head.
    world.push(webhook("refs/heads/main", OTHER_COMMIT, start + timedelta(seconds=30), "late"))
    assert world.decide().resolve is not None


def test_the_record_keeps_the_newest_refs_and_raises_since_for_the_rest() -> None:
    tags = [{"sourceType": "Tag", "source": "/^v.*/", "dockerTag": "{sourceref}"}]
    world = created_world(
        tags=tags, runPolicy="Parallel", historyLimit={"succeeded": 1, "failed": 1}
    )
    start = world.snapshot.now
    for n in range(MAX_BUILT_REFS + 3):
        moment = start + timedelta(seconds=10 * (n + 1))
        world.snapshot = replace(world.snapshot, now=moment + timedelta(seconds=1))
        commit = f"{n:040x}"
        world.push(webhook(f"refs/tags/v{n}", commit, moment, f"t{n}"))
        world.settle()
        world.finish_all()
        world.settle()
    record = world.record
    assert len(record.refs) == MAX_BUILT_REFS
    assert record.refs[0].ref == f"refs/tags/v{MAX_BUILT_REFS + 2}"
    dropped = start + timedelta(seconds=10 * 3 + 1)  # v2's build, the newest that fell out
    assert record.since == dropped
    # A replay of a dropped tag's push: older than since, so only if it is the head.
    world.restart()
    world.push(webhook("refs/tags/v0", f"{0:040x}", start + timedelta(seconds=10), "again"))
    assert world.decide().resolve is not None


def test_refusals_are_one_event_and_deciding_again_writes_nothing() -> None:
    world, first, _ = built_twice_then_pruned()
    world.restart()
    world.push(*(replace(first, delivery=f"github:flood-{n}") for n in range(10)))
    asked = world.decide()
    assert asked.resolve is not None
    assert asked.resolve.request_id == replay.heads_request_id(10)  # one ls-remote for all
    world.act(asked)
    world.answer_heads(asked, {"refs/heads/main": OTHER_COMMIT})
    decision = world.decide()
    assert decision.pushes_done == 10
    (event,) = decision.push_events
    assert event.message.startswith("10 webhook push(es) built nothing:")
    assert "and 7 more" in event.message
    world.act(decision)
    assert world.decide().writes == 0


def test_the_first_visit_starts_the_record_and_pushes_before_it_need_the_head() -> None:
    world = created_world()
    assert world.record.since == NOW
    assert world.record.refs == []
    world.push(webhook("refs/heads/main", COMMIT, NOW - timedelta(days=30), "old"))
    assert world.decide().resolve is not None


def test_the_store_numbers_pushes_so_heads_cover_the_ones_before_them() -> None:
    store = Store(lambda key: None)
    doc = document()
    doc["metadata"]["resourceVersion"] = "1"
    store.apply_automated_build("ADDED", doc)
    key = ("ci", "cavityflow")
    first = webhook("refs/heads/main", COMMIT, NOW, "n1")
    store.add_pushes(key, [first, first])
    store.take_pushes(key, 1)
    store.add_pushes(key, [first])
    snapshot = store.snapshot(key, NOW)
    assert snapshot is not None
    # Pending: pushes 2 and 3 (of 3 queued so far).
    assert (snapshot.push_count, len(snapshot.pushes)) == (3, 2)
    store.apply_automated_build("DELETED", doc)
    store.apply_automated_build("ADDED", doc)
    again = store.snapshot(key, NOW)
    assert again is not None
    assert again.push_count == 0


def test_a_refusal_names_times_in_utc() -> None:
    at = datetime(2026, 11, 29, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    event = webhook("refs/heads/main", COMMIT, at, "tz")
    record = PushRecord(since=NOW + timedelta(hours=1))
    seen = replay.HeadsSeen(1, {"refs/heads/main": OTHER_COMMIT})
    screened = replay.screen([event], record, 1, seen, NOW + timedelta(hours=2))
    assert screened.accepted == ()
    (line,) = screened.refused
    assert "commit time 2026-11-29T08:00:00Z is not after the ref's last build" in line
    assert "(2026-11-29T09:00:00Z)" in line


_COMMITS = (COMMIT, OTHER_COMMIT, THIRD_COMMIT)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(_COMMITS),  # the commit pushed
            st.integers(-20, 20),  # its commit time, seconds from when it is pushed
            st.integers(0, 3),  # its delivery id: a small set, so some are redeliveries
            st.sampled_from(_COMMITS),  # the head when the operator reads it
        ),
        min_size=1,
        max_size=6,
    )
)
def test_no_webhook_push_builds_an_older_commit_unless_it_is_the_head(
    steps: list[tuple[str, int, int, str]],
) -> None:
    """The issue's rule over arbitrary push sequences with pruning: a push builds only if
    its commit time is after the ref's last build (its request, its commit time) and not in
    the future, or its commit is the head read after it arrived; deciding again after that
    writes nothing."""
    world = created_world(runPolicy="Parallel", historyLimit={"succeeded": 1, "failed": 1})
    last_build = world.record.since
    assert last_build is not None
    head_read: str | None = None
    for commit, offset, delivery, head in steps:
        world.snapshot = replace(world.snapshot, now=world.snapshot.now + timedelta(seconds=5))
        at = world.snapshot.now + timedelta(seconds=offset)
        world.push(webhook("refs/heads/main", commit, at, f"d{delivery}"))
        for _ in range(4):
            decision = world.decide()
            now = world.snapshot.now
            for job in decision.create:
                built = job["metadata"]["annotations"]["autobuild.dev/commit"]
                newer = last_build < at <= now
                assert newer or built == head_read, (built, at, last_build, head_read)
                last_build = max(last_build, now, at)
            world.act(decision)
            if decision.resolve is not None:
                world.answer_heads(decision, {"refs/heads/main": head})
                head_read = head
            world.finish_all()
        assert not world.snapshot.pushes
    world.settle()
    assert world.decide().writes == 0


def test_an_object_from_before_the_record_starts_it_from_its_jobs() -> None:
    world, first, _ = built_twice_then_pruned()
    body = copy.deepcopy(dict(world.snapshot.body))
    del body["status"]["pushes"]  # written by an operator without replay checks
    world.snapshot = replace(world.snapshot, body=body)
    world.restart()
    upgraded = world.decide()
    assert upgraded.status is not None  # one write: the record
    world.act(upgraded)
    (main,) = world.record.refs
    assert (main.ref, main.commit, main.deliveries) == ("refs/heads/main", OTHER_COMMIT, [])
    assert world.record.since == world.snapshot.now - timedelta(seconds=1)  # this visit
    world.push(replace(first, delivery="github:after-upgrade"))
    assert world.decide().resolve is not None  # older than that: only if it is the head
    assert world.decide().create == ()
