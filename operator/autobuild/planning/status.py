"""Pure build tracking: a Job and its Pods as the API returns them -> a build record and reason.

The Jobs are the durable record of every build: status is derived from them on every visit, so
an operator restart loses nothing and an unchanged world yields an unchanged status (no write).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from autobuild.api.conditions import STALLED, ConditionType, Reason
from autobuild.api.models import (
    BuildPhase,
    BuildRecord,
    Condition,
    LatestBuild,
    SourceType,
    Trigger,
)
from autobuild.planning.failures import classify_log, with_exit_code
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
# The Warning Event of a build that finished without success, named after its phase.
_FAILED_EVENTS: Final = {
    BuildPhase.FAILED: Reason.BUILD_FAILED,
    BuildPhase.CANCELLED: Reason.BUILD_CANCELLED,
    BuildPhase.TIMED_OUT: Reason.BUILD_TIMED_OUT,
}
_PULL_ERRORS: Final = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError"}
)

Obj = Mapping[str, Any]


def cancel_patch(now: datetime) -> dict[str, Any]:
    """The Job patch that cancels a build: suspending stops its Pod, the annotation records when."""
    moment = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"metadata": {"annotations": {ANNOTATION_CANCELLED: moment}}, "spec": {"suspend": True}}


def is_finished(phase: BuildPhase) -> bool:
    """True for Succeeded, Failed, Cancelled and TimedOut."""
    return phase in _FINISHED


def is_failed(phase: BuildPhase) -> bool:
    """True for Failed, Cancelled and TimedOut."""
    return phase in _FAILED


def failed_event_reason(phase: BuildPhase) -> Reason:
    """The reason of the Warning Event of a build that finished in ``phase`` (Failed, Cancelled
    or TimedOut): ``BuildFailed``, ``BuildCancelled``, ``BuildTimedOut``."""
    return _FAILED_EVENTS[phase]


def parse_time(value: Any) -> datetime | None:
    """An API timestamp (RFC 3339 text) as a datetime; None when absent."""
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


def _newest_pod(pods: Sequence[Obj]) -> Obj | None:
    return max(
        pods, key=lambda p: str(p.get("metadata", {}).get("creationTimestamp", "")), default=None
    )


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


# How long a released build may have no Pod before status says why (quota, Pod Security...).
POD_CREATE_GRACE: Final = timedelta(seconds=30)


def classify_failure(terminated: Obj) -> tuple[str, str]:
    """A failed Kaniko container's state -> (reason, short message without any log text).
    ``Error`` when its termination message (the log's tail) names no known failure."""
    exit_code = terminated.get("exitCode")
    if terminated.get("reason") == "OOMKilled":
        return (
            Reason.OOM_KILLED,
            f"the build ran out of memory (exit code {exit_code}): raise AUTOBUILD_MEMORY_LIMIT",
        )
    found = classify_log(str(terminated.get("message") or ""))
    if found is not None:
        return with_exit_code(found, exit_code)
    return Reason.ERROR, f"the build failed with exit code {exit_code}"


def _failure(job: Obj, pods: Sequence[Obj]) -> Observation:
    failed = _condition(job, "Failed") or {}
    finished = parse_time(failed.get("lastTransitionTime"))
    start = parse_time((job.get("status") or {}).get("startTime"))
    if failed.get("reason") == "DeadlineExceeded":
        message = "the build ran longer than spec.timeout"
        return Observation(
            BuildPhase.TIMED_OUT, start, finished, None, Reason.DEADLINE_EXCEEDED, message
        )
    terminated = _kaniko_state(pods).get("terminated")
    if terminated:
        reason, message = classify_failure(terminated)
        return Observation(BuildPhase.FAILED, start, finished, None, reason, message)
    reason = failed.get("reason") or Reason.BUILD_FAILED
    return Observation(
        BuildPhase.FAILED, start, finished, None, reason, "the build Job failed without a Pod"
    )


def _not_running_yet(job: Obj, pods: Sequence[Obj], now: datetime | None) -> tuple[str, str] | None:
    """Why a released build has not started, if Kubernetes says so (or has said nothing for
    too long): an image that cannot be pulled, no node, or no Pod at all."""
    waiting = _kaniko_state(pods).get("waiting") or {}
    if waiting.get("reason") in _PULL_ERRORS:
        return Reason.IMAGE_PULL_FAILED, f"{waiting['reason']}: {waiting.get('message') or ''}"
    pod = _newest_pod(pods)
    if pod is not None:
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable":
                return Reason.UNSCHEDULABLE, str(cond.get("message") or "no node can run it")
        return None
    since = parse_time((job.get("status") or {}).get("startTime")) or parse_time(
        (job.get("metadata") or {}).get("creationTimestamp")
    )
    if now is not None and since is not None and now - since >= POD_CREATE_GRACE:
        namespace = (job.get("metadata") or {}).get("namespace", "")
        return (
            Reason.POD_NOT_CREATED,
            f"no Pod was created for this build: check ResourceQuota, LimitRange and Pod"
            f" Security admission of namespace {namespace} (kubectl describe job"
            f" {(job.get('metadata') or {}).get('name', '')})",
        )
    return None


def observe(job: Obj, pods: Sequence[Obj], now: datetime | None = None) -> Observation:
    """Derive a build's phase, times, digest and failure reason from its Job and Pods."""
    meta = job.get("metadata") or {}
    status = job.get("status") or {}
    start = parse_time(status.get("startTime"))
    if (meta.get("annotations") or {}).get(ANNOTATION_CANCELLED):
        cancelled_at = parse_time(meta["annotations"][ANNOTATION_CANCELLED])
        return Observation(
            BuildPhase.CANCELLED,
            start,
            cancelled_at,
            None,
            Reason.CANCELLED,
            "cancelled on request",
        )
    if _condition(job, "Complete"):
        message = (_kaniko_state(pods).get("terminated") or {}).get("message") or ""
        digest = message.strip() if message.strip().startswith("sha256:") else None
        completed = parse_time(status.get("completionTime"))
        return Observation(BuildPhase.SUCCEEDED, start, completed, digest)
    if _condition(job, "Failed"):
        return _failure(job, pods)
    if (job.get("spec") or {}).get("suspend"):
        return Observation(BuildPhase.QUEUED)
    state = _kaniko_state(pods)
    # Kaniko has ended but the Job controller has not marked the Job yet (a second or two):
    # still Running, never back to Pending.
    if state.get("running") or state.get("terminated"):
        return Observation(BuildPhase.RUNNING, start)
    stuck = _not_running_yet(job, pods, now)
    if stuck is not None:
        return Observation(BuildPhase.PENDING, start, None, None, stuck[0], stuck[1])
    return Observation(BuildPhase.PENDING, start)


def build_record(job: Obj, pods: Sequence[Obj], now: datetime | None = None) -> BuildRecord:
    """The status entry of the build that ``job`` runs."""
    meta = job.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    ref = annotations.get(ANNOTATION_SOURCE_REF, "")
    source_type = SourceType.TAG if ref.startswith("refs/tags/") else SourceType.BRANCH
    seen = observe(job, pods, now)
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

    reason: Reason
    message: str

    @property
    def stalled(self) -> bool:
        """True when only a change of the spec or of a Secret can fix it (kstatus: Failed)."""
        return self.reason in STALLED


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
        ready = (
            "False",
            Reason.BUILD_FAILED,
            f"build {newest.id} {newest.phase.value}: {newest.reason}",
        )
    elif newest is not None and newest.phase is BuildPhase.SUCCEEDED:
        ready = (
            "True",
            Reason.BUILD_SUCCEEDED,
            f"build {newest.id} pushed {','.join(newest.tags)}",
        )
    else:
        ready = ("True", Reason.READY, "watching for pushes")
    if in_flight:
        reconciling = ("True", Reason.BUILD_RUNNING, f"{len(in_flight)} build(s) queued or running")
    else:
        reconciling = ("False", Reason.IDLE, "no build is queued or running")
    if problem is not None and problem.stalled:
        stalled = ("True", problem.reason, problem.message)
    else:
        stalled = ("False", Reason.VALID, "the spec can be acted on")
    return [
        condition(kind, state, reason, message, generation, previous, now)
        for kind, (state, reason, message) in (
            (ConditionType.READY, ready),
            (ConditionType.RECONCILING, reconciling),
            (ConditionType.STALLED, stalled),
        )
    ]


def condition(
    kind: str,
    state: str,
    reason: str,
    message: str,
    generation: int,
    previous: Sequence[Condition],
    now: datetime,
) -> Condition:
    """One condition; its lastTransitionTime moves only when its status changes."""
    before = next((c for c in previous if c.type == kind), None)
    changed = before is None or before.status != state
    return Condition(
        type=kind,
        status=state,
        reason=str(reason),
        message=message,
        observed_generation=generation,
        last_transition_time=now if changed or before is None else before.last_transition_time,
    )
