"""The failure-log step alone: a failed build of unknown cause has its log head classified."""

from __future__ import annotations

from dataclasses import replace

from factories import ANSWERED_AT, build_record, document, step_world

from autobuild.api.conditions import Reason
from autobuild.api.models import BuildPhase, BuildRecord
from autobuild.planning.snapshot import LogRead, Snapshot
from autobuild.planning.steps import failure_logs

POD = {"metadata": {"name": "job-1-abcde", "creationTimestamp": "2026-11-29T07:00:00Z"}}


def failed(reason: str = Reason.ERROR) -> BuildRecord:
    return build_record(BuildPhase.FAILED, reason=reason, message="exit code 1")


def snapshot(**changes: object) -> Snapshot:
    return replace(
        Snapshot(body=document(), jobs=(), pods=(), secrets={}, now=ANSWERED_AT), **changes
    )


def test_an_unknown_failure_asks_for_the_log_head_of_its_newest_pod() -> None:
    out = failure_logs.run(step_world(snapshot()), [failed()], {"job-1": [POD]})
    assert out.reads == (LogRead("job-1", "job-1-abcde"),)
    assert out.records == (failed(),)


def test_the_log_heads_answer_is_the_cause() -> None:
    logs = {"job-1": (Reason.DOCKERFILE_NOT_FOUND, "no Dockerfile at /workspace")}
    out = failure_logs.run(step_world(snapshot(logs=logs)), [failed()], {"job-1": [POD]})
    assert out.reads == ()
    (record,) = out.records
    assert record.reason == Reason.DOCKERFILE_NOT_FOUND
    assert record.message == "no Dockerfile at /workspace; exit code 1"


def test_a_known_cause_is_left_alone() -> None:
    known = failed(Reason.DOCKERFILE_NOT_FOUND)
    out = failure_logs.run(step_world(snapshot()), [known], {"job-1": [POD]})
    assert out.reads == ()
    assert out.records == (known,)
