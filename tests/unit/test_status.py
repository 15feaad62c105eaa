"""Pure build tracking: Job/Pod -> phase, digest, reason; runPolicy; history; conditions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from factories import COMMIT, automated_build

from autobuild.api.models import BuildPhase, Condition
from autobuild.planning import status as core
from autobuild.planning.job import render_job
from autobuild.planning.planner import PushEvent, plan_builds
from autobuild.settings import BuildSettings

DIGEST = "sha256:" + "d" * 64


def job(
    n: int = 0,
    *,
    suspend: bool = False,
    conditions: list[dict[str, Any]] | None = None,
    **status: Any,
) -> dict[str, Any]:
    ab = automated_build(tags=[{"source": "main", "dockerTag": "latest,{sourceref}"}])
    build = plan_builds(ab.spec, PushEvent.parse("main", COMMIT, trigger_id=str(n))).builds[0]
    rendered = render_job(ab, build, BuildSettings())
    rendered["metadata"]["name"] = f"job-{n}"
    rendered["metadata"]["creationTimestamp"] = f"2026-11-27T10:{n:02d}:00Z"
    rendered["spec"]["suspend"] = suspend
    rendered["status"] = {"conditions": conditions or [], **status}
    return rendered


def pod(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"creationTimestamp": "2026-11-27T10:00:05Z"},
        "status": {"containerStatuses": [{"name": "kaniko", "state": state}]},
    }


def cond(
    kind: str, reason: str = "", message: str = "", at: str = "2026-11-27T10:05:00Z"
) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastTransitionTime": at,
    }


START = "2026-11-27T10:00:00Z"


def test_succeeded_with_digest_from_termination_message() -> None:
    done = job(
        conditions=[cond("Complete")], startTime=START, completionTime="2026-11-27T10:03:20Z"
    )
    record = core.build_record(
        done,
        [pod({"terminated": {"exitCode": 0, "reason": "Completed", "message": DIGEST + "\n"}})],
    )
    assert record.phase is BuildPhase.SUCCEEDED
    assert record.digest == DIGEST
    assert record.duration_seconds == 200
    assert record.tags == ["latest", "main"]
    assert (record.source_ref, record.commit, record.rule) == ("main", COMMIT, 0)


def test_oom_killed() -> None:
    failed = job(conditions=[cond("Failed", "BackoffLimitExceeded")], startTime=START)
    seen = core.observe(failed, [pod({"terminated": {"exitCode": 137, "reason": "OOMKilled"}})])
    assert (seen.phase, seen.reason) == (BuildPhase.FAILED, "OOMKilled")
    assert "out of memory" in (seen.message or "")


def test_non_zero_exit_keeps_the_log_tail() -> None:
    tail = "x" * 3000 + "\nerror building image: failed to push: UNAUTHORIZED"
    failed = job(conditions=[cond("Failed", "BackoffLimitExceeded")], startTime=START)
    seen = core.observe(
        failed, [pod({"terminated": {"exitCode": 1, "reason": "Error", "message": tail}})]
    )
    assert seen.phase is BuildPhase.FAILED
    assert seen.reason == "Error"
    assert seen.message is not None
    assert seen.message.startswith("exit code 1: …")
    assert seen.message.endswith("UNAUTHORIZED")
    assert len(seen.message) < 1100


def test_deadline_is_timed_out() -> None:
    late = job(
        conditions=[
            cond("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
        ],
        startTime=START,
    )
    seen = core.observe(late, [])
    assert (seen.phase, seen.reason) == (BuildPhase.TIMED_OUT, "DeadlineExceeded")


def test_queued_pending_running_and_pull_errors() -> None:
    assert core.observe(job(suspend=True), []).phase is BuildPhase.QUEUED
    assert core.observe(job(), []).phase is BuildPhase.PENDING
    assert core.observe(job(), [pod({"running": {"startedAt": START}})]).phase is BuildPhase.RUNNING
    pulling = core.observe(
        job(), [pod({"waiting": {"reason": "ImagePullBackOff", "message": "back-off"}})]
    )
    assert (pulling.phase, pulling.reason) == (BuildPhase.PENDING, "ImagePullBackOff")


def test_cancelled_annotation_wins() -> None:
    cancelled = job(suspend=True)
    cancelled["metadata"]["annotations"].update(
        core.cancel_patch(datetime(2026, 11, 27, tzinfo=UTC))["metadata"]["annotations"]
    )
    assert core.observe(cancelled, []).phase is BuildPhase.CANCELLED


def names(actions: core.BuildActions) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    return actions.release, actions.cancel, actions.delete


@pytest.mark.parametrize(
    ("policy", "running", "expected"),
    [
        ("Serial", False, (("job-1",), (), ())),
        ("Serial", True, ((), (), ())),
        ("SerialLatestOnly", False, (("job-3",), ("job-1", "job-2"), ())),
        ("SerialLatestOnly", True, ((), ("job-1", "job-2"), ())),
        ("Parallel", True, (("job-1", "job-2", "job-3"), (), ())),
    ],
)
def test_run_policy(policy: str, running: bool, expected: tuple[tuple[str, ...], ...]) -> None:
    spec = automated_build(runPolicy=policy).spec
    jobs = [job(1, suspend=True), job(2, suspend=True), job(3, suspend=True)]
    pods: dict[str, list[dict[str, Any]]] = {}
    if running:
        jobs.append(job(0))
        pods["job-0"] = [pod({"running": {}})]
    assert names(core.plan_actions(spec, jobs, pods)) == expected


def test_history_limit_prunes_oldest_finished() -> None:
    spec = automated_build(historyLimit={"succeeded": 2, "failed": 1}).spec
    ok = [job(n, conditions=[cond("Complete")]) for n in range(4)]
    bad = [job(10 + n, conditions=[cond("Failed", "DeadlineExceeded")]) for n in range(3)]
    actions = core.plan_actions(spec, ok + bad + [job(20)], {})
    assert actions.delete == ("job-0", "job-1", "job-10", "job-11")
    assert [b.job_name for b in actions.builds] == ["job-20", "job-12", "job-3", "job-2"]


def test_conditions_follow_kstatus() -> None:
    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    problem = core.Problem("SecretNotFound", "spec.image.pushSecret: Secret 'x' not found", True)
    stalled = {c.type: c for c in core.conditions(3, problem, [], [], now)}
    assert (stalled["Ready"].status, stalled["Stalled"].status) == ("False", "True")
    assert stalled["Stalled"].reason == "SecretNotFound"
    assert all(c.observed_generation == 3 for c in stalled.values())
    fine = core.conditions(4, None, [], list(stalled.values()), now)
    by_type = {c.type: c for c in fine}
    assert (by_type["Ready"].status, by_type["Stalled"].status, by_type["Reconciling"].status) == (
        "True",
        "False",
        "False",
    )
    later = core.conditions(4, None, [], fine, datetime(2026, 11, 28, tzinfo=UTC))
    assert [c.last_transition_time for c in later] == [c.last_transition_time for c in fine]


def test_failed_latest_build_is_not_ready_and_running_is_reconciling() -> None:
    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    failed = core.build_record(job(1, conditions=[cond("Failed", "DeadlineExceeded")]), [])
    running = core.build_record(job(2), [pod({"running": {}})])
    by_type = {c.type: c for c in core.conditions(1, None, [failed], [], now)}
    assert (by_type["Ready"].status, by_type["Ready"].reason) == ("False", "BuildFailed")
    by_type = {c.type: c for c in core.conditions(1, None, [running, failed], [], now)}
    assert (by_type["Reconciling"].status, by_type["Reconciling"].reason) == (
        "True",
        "BuildRunning",
    )
    assert isinstance(by_type["Ready"], Condition)


def test_latest_build_summary() -> None:
    done = core.build_record(
        job(conditions=[cond("Complete")]),
        [pod({"terminated": {"exitCode": 0, "message": DIGEST}})],
    )
    summary = core.latest_build([done])
    assert summary is not None
    assert (summary.short_commit, summary.tags, summary.digest) == (
        COMMIT[:7],
        "latest,main",
        DIGEST,
    )
    assert core.latest_build([]) is None


def test_newest_build_survives_a_zero_limit_and_deleted_jobs_are_ignored() -> None:
    spec = automated_build(historyLimit={"succeeded": 0, "failed": 0}).spec
    gone = job(0, conditions=[cond("Complete")])
    gone["metadata"]["deletionTimestamp"] = "2026-11-27T10:30:00Z"
    jobs = [
        gone,
        job(1, conditions=[cond("Failed", "DeadlineExceeded")]),
        job(2, conditions=[cond("Complete")]),
    ]
    actions = core.plan_actions(spec, jobs, {})
    assert actions.delete == ("job-1",)
    assert [b.job_name for b in actions.builds] == ["job-2"]
