"""The jobs steps alone: rendering the planned builds, and runPolicy per (rule, ref) queue."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from factories import ANSWERED_AT, automated_build, document, queued_job, step_world

from autobuild.api.models import BuildPhase
from autobuild.planning.planner import PlannedBuild, PushEvent, plan_builds
from autobuild.planning.snapshot import Obj, Snapshot
from autobuild.planning.steps import access, jobs

RUNNING_POD = {
    "metadata": {"name": "p0", "labels": {"job-name": "job-0"}},
    "status": {"containerStatuses": [{"name": "kaniko", "state": {"running": {}}}]},
}


def world(jobs_: tuple[Obj, ...] = (), pods: tuple[Obj, ...] = (), **spec: object) -> Snapshot:
    b = document(**spec)
    b["metadata"]["generation"] = 1
    return Snapshot(body=b, jobs=jobs_, pods=pods, secrets={}, now=ANSWERED_AT)


def planned(commit: str) -> list[PlannedBuild]:
    return plan_builds(automated_build().spec, PushEvent.parse("main", commit)).builds


def test_planned_builds_become_suspended_jobs_once() -> None:
    s = world()
    w = step_world(s)
    out = jobs.plan(w, access.run(w), [*planned("a" * 40), *planned("a" * 40), *planned("b" * 40)])
    assert len(out.new) == 2
    assert all(j.new and j.body["spec"]["suspend"] is True for j in out.new)
    assert {j.record.phase for j in out.new} == {BuildPhase.QUEUED}
    again = jobs.plan(
        step_world(replace(s, jobs=tuple(j.body for j in out.new))),
        access.run(w),
        planned("a" * 40),
    )
    assert again.new == ()
    assert len(again.existing) == 2


@pytest.mark.parametrize(
    ("policy", "release", "cancel"),
    [
        ("Serial", [], []),
        ("SerialLatestOnly", [], ["job-1", "job-2"]),
        ("Parallel", ["job-1", "job-2", "job-3"], []),
    ],
)
def test_run_policy_with_a_build_running(
    policy: str, release: list[str], cancel: list[str]
) -> None:
    live = (queued_job(0, suspend=False), queued_job(1), queued_job(2), queued_job(3))
    s = world(live, (RUNNING_POD,), runPolicy=policy)
    w = step_world(s)
    a = access.run(w)
    out = jobs.queue(w, a, jobs.plan(w, a, ()), created=True)
    assert [j.name for j in out.release] == release
    assert [j.name for j in out.cancel] == cancel
    assert all(j.record.phase is BuildPhase.CANCELLED for j in out.cancel)


def test_new_jobs_wait_while_they_may_not_be_created() -> None:
    w = step_world(world())
    a = access.run(w)
    plan = jobs.plan(w, a, planned("c" * 40))
    assert [j.new for j in jobs.queue(w, a, plan, created=True).jobs] == [True]
    held = jobs.queue(w, a, plan, created=False)
    assert held.jobs == ()
    assert held.release == ()
    released = jobs.queue(w, a, plan, created=True).release[0]
    assert released.body["spec"]["suspend"] is False
    assert plan.new[0].body["spec"]["suspend"] is True  # the plan's copy is not changed


def test_a_released_build_without_a_pod_is_looked_at_when_its_grace_ends() -> None:
    released = queued_job(0, suspend=False)  # created at 07:00, no Pod
    s = world((released,))
    w = step_world(replace(s, now=datetime(2026, 11, 29, 7, 0, 10, tzinfo=UTC)))
    a = access.run(w)
    out = jobs.queue(w, a, jobs.plan(w, a, ()), created=True)
    assert out.requeue_after == 30 - 10 + 1  # POD_CREATE_GRACE from its creation, and a second
    late = step_world(s)  # an hour later: the record says why, nothing to wait for
    assert jobs.queue(late, a, jobs.plan(late, a, ()), created=True).requeue_after is None
