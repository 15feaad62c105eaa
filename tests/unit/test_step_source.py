"""The source step alone: creation and trigger requests, and the heads they need."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from factories import ANSWERED_AT, COMMIT, automated_build, document, step_world

from autobuild.api.conditions import Reason
from autobuild.planning import status as tracking
from autobuild.planning.snapshot import HeadsResult, Snapshot
from autobuild.planning.steps import Gate, access, source
from autobuild.planning.triggers import ANNOTATION_TRIGGER, TriggerRequest, append_request

MAIN = "refs/heads/main"  # as git ls-remote names it


def snapshot(**changes: object) -> Snapshot:
    b = document()
    b["metadata"]["generation"] = 1
    return replace(Snapshot(body=b, jobs=(), pods=(), secrets={}, now=ANSWERED_AT), **changes)


def run(s: Snapshot) -> source.Source:
    world = step_world(s)
    return source.run(world, access.run(world))


def test_creation_reads_the_heads_first_and_holds_status_back() -> None:
    out = run(snapshot())
    assert out.resolve is not None
    assert out.resolve.request_id == "create"
    assert out.closes == {Gate.STATUS}
    assert out.builds == ()
    assert out.last_trigger is None


def test_the_heads_answer_plans_the_creation_builds_and_records_it() -> None:
    heads = HeadsResult(1, "create", ANSWERED_AT, heads={MAIN: COMMIT})
    out = run(snapshot(heads=heads))
    assert [(b.event.name, b.event.commit) for b in out.builds] == [("main", COMMIT)]
    assert out.last_trigger is not None
    assert out.last_trigger.reason == Reason.TRIGGERED
    assert out.resolve is None
    assert out.closes == frozenset()
    assert out.observed_source.startswith("github.com/acme/")
    assert out.events == ()  # creation says so in status only


def test_a_failed_ls_remote_is_the_problem_until_it_is_stale() -> None:
    problem = tracking.Problem(Reason.SOURCE_UNREACHABLE, "connection refused")
    heads = HeadsResult(1, "create", ANSWERED_AT, problem=problem)
    out = run(snapshot(heads=heads, now=ANSWERED_AT + timedelta(seconds=10)))
    assert out.problem == problem
    assert out.requeue_after == source.RETRY_SECONDS - 10 + 0.5
    stale = run(snapshot(heads=heads, now=ANSWERED_AT + timedelta(seconds=31)))
    assert stale.problem is None
    assert stale.resolve is not None


def test_a_trigger_with_a_commit_needs_no_heads() -> None:
    s = snapshot()
    b = s.body
    b["status"] = {"lastTrigger": {"id": "create", "time": ANSWERED_AT.isoformat()}}
    b["status"]["observedSource"] = source.source_fingerprint(automated_build())
    request = TriggerRequest("t1", "main", COMMIT)
    b["metadata"]["annotations"] = {ANNOTATION_TRIGGER: append_request(None, request)}
    out = run(s)
    assert out.resolve is None
    assert [b.event.commit for b in out.builds] == [COMMIT]
    assert out.last_trigger is not None
    assert out.last_trigger.id == "t1"
    assert [e.reason for e in out.events] == [Reason.TRIGGERED]
