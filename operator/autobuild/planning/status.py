"""Pure reconciliation of builds: Jobs and Pods as the API returns them -> status and actions.

The Jobs are the durable record of every build: status is derived from them on every visit, so
an operator restart loses nothing and an unchanged world yields an unchanged status (no write).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from autobuild.api.models import (
    AutomatedBuildSpec,
    BuildPhase,
    BuildRecord,
    Condition,
    LatestBuild,
    RunPolicy,
    SourceType,
    Trigger,
)
from autobuild.planning.job import (
    ANNOTATION_COMMIT,
    ANNOTATION_SOURCE_REF,
    ANNOTATION_TAGS,
    CONTAINER_NAME,
    LABEL_BUILD_ID,
    LABEL_RULE,
    LABEL_TRIGGER,
)

ANNOTATION_CANCELLED: Final = "autobuild.dev/cancelled"
# When the operator created the Job, to the microsecond: creationTimestamp has whole seconds only.
ANNOTATION_REQUESTED: Final = "autobuild.dev/requested-at"
_FINISHED: Final = frozenset(
    {BuildPhase.SUCCEEDED, BuildPhase.FAILED, BuildPhase.CANCELLED, BuildPhase.TIMED_OUT}
)
_FAILED: Final = frozenset({BuildPhase.FAILED, BuildPhase.CANCELLED, BuildPhase.TIMED_OUT})
_PULL_ERRORS: Final = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError"}
)
_MESSAGE_MAX: Final = 1024

Obj = Mapping[str, Any]


def cancel_patch(now: datetime) -> dict[str, Any]:
    """The Job patch that cancels a build: suspending stops its Pod, the annotation records when."""
    moment = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"metadata": {"annotations": {ANNOTATION_CANCELLED: moment}}, "spec": {"suspend": True}}


def is_finished(phase: BuildPhase) -> bool:
    """True for Succeeded, Failed, Cancelled and TimedOut."""
    return phase in _FINISHED


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _condition(job: Obj, kind: str) -> Obj | None:
    found: Obj | None = None
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            found = cond
    return found


def _trim(text: str) -> str:
    """Keep the end of a message (a log tail is most useful at its end)."""
    text = text.strip()
    return text if len(text) <= _MESSAGE_MAX else "…" + text[-_MESSAGE_MAX:]


def _kaniko_state(pods: Sequence[Obj]) -> Obj:
    """The state of the newest pod's Kaniko container ({} before it has one)."""
    newest = sorted(pods, key=lambda p: str(p.get("metadata", {}).get("creationTimestamp", "")))
    for pod in reversed(newest):
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            if container.get("name") == CONTAINER_NAME:
                state: Obj = container.get("state") or {}
                return state
    return {}


@dataclass(frozen=True)
class Observation:
    """What a Job and its Pods say about one build."""

    phase: BuildPhase
    start_time: datetime | None = None
    completion_time: datetime | None = None
    digest: str | None = None
    reason: str | None = None
    message: str | None = None


def _failure(job: Obj, pods: Sequence[Obj]) -> Observation:
    failed = _condition(job, "Failed") or {}
    finished = _parse_time(failed.get("lastTransitionTime"))
    start = _parse_time((job.get("status") or {}).get("startTime"))
    if failed.get("reason") == "DeadlineExceeded":
        message = failed.get("message") or "the build ran longer than spec.timeout"
        return Observation(BuildPhase.TIMED_OUT, start, finished, None, "DeadlineExceeded", message)
    terminated = _kaniko_state(pods).get("terminated")
    if terminated:
        reason = terminated.get("reason") or "Error"
        exit_code = terminated.get("exitCode")
        text = terminated.get("message") or ""
        if reason == "OOMKilled":
            text = text or "the build ran out of memory (raise AUTOBUILD_MEMORY_LIMIT)"
        message = f"exit code {exit_code}" + (f": {_trim(text)}" if text else "")
        return Observation(BuildPhase.FAILED, start, finished, None, reason, message)
    reason = failed.get("reason") or "BuildFailed"
    return Observation(BuildPhase.FAILED, start, finished, None, reason, failed.get("message"))


def observe(job: Obj, pods: Sequence[Obj]) -> Observation:
    """Derive a build's phase, times, digest and failure reason from its Job and Pods."""
    meta = job.get("metadata") or {}
    status = job.get("status") or {}
    start = _parse_time(status.get("startTime"))
    if (meta.get("annotations") or {}).get(ANNOTATION_CANCELLED):
        cancelled_at = _parse_time(meta["annotations"][ANNOTATION_CANCELLED])
        return Observation(
            BuildPhase.CANCELLED, start, cancelled_at, None, "Cancelled", "cancelled on request"
        )
    if _condition(job, "Complete"):
        message = (_kaniko_state(pods).get("terminated") or {}).get("message") or ""
        digest = message.strip() if message.strip().startswith("sha256:") else None
        completed = _parse_time(status.get("completionTime"))
        return Observation(BuildPhase.SUCCEEDED, start, completed, digest)
    if _condition(job, "Failed"):
        return _failure(job, pods)
    if (job.get("spec") or {}).get("suspend"):
        return Observation(BuildPhase.QUEUED)
    state = _kaniko_state(pods)
    waiting = state.get("waiting") or {}
    if waiting.get("reason") in _PULL_ERRORS:
        return Observation(
            BuildPhase.PENDING, start, None, None, waiting["reason"], waiting.get("message")
        )
    if state.get("running"):
        return Observation(BuildPhase.RUNNING, start)
    return Observation(BuildPhase.PENDING, start)


def build_record(job: Obj, pods: Sequence[Obj]) -> BuildRecord:
    """The status entry of the build that ``job`` runs."""
    meta = job.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    ref = annotations.get(ANNOTATION_SOURCE_REF, "")
    source_type = SourceType.TAG if ref.startswith("refs/tags/") else SourceType.BRANCH
    seen = observe(job, pods)
    duration = None
    if seen.start_time and seen.completion_time:
        duration = max(0, int((seen.completion_time - seen.start_time).total_seconds()))
    return BuildRecord(
        id=labels.get(LABEL_BUILD_ID, meta.get("name", "")),
        rule=int(labels.get(LABEL_RULE, "0")),
        source_type=source_type,
        source_ref=ref.removeprefix("refs/heads/").removeprefix("refs/tags/"),
        commit=annotations.get(ANNOTATION_COMMIT, ""),
        trigger=Trigger(labels.get(LABEL_TRIGGER, Trigger.PUSH.value)),
        tags=[t for t in annotations.get(ANNOTATION_TAGS, "").split(",") if t],
        job_name=meta.get("name", ""),
        phase=seen.phase,
        start_time=seen.start_time,
        completion_time=seen.completion_time,
        duration_seconds=duration,
        digest=seen.digest,
        reason=seen.reason,
        message=seen.message,
    )


def creation_key(job: Obj) -> str:
    """Sort key of build Jobs in the order the operator created them."""
    meta = job.get("metadata") or {}
    requested = (meta.get("annotations") or {}).get(ANNOTATION_REQUESTED, "")
    return f"{meta.get('creationTimestamp', '')}/{requested}/{meta.get('name', '')}"


@dataclass(frozen=True)
class BuildActions:
    """What the controller must do to the Jobs, and the builds to record in status."""

    release: tuple[str, ...] = ()
    cancel: tuple[str, ...] = ()
    delete: tuple[str, ...] = ()
    builds: tuple[BuildRecord, ...] = field(default=())


def plan_actions(
    spec: AutomatedBuildSpec, jobs: Sequence[Obj], pods_by_job: Mapping[str, Sequence[Obj]]
) -> BuildActions:
    """Apply runPolicy (release or cancel queued Jobs) and historyLimit (prune finished Jobs).

    The newest build is never pruned, so ``latestBuild`` and its Events survive a limit of 0.
    """
    live = [job for job in jobs if not (job.get("metadata") or {}).get("deletionTimestamp")]
    ordered = sorted(live, key=creation_key)  # oldest first
    records = {
        job["metadata"]["name"]: build_record(job, pods_by_job.get(job["metadata"]["name"], ()))
        for job in ordered
    }
    active = [n for n, r in records.items() if r.phase in (BuildPhase.PENDING, BuildPhase.RUNNING)]
    queued = [n for n, r in records.items() if r.phase is BuildPhase.QUEUED]
    release: list[str] = []
    cancel: list[str] = []
    if spec.run_policy is RunPolicy.PARALLEL:
        release = queued
    elif spec.run_policy is RunPolicy.SERIAL:
        release = queued[:1] if not active else []
    else:  # SerialLatestOnly: only the newest queued build survives
        cancel = queued[:-1]
        release = queued[-1:] if not active else []
    finished_ok = [n for n, r in records.items() if r.phase is BuildPhase.SUCCEEDED]
    finished_bad = [n for n, r in records.items() if r.phase in _FAILED and n not in cancel]
    limit = spec.history_limit
    delete = finished_ok[: max(0, len(finished_ok) - limit.succeeded)]
    delete += finished_bad[: max(0, len(finished_bad) - limit.failed)]
    newest = list(records)[-1:]
    delete = [n for n in delete if n not in newest]
    kept = [records[n] for n in reversed(list(records)) if n not in delete]
    return BuildActions(tuple(release), tuple(cancel), tuple(delete), tuple(kept))


def latest_build(builds: Sequence[BuildRecord]) -> LatestBuild | None:
    """The flat summary of the newest build, for printer columns."""
    if not builds:
        return None
    newest = builds[0]
    return LatestBuild(
        id=newest.id,
        phase=newest.phase,
        source_ref=newest.source_ref,
        commit=newest.commit,
        short_commit=newest.commit[:7],
        tags=",".join(newest.tags),
        digest=newest.digest or "",
        reason=newest.reason or "",
        start_time=newest.start_time,
        completion_time=newest.completion_time,
    )


@dataclass(frozen=True)
class Problem:
    """Why the spec cannot be acted on (Stalled) or cannot be acted on now (not Ready)."""

    reason: str
    message: str
    stalled: bool


def conditions(
    generation: int,
    problem: Problem | None,
    builds: Sequence[BuildRecord],
    previous: Sequence[Condition],
    now: datetime,
) -> list[Condition]:
    """Ready / Reconciling / Stalled by kstatus rules; transition times move only on change."""
    newest = builds[0] if builds else None
    in_flight = [b for b in builds if b.phase not in _FINISHED]
    if problem is not None:
        ready = ("False", problem.reason, problem.message)
    elif newest is not None and newest.phase in (BuildPhase.FAILED, BuildPhase.TIMED_OUT):
        ready = ("False", "BuildFailed", f"build {newest.id} {newest.phase.value}: {newest.reason}")
    elif newest is not None and newest.phase is BuildPhase.SUCCEEDED:
        ready = ("True", "BuildSucceeded", f"build {newest.id} pushed {','.join(newest.tags)}")
    else:
        ready = ("True", "Ready", "watching for pushes")
    if in_flight:
        reconciling = ("True", "BuildRunning", f"{len(in_flight)} build(s) queued or running")
    else:
        reconciling = ("False", "Idle", "no build is queued or running")
    if problem is not None and problem.stalled:
        stalled = ("True", problem.reason, problem.message)
    else:
        stalled = ("False", "Valid", "the spec can be acted on")
    old = {c.type: c for c in previous}
    result = []
    for kind, (state, reason, message) in (
        ("Ready", ready),
        ("Reconciling", reconciling),
        ("Stalled", stalled),
    ):
        before = old.get(kind)
        changed = before is None or before.status != state
        result.append(
            Condition(
                type=kind,
                status=state,
                reason=reason,
                message=message,
                observed_generation=generation,
                last_transition_time=now
                if changed or before is None
                else before.last_transition_time,
            )
        )
    return result
