"""Pure build tracking: Job/Pod -> phase, digest, reason; runPolicy; history; conditions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from factories import COMMIT, automated_build

from autobuild.api.conditions import Reason
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


@pytest.mark.parametrize(
    ("tail", "reason"),
    [
        ("error pushing image: failed to push to destination r/x:1: EOF", "PushFailed"),
        (
            "error checking push permissions -- make sure you entered the correct tag",
            "PushUnauthorized",
        ),
        ("error resolving source context: authentication required", "GitAuthFailed"),
        ("error resolving source context: couldn't find remote ref refs/heads/x", "GitCloneFailed"),
        ("error resolving dockerfile path: please provide a valid path", "DockerfileNotFound"),
        (
            "error building image: retrieving image alpine:3: MANIFEST_UNKNOWN",
            "BaseImagePullFailed",
        ),
        (
            "error building image: parsing dockerfile: unknown instruction: FORM",
            "DockerfileInvalid",
        ),
        ("error building stage: failed to execute command: exit status 2", "BuildStepFailed"),
        ("something else entirely", "Error"),
    ],
)
def test_failures_are_classified_and_the_log_tail_is_not_kept(tail: str, reason: str) -> None:
    failed = job(conditions=[cond("Failed", "BackoffLimitExceeded")], startTime=START)
    message = "x" * 3000 + "\n" + tail + " secret-looking-text"
    seen = core.observe(
        failed, [pod({"terminated": {"exitCode": 1, "reason": "Error", "message": message}})]
    )
    assert seen.phase is BuildPhase.FAILED
    assert seen.reason == reason
    assert seen.message is not None
    assert "exit code 1" in seen.message
    assert "secret-looking-text" not in seen.message
    assert len(seen.message) < 200


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
    assert (pulling.phase, pulling.reason) == (BuildPhase.PENDING, "ImagePullFailed")
    assert pulling.message == "ImagePullBackOff: back-off"


def test_cancelled_annotation_wins() -> None:
    cancelled = job(suspend=True)
    cancelled["metadata"]["annotations"].update(
        core.cancel_patch(datetime(2026, 11, 27, tzinfo=UTC))["metadata"]["annotations"]
    )
    assert core.observe(cancelled, []).phase is BuildPhase.CANCELLED


def test_conditions_follow_kstatus() -> None:
    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    problem = core.Problem(Reason.SECRET_NOT_FOUND, "spec.image.pushSecret: Secret 'x' not found")
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


def test_a_build_whose_kaniko_ended_is_running_until_the_job_says_how() -> None:
    ended = pod({"terminated": {"exitCode": 0, "reason": "Completed", "message": DIGEST}})
    assert core.observe(job(startTime=START), [ended]).phase is BuildPhase.RUNNING
