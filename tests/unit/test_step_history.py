"""The history step alone: finished builds past spec.historyLimit, oldest first."""

from __future__ import annotations

from factories import ANSWERED_AT, document, queued_job, step_world

from autobuild.planning.snapshot import Obj, Snapshot
from autobuild.planning.steps import access, history, jobs

DONE = {"conditions": [{"type": "Complete", "status": "True"}]}
FAILED = {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}


def run(live: list[Obj], **limit: int) -> history.History:
    b = document(historyLimit=limit)
    b["metadata"]["generation"] = 1
    w = step_world(Snapshot(body=b, jobs=tuple(live), pods=(), secrets={}, now=ANSWERED_AT))
    a = access.run(w)
    return history.run(a, jobs.queue(w, a, jobs.plan(w, a, ()), created=True))


def test_the_oldest_finished_builds_past_the_limits_go() -> None:
    live = [queued_job(n, suspend=False, **DONE) for n in range(3)]
    live += [queued_job(10 + n, suspend=False, **FAILED) for n in range(2)]
    live.append(queued_job(20, suspend=False))  # in flight
    out = run(live, succeeded=1, failed=1)
    assert [j.name for j in out.delete] == ["job-0", "job-1", "job-10"]
    assert [j.name for j in out.kept] == ["job-2", "job-11", "job-20"]


def test_the_newest_build_stays_even_past_a_zero_limit() -> None:
    out = run([queued_job(n, suspend=False, **DONE) for n in range(2)], succeeded=0, failed=0)
    assert [j.name for j in out.delete] == ["job-0"]
    assert [j.name for j in out.kept] == ["job-1"]
