"""The push preflight alone: which gates it closes before the registry said the push Secret
may push, and when it refuses."""

from __future__ import annotations

from dataclasses import replace

from factories import ANSWERED_AT, automated_build, document, registry_answers, step_world

from autobuild.api.conditions import Reason
from autobuild.planning import status as tracking
from autobuild.planning.planner import PushEvent, plan_builds
from autobuild.planning.registry_gate import RegistryResult
from autobuild.planning.snapshot import Snapshot
from autobuild.planning.steps import Gate, access, jobs, preflight

COMMIT = "d" * 40


def run(s: Snapshot, problem: tracking.Problem | None = None) -> preflight.Preflight:
    w = step_world(s)
    a = access.run(w)
    builds = plan_builds(automated_build().spec, PushEvent.parse("main", COMMIT)).builds
    return preflight.run(w, a, jobs.plan(w, a, builds), problem)


def snapshot() -> Snapshot:
    b = document()
    b["metadata"]["generation"] = 1
    return Snapshot(body=b, jobs=(), pods=(), secrets={}, now=ANSWERED_AT)


def test_no_new_job_asks_nothing() -> None:
    w = step_world(snapshot())
    a = access.run(w)
    out = preflight.run(w, a, jobs.plan(w, a, ()), None)
    assert out.request is None
    assert out.created
    assert out.closes == frozenset()


def test_before_the_answer_the_jobs_the_request_and_status_wait() -> None:
    out = run(snapshot())
    assert out.request is not None
    assert out.closes == {Gate.CREATE, Gate.TRIGGER, Gate.STATUS}
    assert not out.created
    assert out.problem is None


def test_an_allowed_push_opens_every_gate() -> None:
    s = snapshot()
    out = run(replace(s, registry=registry_answers(s.body)))
    assert out.created
    assert out.request is None
    assert out.closes == frozenset()


def test_a_refusal_is_the_problem_and_status_says_so() -> None:
    s = snapshot()
    (request_id,) = [k for k in registry_answers(s.body) if k.startswith("preflight")]
    refused = RegistryResult(ANSWERED_AT, False, Reason.PUSH_UNAUTHORIZED, "denied")
    out = run(replace(s, registry={request_id: refused}))
    assert out.problem is not None
    assert out.problem.reason == Reason.PUSH_UNAUTHORIZED
    assert out.closes == {Gate.CREATE, Gate.TRIGGER}  # status is written: it shows the refusal
    assert out.requeue_after is not None


def test_a_stalled_object_creates_nothing_and_asks_no_registry() -> None:
    stalled = tracking.Problem(Reason.SECRET_NOT_FOUND, "gone")
    out = run(snapshot(), stalled)
    assert out.request is None
    assert out.closes == {Gate.CREATE}
