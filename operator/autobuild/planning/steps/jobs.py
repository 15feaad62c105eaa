"""Jobs: the Kaniko Jobs of the object. :func:`plan` renders the planned builds that have no
Job yet (queued: suspended); :func:`queue` applies spec.runPolicy per (rule, ref) queue,
releases or cancels Jobs, and looks again when a released build without a Pod reaches its
grace period. Build records are read from the Jobs and their Pods."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final

from autobuild.api.models import BuildPhase, BuildRecord, RunPolicy
from autobuild.planning import replay
from autobuild.planning import status as tracking
from autobuild.planning.job import ANNOTATION_SOURCE_REF, LABEL_RULE, render_job
from autobuild.planning.planner import PlannedBuild
from autobuild.planning.snapshot import JobWrite, Obj
from autobuild.planning.steps.access import Access
from autobuild.planning.steps.base import Contribution, World, sooner

# The build records (refined by the failure-log, digest and commit-status steps, which own
# the record fields named in their OWNS) and the newest of them.
OWNS: Final = frozenset({"builds", "latestBuild"})


@dataclass(frozen=True)
class Job:
    """A Job of this decision: one that exists, or one about to be created."""

    body: dict[str, Any]
    record: BuildRecord
    new: bool = False

    @property
    def name(self) -> str:
        """The Job's name."""
        return str(self.body["metadata"]["name"])

    @property
    def group(self) -> tuple[str, str]:
        """Its runPolicy queue: (rule, source ref)."""
        meta = self.body["metadata"]
        return (
            meta["labels"].get(LABEL_RULE, ""),
            meta["annotations"].get(ANNOTATION_SOURCE_REF, ""),
        )

    def write(self) -> JobWrite:
        """A write to it, conditional on the version seen."""
        meta = self.body["metadata"]
        return JobWrite(meta["name"], meta.get("uid", ""), meta.get("resourceVersion", ""))


@dataclass(kw_only=True)
class Jobs(Contribution):
    """The live Jobs (oldest first), the new ones to create, and the Pods by Job name."""

    existing: tuple[Job, ...] = ()
    new: tuple[Job, ...] = ()
    pods: Mapping[str, Sequence[Obj]] = field(default_factory=dict)


@dataclass(kw_only=True)
class Queue(Contribution):
    """The Jobs after runPolicy (oldest first, the new ones included), and its writes."""

    jobs: tuple[Job, ...] = ()
    release: tuple[Job, ...] = ()
    cancel: tuple[Job, ...] = ()


def plan(world: World, access: Access, builds: Sequence[PlannedBuild]) -> Jobs:
    """The live Jobs and Pods, and the Jobs to render for ``builds`` that have none yet."""
    snapshot = world.snapshot
    pods: dict[str, list[Obj]] = defaultdict(list)
    for pod in snapshot.pods:
        pods[(pod["metadata"].get("labels") or {}).get("job-name", "")].append(pod)
    live = [j for j in snapshot.jobs if not (j.get("metadata") or {}).get("deletionTimestamp")]
    existing = tuple(
        Job(
            dict(job),
            tracking.build_record(job, pods.get(job["metadata"]["name"], ()), snapshot.now),
        )
        for job in sorted(live, key=tracking.creation_key)
    )
    new = _new_jobs(world, access, builds, existing) if access.automated_build else ()
    return Jobs(existing=existing, new=new, pods=pods)


def _new_jobs(
    world: World, access: Access, builds: Sequence[PlannedBuild], existing: Sequence[Job]
) -> tuple[Job, ...]:
    """Render planned builds that have no Job yet; queued (suspended) until runPolicy says."""
    automated_build = access.automated_build
    assert automated_build is not None
    snapshot = world.snapshot
    names = {j.record.job_name for j in existing}
    secret_name = automated_build.spec.source.credentials_secret
    secret = snapshot.secrets.get(secret_name) if secret_name else None
    keys = frozenset(secret.data) if secret is not None else frozenset()
    new = []
    for build in builds:
        body = render_job(automated_build, build, world.settings, secret_keys=keys)
        name = body["metadata"]["name"]
        if name in names:
            continue
        names.add(name)
        annotations = body["metadata"]["annotations"]
        annotations[tracking.ANNOTATION_REQUESTED] = snapshot.now.isoformat()
        if build.event.commit_time is not None:
            annotations[replay.ANNOTATION_COMMIT_TIME] = build.event.commit_time.isoformat()
        body["spec"]["suspend"] = True
        new.append(Job(body, tracking.build_record(body, (), snapshot.now), new=True))
    return tuple(new)


def queue(world: World, access: Access, jobs: Jobs, created: bool) -> Queue:
    """runPolicy over the live Jobs and the new ones (none unless they may be ``created``)."""
    automated_build = access.automated_build
    policy = automated_build.spec.run_policy if automated_build else RunPolicy.SERIAL
    now = world.snapshot.now
    every = [*jobs.existing, *(jobs.new if created else ())]
    release, cancel, dropped = _run_policy(policy, every, jobs.pods, now)
    after = tuple(every)
    if release or cancel or dropped:
        changed = {j.name: j for j in (*release, *cancel)}
        gone = {j.name for j in dropped}
        after = tuple(changed.get(j.name, j) for j in every if j.name not in gone)
    grace = sooner(*(_pod_grace(j, now) for j in after))
    return Queue(jobs=after, release=release, cancel=cancel, requeue_after=grace)


def _simulate(job: Job, patch: Mapping[str, Any], pods: Sequence[Obj], now: datetime) -> Job:
    """The decision's copy of a Job with a merge patch applied, so status shows its effect."""
    meta = dict(job.body["metadata"])
    meta["annotations"] = {
        **meta.get("annotations", {}),
        **patch.get("metadata", {}).get("annotations", {}),
    }
    body = {**job.body, "metadata": meta, "spec": {**job.body.get("spec", {}), **patch["spec"]}}
    return replace(job, body=body, record=tracking.build_record(body, pods, now))


def _run_policy(
    policy: RunPolicy,
    jobs: Sequence[Job],
    pods: Mapping[str, Sequence[Obj]],
    now: datetime,
) -> tuple[tuple[Job, ...], tuple[Job, ...], tuple[Job, ...]]:
    """Which Jobs to release, cancel, and which new ones not to create (superseded), per
    (rule, ref) queue: a newer commit of a ref never cancels another rule's or ref's build.
    The released and cancelled come back as they will be after the patch."""
    release: list[Job] = []
    cancel: list[Job] = []
    dropped: list[Job] = []
    groups: dict[tuple[str, str], list[Job]] = defaultdict(list)
    for job in jobs:
        groups[job.group].append(job)
    for group in groups.values():
        active = any(
            j.record.phase in (BuildPhase.PENDING, BuildPhase.RUNNING) and not j.new for j in group
        )
        queued = [j for j in group if j.new or j.record.phase is BuildPhase.QUEUED]
        if policy is RunPolicy.SERIAL_LATEST_ONLY and len(queued) > 1:
            for older in queued[:-1]:
                (dropped if older.new else cancel).append(older)
            queued = queued[-1:]
        if policy is RunPolicy.PARALLEL:
            release += queued
        elif not active and queued:
            release.append(queued[0])
    released = tuple(_released(job, pods, now) for job in release)
    cancelled = tuple(
        _simulate(job, tracking.cancel_patch(now), pods.get(job.record.job_name, ()), now)
        for job in cancel
    )
    return released, cancelled, tuple(dropped)


def _released(job: Job, pods: Mapping[str, Sequence[Obj]], now: datetime) -> Job:
    if not job.new:
        return _simulate(job, {"spec": {"suspend": False}}, pods.get(job.record.job_name, ()), now)
    body = {**job.body, "spec": {**job.body["spec"], "suspend": False}}
    return replace(job, body=body, record=tracking.build_record(body, (), now))


def _pod_grace(job: Job, now: datetime) -> float | None:
    """When to look again: a released build without a Pod reaches its grace period."""
    record = job.record
    if record.phase is not BuildPhase.PENDING or record.reason or job.new:
        return None
    since = record.start_time or tracking.parse_time(job.body["metadata"].get("creationTimestamp"))
    if since is None:
        return None
    left = (since + tracking.POD_CREATE_GRACE - now).total_seconds()
    return left + 1 if left > 0 else None


__all__ = ["OWNS", "Job", "Jobs", "Queue", "plan", "queue"]
