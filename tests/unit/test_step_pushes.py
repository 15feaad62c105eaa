"""The push steps alone: screening the queued pushes, and taking them once their Jobs exist."""

from __future__ import annotations

from factories import ANSWERED_AT, COMMIT, document, step_world

from autobuild.api.conditions import Reason
from autobuild.planning import status as tracking
from autobuild.planning.planner import PushEvent
from autobuild.planning.snapshot import Snapshot
from autobuild.planning.steps import access, jobs, pushes


def snapshot(*events: PushEvent) -> Snapshot:
    b = document()
    b["metadata"]["generation"] = 1
    return Snapshot(
        body=b, jobs=(), pods=(), secrets={}, now=ANSWERED_AT, pushes=events, push_count=len(events)
    )


def test_a_new_push_plans_its_builds() -> None:
    w = step_world(snapshot(PushEvent.parse("main", COMMIT)))
    out = pushes.screen(w, access.run(w), None)
    assert [b.event.commit for b in out.builds] == [COMMIT]
    assert out.screened.done == 1
    assert out.resolve is None


def test_a_stalled_object_screens_nothing() -> None:
    w = step_world(snapshot(PushEvent.parse("main", COMMIT)))
    stalled = tracking.Problem(Reason.PUSH_UNAUTHORIZED, "denied")
    out = pushes.screen(w, access.run(w), stalled)
    assert out.builds == ()
    assert out.screened.done == 0


def test_pushes_are_taken_only_with_their_jobs() -> None:
    w = step_world(snapshot(PushEvent.parse("main", COMMIT)))
    a = access.run(w)
    screened = pushes.screen(w, a, None)
    queue = jobs.queue(w, a, jobs.plan(w, a, screened.builds), created=True)
    bodies = [j.body for j in queue.jobs]
    assert pushes.record(w, a, screened, False, []).done == 0  # they stay queued
    taken = pushes.record(w, a, screened, True, bodies)
    assert taken.done == 1
    assert taken.push_events == ()
    assert taken.record is not None
