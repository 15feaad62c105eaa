"""The decide step: a snapshot of one AutomatedBuild's world -> the writes that bring it in line.

Pure: no I/O, no clock, no randomness. The controller observes (a snapshot from its in-memory
store of watched objects), calls :func:`decide`, and acts (the writes, nothing else). Deciding
again on the world after those writes yields no writes and the same status.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final

from pydantic import ValidationError

from autobuild.api import checks
from autobuild.api.conditions import STALLED, ConditionType, Reason
from autobuild.api.models import (
    AutomatedBuild,
    AutomatedBuildStatus,
    BuildPhase,
    BuildRecord,
    Condition,
    LastTrigger,
    Provider,
    PushRecord,
    RepositoryStatus,
    RunPolicy,
    Trigger,
)
from autobuild.planning import hooks, registry_gate, replay
from autobuild.planning import status as tracking
from autobuild.planning.credentials import (
    git_credentials_problem,
    git_username,
    push_credentials_problem,
)
from autobuild.planning.github import HOOK_SECRET_KEY
from autobuild.planning.job import (
    ANNOTATION_SOURCE_REF,
    LABEL_RULE,
    REGISTRY_CA_KEY,
    build_identity,
    clone_url,
    render_job,
)
from autobuild.planning.planner import (
    PlannedBuild,
    PushEvent,
    buildable_ref,
    check_commit,
    full_ref,
    parse_ref,
    plan_builds,
)
from autobuild.planning.registry_gate import RegistryRequest, RegistryResult
from autobuild.planning.triggers import (
    ANNOTATION_TRIGGER,
    CREATE_ID,
    TriggerRequest,
    parse_requests,
    pending_requests,
)
from autobuild.settings import BuildSettings, GitHubSettings

Obj = Mapping[str, Any]
# How long a failed `git ls-remote` stands before it is tried again.
RETRY_SECONDS: Final = 30.0
# Secret keys that the spec's references need.
_SECRET_KEYS: Final = (
    (("source", "credentialsSecret"), "token"),
    (("source", "webhookSecret"), "secret"),
    (("image", "pushSecret"), ".dockerconfigjson"),
    (("image", "caSecret"), REGISTRY_CA_KEY),
    (("triggerSecret",), "trigger-token"),
)
_REDACTED: Final = "***"
# The receiver's route per provider; plain git hosts (Gitea, Forgejo) send GitHub's format.
WEBHOOK_PATHS: Final = {
    Provider.GITHUB: "/hooks/github",
    Provider.BITBUCKET: "/hooks/bitbucket",
    Provider.GITLAB: "/hooks/gitlab",
}
# Shorter secret values are not redacted: they would mangle ordinary words.
_REDACT_MIN: Final = 4
# Problems after which the repository is asked again whether it answers.
_SOURCE_PROBLEMS: Final = STALLED | {Reason.SOURCE_UNREACHABLE, Reason.SOURCE_TOO_LARGE}


@dataclass(frozen=True)
class SecretView:
    """What the operator keeps of a referenced Secret."""

    type: str
    annotations: Mapping[str, str]
    data: Mapping[str, str] = field(repr=False)
    version: str = ""
    # uids of the AutomatedBuilds that are its controller (ownerReferences): whether the
    # operator created it for one of them (the generated hook secret).
    owners: tuple[str, ...] = ()


@dataclass(frozen=True)
class HeadsRequest:
    """Ask the git host for the repository's heads (``git ls-remote``): the one read of the
    reconcile that is not from watched state."""

    generation: int
    request_id: str
    url: str
    username: str
    password: str | None = field(repr=False)
    credentials_version: str = ""


@dataclass(frozen=True)
class HeadsResult:
    """The answer to a :class:`HeadsRequest`: heads, or why they could not be read."""

    generation: int
    request_id: str
    at: datetime
    heads: Mapping[str, str] | None = None
    problem: tracking.Problem | None = None
    credentials_version: str = ""


@dataclass(frozen=True)
class Snapshot:
    """Everything the decision reads, taken from memory at one moment."""

    body: Obj
    jobs: Sequence[Obj]
    pods: Sequence[Obj]
    secrets: Mapping[str, SecretView | None]
    now: datetime
    heads: HeadsResult | None = None
    pushes: Sequence[PushEvent] = ()
    registry: Mapping[str, RegistryResult] = field(default_factory=dict)
    # What the head of a failed build's log said (job name -> reason and message, or None).
    logs: Mapping[str, tuple[str, str] | None] = field(default_factory=dict)
    # Answers of GitHub calls (webhook, commit statuses) by request id.
    github: Mapping[str, hooks.GitHubResult] = field(default_factory=dict)
    # Pushes queued for the object so far, the pending ones included: pending push i is
    # number push_count - len(pushes) + 1 + i (a head check covers pushes up to a number).
    push_count: int = 0


@dataclass(frozen=True)
class JobWrite:
    """A write to an existing Job, conditional on the version the decision saw."""

    name: str
    uid: str
    resource_version: str


@dataclass(frozen=True)
class LogRead:
    """Read the head of a failed build's log: its tail (the termination message) only had
    Kaniko's usage text in it."""

    job_name: str
    pod_name: str


@dataclass(frozen=True)
class EventNote:
    """A Kubernetes Event to post about the AutomatedBuild."""

    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    """The writes of one reconcile, in the order act performs them (status last)."""

    create: tuple[dict[str, Any], ...] = ()
    release: tuple[JobWrite, ...] = ()
    cancel: tuple[JobWrite, ...] = ()
    delete: tuple[JobWrite, ...] = ()
    status: dict[str, Any] | None = None
    events: tuple[EventNote, ...] = ()
    resolve: HeadsRequest | None = None
    registry: tuple[RegistryRequest, ...] = ()
    read_logs: tuple[LogRead, ...] = ()
    pushes_done: int = 0
    requeue_after: float | None = None
    github: tuple[hooks.GitHubRequest, ...] = ()
    # The new metadata.finalizers (None: unchanged), written before status.
    finalizers: tuple[str, ...] | None = None
    # Create the Secret that keeps a generated webhook secret (its name; act makes the secret).
    hook_secret: str | None = None
    # GitHub answers to drop from memory (by request id).
    github_forget: tuple[str, ...] = ()
    # Events about the pushes this decision takes (refused replays): posted once they are
    # taken, whether or not status changes.
    push_events: tuple[EventNote, ...] = ()

    @property
    def writes(self) -> int:
        """How many API writes acting on it takes (Events included)."""
        jobs = len(self.create) + len(self.release) + len(self.cancel) + len(self.delete)
        others = (self.finalizers is not None) + (self.hook_secret is not None)
        events = len(self.events) + len(self.push_events)
        return jobs + others + (self.status is not None) + events


def previous_status(body: Obj) -> AutomatedBuildStatus:
    """The status as last written (empty if absent or unreadable)."""
    try:
        return AutomatedBuildStatus.model_validate(body.get("status") or {})
    except ValidationError:
        return AutomatedBuildStatus()


def _secret_references(spec: Obj) -> list[tuple[str, str, str]]:
    """(field path, Secret name, key it must have) of each Secret the spec names; from the raw
    spec, so that specs that fail validation are covered too."""
    found = []
    for path, key in _SECRET_KEYS:
        value: Any = spec
        for part in path:
            value = (value or {}).get(part) if isinstance(value, Mapping) else None
        if isinstance(value, str) and value:
            found.append(("spec." + ".".join(path), value, key))
    return found


def referenced_secrets(spec: Obj) -> list[str]:
    """Names of the Secrets a spec refers to."""
    return list(dict.fromkeys(name for _, name, _ in _secret_references(spec)))


def watched_secrets(
    spec: Obj, automated_build: AutomatedBuild | None, github: GitHubSettings
) -> list[str]:
    """The Secrets a reconcile reads: those the spec refers to, and the one the operator
    creates for a generated webhook secret."""
    names = referenced_secrets(spec)
    generated = hooks.generated_secret_name(automated_build, github) if automated_build else None
    return [*names, generated] if generated and generated not in names else names


def _secret_problem(spec: Obj, secrets: Mapping[str, SecretView | None]) -> tracking.Problem | None:
    for where, name, key in _secret_references(spec):
        secret = secrets.get(name)
        if secret is None:
            return tracking.Problem(Reason.SECRET_NOT_FOUND, f"{where}: Secret {name!r} not found")
        if key not in secret.data:
            return tracking.Problem(
                Reason.SECRET_KEY_MISSING, f"{where}: Secret {name!r} has no key {key!r}"
            )
    return None


def git_access(
    automated_build: AutomatedBuild,
    secrets: Mapping[str, SecretView | None],
    settings: BuildSettings,
) -> tuple[tracking.Problem | None, str, str | None]:
    """Whether the linked token may go to the repository's host; the username and password."""
    spec = automated_build.spec
    name = spec.source.credentials_secret
    secret = secrets.get(name) if name else None
    if name is None or secret is None:
        return None, git_username(spec.provider, {}), None
    refused = git_credentials_problem(
        spec.source.repo, name, secret.annotations, settings.insecure_git_hosts
    )
    if refused is not None:
        return tracking.Problem(Reason(refused[0]), refused[1]), "", None
    return None, git_username(spec.provider, secret.data), secret.data.get("token")


def push_access(
    automated_build: AutomatedBuild, secrets: Mapping[str, SecretView | None]
) -> tracking.Problem | None:
    """Whether the push Secret may be used for spec.image's repository (its annotation
    ``autobuild.dev/image-repos``): refused, no Job mounts it and no registry call sends it."""
    image = automated_build.spec.image
    secret = secrets.get(image.push_secret) if image.push_secret else None
    if image.push_secret is None or secret is None:
        return None
    refused = push_credentials_problem((image.repository,), image.push_secret, secret.annotations)
    return None if refused is None else tracking.Problem(Reason(refused[0]), refused[1])


@dataclass(frozen=True)
class _Request:
    """The build request this pass handles: creation, or the next trigger request."""

    id: str
    trigger: Trigger
    refs: tuple[str, ...]
    commit: str | None
    ref: str = ""
    invalid: str | None = None


def _exact_refs(automated_build: AutomatedBuild, creation: bool) -> tuple[str, ...]:
    """The refs of exact-name rules (on creation, only rules that build automatically)."""
    refs = [
        full_ref(rule.source_type, rule.source)
        for rule in automated_build.spec.tags
        if rule.source_regex is None and (rule.autobuild or not creation)
    ]
    return tuple(dict.fromkeys(refs))


def _next_request(
    automated_build: AutomatedBuild, previous: AutomatedBuildStatus
) -> _Request | None:
    """The request to handle now: creation until it has been handled, then trigger requests."""
    requests = parse_requests(automated_build.metadata.annotations.get(ANNOTATION_TRIGGER))
    if previous.last_trigger is None:
        # Docker Hub's "Save and build". Requests already in the annotation count as seen.
        seen = requests[-1].id if requests else CREATE_ID
        return _Request(seen, Trigger.CREATE, _exact_refs(automated_build, True), None)
    pending = pending_requests(requests, previous.last_trigger.id)
    return _manual_request(automated_build, pending[0]) if pending else None


def _manual_request(automated_build: AutomatedBuild, request: TriggerRequest) -> _Request:
    try:
        commit = None if request.commit is None else check_commit(request.commit)
        if request.ref:
            ref = full_ref(*parse_ref(request.ref))
            return _Request(request.id, Trigger.MANUAL, (ref,), commit, ref=ref)
        if commit is not None:
            raise checks.InputError("commit", "a commit needs a ref: say which branch or tag")
    except checks.InputError as exc:
        return _Request(request.id, Trigger.MANUAL, (), None, invalid=str(exc))
    return _Request(request.id, Trigger.MANUAL, _exact_refs(automated_build, False), None)


def source_fingerprint(automated_build: AutomatedBuild) -> str:
    """What decides whether the repository answers: where it is and with which credentials."""
    source = automated_build.spec.source
    return f"{source.repo}|{automated_build.spec.provider}|{source.credentials_secret or ''}"


def _source_needs_check(automated_build: AutomatedBuild, previous: AutomatedBuildStatus) -> bool:
    """After spec.source changed, or while the repository did not answer: the one check the
    CRD cannot make. Other spec changes (rules, image) ask no git host."""
    ready = next((c for c in previous.conditions if c.type == ConditionType.READY), None)
    had_problem = ready is not None and ready.reason in _SOURCE_PROBLEMS
    return previous.observed_source != source_fingerprint(automated_build) or had_problem


def _retry_in(result: HeadsResult, now: datetime) -> float:
    """Seconds until a failed answer is stale (0: it is)."""
    return max(0.0, RETRY_SECONDS - (now - result.at).total_seconds())


def _fresh(result: HeadsResult | None, want: tuple[int, str, str], now: datetime) -> bool:
    """An answer for this generation, request and linked-token version (a changed token is
    tried at once); a failure stands for RETRY_SECONDS."""
    if result is None:
        return False
    if (result.generation, result.request_id, result.credentials_version) != want:
        return False
    return result.problem is None or _retry_in(result, now) > 0


@dataclass
class _Pass:
    """What one decision accumulates before it is frozen into a :class:`Decision`."""

    builds: list[PlannedBuild] = field(default_factory=list)
    events: list[EventNote] = field(default_factory=list)
    problem: tracking.Problem | None = None
    last_trigger: LastTrigger | None = None
    resolve: HeadsRequest | None = None
    requeue_after: float | None = None
    source_answered: bool = False

    def requeue(self, seconds: float) -> None:
        """Look again after ``seconds`` at the latest."""
        self.requeue_after = (
            seconds if self.requeue_after is None else min(self.requeue_after, seconds)
        )


def _handle_request(
    automated_build: AutomatedBuild,
    snapshot: Snapshot,
    request: _Request,
    heads: Mapping[str, str] | None,
    work: _Pass,
) -> None:
    """Plan the builds of a request, and record how it was handled."""
    spec = automated_build.spec
    builds: list[PlannedBuild] = []
    missing = []
    for ref in request.refs:
        commit = request.commit or (heads or {}).get(ref)
        if commit is None:
            if buildable_ref(spec, ref):  # the heads hold only refs that a rule builds
                missing.append(ref)
            continue
        event = PushEvent.parse(ref, commit, "", request.trigger, request.id)
        planned = plan_builds(spec, event).builds
        builds += [b for b in planned if b.rule.autobuild or request.trigger is not Trigger.CREATE]
    if request.invalid is not None:
        reason, message = Reason.INVALID_TRIGGER, request.invalid
    elif builds:
        reason, message = Reason.TRIGGERED, f"{len(builds)} build(s) of {', '.join(request.refs)}"
    elif not request.refs:
        reason = Reason.NOTHING_TO_BUILD
        message = "every rule is a regex: say which branch or tag to build (--ref)"
    else:
        reason = Reason.NOTHING_TO_BUILD
        message = (
            f"no head in the repository for {', '.join(missing)}"
            if missing
            else (f"no rule builds {', '.join(request.refs)}")
        )
    work.builds += builds
    ids = [build_identity(automated_build, b).build_id for b in builds]
    work.last_trigger = LastTrigger(
        id=request.id,
        time=snapshot.now,
        ref=request.ref,
        commit=request.commit or "",
        builds=ids,
        reason=reason,
        message=message,
    )
    if reason is not Reason.TRIGGERED:
        work.events.append(EventNote("Warning", reason, f"trigger {request.id}: {message}"))
    elif request.trigger is Trigger.MANUAL:
        work.events.append(EventNote("Normal", reason, f"trigger {request.id}: {message}"))


def _plan_requests(
    automated_build: AutomatedBuild,
    snapshot: Snapshot,
    previous: AutomatedBuildStatus,
    credentials: tuple[str, str | None],
    work: _Pass,
) -> None:
    """Creation, trigger requests and the source check: the parts that may need the heads.
    A request that needs no heads (a commit given, or nothing to resolve) never waits for the
    git host."""
    generation = automated_build.metadata.generation
    request = _next_request(automated_build, previous)
    if request is not None and (request.invalid or not request.refs or request.commit):
        _handle_request(automated_build, snapshot, request, None, work)
        request = None
    if request is None and not _source_needs_check(automated_build, previous):
        return
    request_id = request.id if request is not None else ""
    version = _credentials_version(automated_build, snapshot)
    if not _fresh(snapshot.heads, (generation, request_id, version), snapshot.now):
        username, password = credentials
        url = clone_url(automated_build.spec)
        work.resolve = HeadsRequest(generation, request_id, url, username, password, version)
        return
    assert snapshot.heads is not None
    if snapshot.heads.problem is not None:
        work.problem = snapshot.heads.problem
        work.requeue(_retry_in(snapshot.heads, snapshot.now) + 0.5)
        return
    work.source_answered = True
    if request is not None:
        _handle_request(automated_build, snapshot, request, snapshot.heads.heads, work)


def _push_heads(automated_build: AutomatedBuild, snapshot: Snapshot) -> replay.HeadsSeen | None:
    """The heads a push check asked for, if they are the answer for this generation and
    linked-token version."""
    result = snapshot.heads
    if result is None:
        return None
    covers = replay.covered(result.request_id)
    want = (automated_build.metadata.generation, _credentials_version(automated_build, snapshot))
    if covers is None or (result.generation, result.credentials_version) != want:
        return None
    problem = result.problem.message if result.problem is not None else None
    return replay.HeadsSeen(covers, result.heads, problem)


def _credentials_version(automated_build: AutomatedBuild, snapshot: Snapshot) -> str:
    name = automated_build.spec.source.credentials_secret
    view = snapshot.secrets.get(name) if name else None
    return view.version if view is not None else ""


@dataclass
class _Job:
    """A Job of this decision: one that exists, or one about to be created."""

    body: dict[str, Any]
    record: BuildRecord
    new: bool = False

    @property
    def group(self) -> tuple[str, str]:
        meta = self.body["metadata"]
        return (
            meta["labels"].get(LABEL_RULE, ""),
            meta["annotations"].get(ANNOTATION_SOURCE_REF, ""),
        )


def _simulate(job: _Job, patch: Mapping[str, Any], pods: Sequence[Obj], now: datetime) -> None:
    """Apply a merge patch to the decision's copy of a Job, so status shows its effect."""
    meta = dict(job.body["metadata"])
    annotations = {
        **meta.get("annotations", {}),
        **patch.get("metadata", {}).get("annotations", {}),
    }
    meta["annotations"] = annotations
    job.body = {**job.body, "metadata": meta, "spec": {**job.body.get("spec", {}), **patch["spec"]}}
    job.record = tracking.build_record(job.body, pods, now)


def _run_policy(
    policy: RunPolicy,
    jobs: list[_Job],
    pods: Mapping[str, Sequence[Obj]],
    now: datetime,
) -> tuple[list[_Job], list[_Job], list[_Job]]:
    """Which Jobs to release, cancel, and which new ones not to create (superseded), per
    (rule, ref) queue: a newer commit of a ref never cancels another rule's or ref's build."""
    release: list[_Job] = []
    cancel: list[_Job] = []
    dropped: list[_Job] = []
    groups: dict[tuple[str, str], list[_Job]] = defaultdict(list)
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
    for job in release:
        if job.new:
            job.body["spec"]["suspend"] = False
            job.record = tracking.build_record(job.body, (), now)
        else:
            _simulate(job, {"spec": {"suspend": False}}, pods.get(job.record.job_name, ()), now)
    for job in cancel:
        _simulate(job, tracking.cancel_patch(now), pods.get(job.record.job_name, ()), now)
    return release, cancel, dropped


def _history(jobs: list[_Job], limit_ok: int, limit_bad: int, keep: set[str]) -> list[_Job]:
    """Finished builds past historyLimit, oldest first; the newest build is always kept."""
    done_ok = [j for j in jobs if not j.new and j.record.phase is BuildPhase.SUCCEEDED]
    done_bad = [
        j
        for j in jobs
        if not j.new and tracking.is_failed(j.record.phase) and j.record.job_name not in keep
    ]
    delete = done_ok[: max(0, len(done_ok) - limit_ok)]
    delete += done_bad[: max(0, len(done_bad) - limit_bad)]
    newest = jobs[-1].record.job_name if jobs else None
    return [j for j in delete if j.record.job_name != newest]


def _write(job: _Job) -> JobWrite:
    meta = job.body["metadata"]
    return JobWrite(meta["name"], meta.get("uid", ""), meta.get("resourceVersion", ""))


def _transitions(before: Sequence[BuildRecord], after: Sequence[BuildRecord]) -> list[EventNote]:
    old = {b.id: b.phase for b in before}
    notes = []
    for build in after:
        if old.get(build.id) == build.phase:
            continue
        what = (
            f"build {build.id} of {build.source_ref}@{build.commit[:7]} -> {','.join(build.tags)}"
        )
        if build.phase is BuildPhase.RUNNING:
            notes.append(EventNote("Normal", Reason.BUILD_STARTED, what))
        elif build.phase is BuildPhase.SUCCEEDED:
            notes.append(
                EventNote("Normal", Reason.BUILD_SUCCEEDED, f"{what}: {build.digest or ''}")
            )
        elif tracking.is_finished(build.phase):
            detail = f"{build.reason}: {build.message}" if build.message else str(build.reason)
            notes.append(
                EventNote("Warning", tracking.failed_event_reason(build.phase), f"{what}: {detail}")
            )
    return notes


def _condition_changed(previous: Sequence[Condition], problem: tracking.Problem) -> bool:
    ready = next((c for c in previous if c.type == ConditionType.READY), None)
    return ready is None or ready.reason != problem.reason or ready.message != problem.message


def redact(value: Any, secrets: Sequence[str]) -> Any:
    """``value`` (text, or JSON-like data) with every secret value replaced by ``***``."""
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, _REDACTED)
        return value
    if isinstance(value, dict):
        return {key: redact(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item, secrets) for item in value]
    return value


def _secret_values(secrets: Mapping[str, SecretView | None]) -> list[str]:
    values = {
        text.strip()
        for view in secrets.values()
        if view is not None
        for text in view.data.values()
        if len(text.strip()) >= _REDACT_MIN
    }
    return sorted(values, key=len, reverse=True)  # longest first: no partial leftovers


def decide(
    snapshot: Snapshot, settings: BuildSettings, github: GitHubSettings | None = None
) -> Decision:
    """Bring one AutomatedBuild's Jobs, status and GitHub webhook in line with its spec, its
    pending build requests and the state of its Jobs and Pods."""
    github = github or GitHubSettings()
    previous = previous_status(snapshot.body)
    work = _Pass()
    automated_build: AutomatedBuild | None = None
    username = ""
    password: str | None = None
    credentials_known = False
    push_refused: tracking.Problem | None = None
    try:
        automated_build = AutomatedBuild.model_validate(snapshot.body)
    except ValidationError as exc:
        message = "; ".join(checks.describe_validation_error(exc))
        work.problem = tracking.Problem(Reason.INVALID_SPEC, message)
    pushes_done = 0
    screened = replay.Screened((), 0)
    push_resolve: HeadsRequest | None = None
    if automated_build is not None:
        work.problem = _secret_problem(snapshot.body.get("spec") or {}, snapshot.secrets)
        if work.problem is None:
            # Never a Job or an ls-remote with a token its Secret does not allow for the host.
            work.problem, username, password = git_access(
                automated_build, snapshot.secrets, settings
            )
        # Whether the linked token's state is known now (Secrets there, host allowed).
        credentials_known = work.problem is None
        # Never a Job, nor a registry call, with a push Secret bound to other repositories.
        push_refused = push_access(automated_build, snapshot.secrets)
        if work.problem is None:
            work.problem = push_refused
        if work.problem is None:
            _plan_requests(automated_build, snapshot, previous, (username, password), work)
        if work.problem is None or not work.problem.stalled:
            # Replays of webhook pushes build nothing; some pushes wait for the heads.
            screened = replay.screen(
                snapshot.pushes,
                previous.pushes,
                snapshot.push_count - len(snapshot.pushes) + 1,
                _push_heads(automated_build, snapshot),
                snapshot.now,
            )
            for event in screened.accepted:
                work.builds += plan_builds(automated_build.spec, event).builds
            pushes_done = screened.done
            if screened.ask_heads is not None:
                push_resolve = HeadsRequest(
                    automated_build.metadata.generation,
                    replay.heads_request_id(screened.ask_heads),
                    clone_url(automated_build.spec),
                    username,
                    password,
                    _credentials_version(automated_build, snapshot),
                )
    jobs, pods_by_job = _current_jobs(snapshot)
    checks_to_run: list[RegistryRequest] = []
    hold_status = work.resolve is not None
    if automated_build is not None:
        new = _new_jobs(automated_build, work.builds, jobs, snapshot, settings)
        if new and not _may_create(automated_build, snapshot, work, checks_to_run):
            new, pushes_done, hold_status = [], 0, hold_status or bool(checks_to_run)
        jobs += new
    policy = automated_build.spec.run_policy if automated_build else RunPolicy.SERIAL
    release, cancel, dropped = _run_policy(policy, jobs, pods_by_job, snapshot.now)
    jobs = [j for j in jobs if j not in dropped]
    pushes = previous.pushes
    if automated_build is not None:
        handled = screened.accepted if pushes_done else ()
        pushes = replay.updated(previous.pushes, [j.body for j in jobs], handled, snapshot.now)
    delete: list[_Job] = []
    if automated_build is not None:
        limit = automated_build.spec.history_limit
        cancelled = {j.record.job_name for j in cancel}
        delete = _history(jobs, limit.succeeded, limit.failed, cancelled)
    kept = [j for j in jobs if j not in delete]
    for job in kept:
        _pod_grace(job, snapshot.now, work)
    records, log_reads = _failure_logs(
        [j.record for j in reversed(kept)],  # newest first
        {b.id: b for b in previous.builds},
        pods_by_job,
        snapshot.logs,
    )
    records, verify, mismatches = registry_gate.digest_checks(
        records, {b.id: b for b in previous.builds}, snapshot.registry
    )
    if push_refused is not None:
        verify = []  # the checks would send the push Secret's credentials
    checks_to_run += verify
    # A build is reported Succeeded once its digests are checked (one status write, not two).
    hold_status = hold_status or bool(verify)
    work.events += [EventNote("Warning", reason, message) for reason, message in mismatches]
    repository = previous.repository
    if automated_build is not None and push_refused is None:
        outcome = registry_gate.repository_settings(
            registry_gate.image_fingerprint(automated_build, _push_secret_version(snapshot)),
            previous.repository,
            snapshot.registry,
            snapshot.now,
        )
        repository = outcome.repository or repository
        checks_to_run += [outcome.request] if outcome.request else []
        if outcome.requeue_after is not None:
            work.requeue(outcome.requeue_after)
    # password: the linked token, only when its Secret allows the repository's host; it goes
    # to GitHub's API only for a repository on the GitHub that API serves.
    calls: list[hooks.GitHubRequest] = []
    on_github = None
    if automated_build is not None and password:
        on_github = hooks.github_repository(automated_build, github)
    token = password if on_github is not None else None
    if automated_build is not None:
        records, calls, notes, wait = hooks.commit_statuses(
            automated_build,
            on_github,
            token,
            records,
            {b.id: b for b in previous.builds},
            snapshot.github,
            snapshot.now,
            github.build_url_template,
        )
        work.events += [EventNote(n.type, n.reason, n.message) for n in notes]
        if wait is not None:
            work.requeue(wait)
    if hooks.involved(github, previous.webhook, snapshot.body["metadata"].get("finalizers")):
        world = _hook_world(snapshot, automated_build, previous, token, credentials_known, github)
        hook = hooks.webhook(world, github)
    else:
        hook = hooks.HookOutcome(None)
    calls += hook.requests
    work.events += [EventNote(n.type, n.reason, n.message) for n in hook.notes]
    if hook.requeue_after is not None:
        work.requeue(hook.requeue_after)
    status = None
    events = list(work.events)
    if not hold_status:
        status, status_events = _status(
            snapshot, automated_build, previous, records, repository, hook, work, pushes
        )
        events += status_events
    secrets = _secret_values(snapshot.secrets)
    refused = screened.note() if pushes_done else None
    push_events = (EventNote("Warning", Reason.STALE_PUSH, refused),) if refused else ()
    return Decision(
        create=tuple(j.body for j in kept if j.new),
        release=tuple(_write(j) for j in release if not j.new),
        cancel=tuple(_write(j) for j in cancel),
        delete=tuple(_write(j) for j in delete),
        status=redact(status, secrets),
        events=tuple(replace(e, message=redact(e.message, secrets)) for e in events),
        resolve=work.resolve or push_resolve,
        registry=tuple(checks_to_run),
        read_logs=tuple(log_reads),
        pushes_done=pushes_done,
        requeue_after=work.requeue_after,
        github=tuple(calls),
        finalizers=hook.finalizers,
        hook_secret=hook.create_secret,
        github_forget=tuple(hook.forget),
        push_events=tuple(replace(e, message=redact(e.message, secrets)) for e in push_events),
    )


def _hook_world(
    snapshot: Snapshot,
    automated_build: AutomatedBuild | None,
    previous: AutomatedBuildStatus,
    token: str | None,
    credentials_known: bool,
    github: GitHubSettings,
) -> hooks.HookWorld:
    """What the webhook decision reads, from the snapshot (``token``: the linked token when it
    may go to GitHub's API for this repository, else None)."""
    meta = snapshot.body["metadata"]
    secret_name: str | None = None
    if automated_build is not None:
        secret_name = automated_build.spec.source.webhook_secret or (
            hooks.generated_secret_name(automated_build, github)
        )
    view = snapshot.secrets.get(secret_name) if secret_name else None
    # Byte for byte as the receiver verifies with it; only an empty value is refused.
    value = (view.data.get(HOOK_SECRET_KEY) or "") if view is not None else ""
    invalid = None
    if view is not None and not value.strip():
        invalid = f"Secret {secret_name!r} has no value under the key {HOOK_SECRET_KEY!r}"
    not_owned = None
    if automated_build is not None and not hooks.hook_secret_owned(automated_build, view, github):
        # Someone made the generated Secret's name before the operator did: its value is
        # theirs, so a hook signed with it would accept their deliveries. Never adopt it.
        value, not_owned = (
            "",
            (
                f"Secret {secret_name!r} exists but was not created by autobuild for this "
                "AutomatedBuild (no controller ownerReference to it): its value is not used. "
                "Delete it to let the operator create its own, or name a Secret of yours in "
                "spec.source.webhookSecret"
            ),
        )
    return hooks.HookWorld(
        automated_build=automated_build,
        previous=previous,
        finalizers=tuple(meta.get("finalizers") or ()),
        deleting_since=tracking.parse_time(meta.get("deletionTimestamp")),
        token=token,
        token_version=_credentials_version(automated_build, snapshot) if automated_build else "",
        secret=value or None,
        secret_version=view.version if view is not None else "",
        results=snapshot.github,
        now=snapshot.now,
        known=credentials_known,
        secret_invalid=invalid,
        secret_not_owned=not_owned,
    )


def _failure_logs(
    records: Sequence[BuildRecord],
    previous: Mapping[str, BuildRecord],
    pods_by_job: Mapping[str, Sequence[Obj]],
    logs: Mapping[str, tuple[str, str] | None],
) -> tuple[list[BuildRecord], list[LogRead]]:
    """Failed builds whose log tail named no known failure: classify the head of the log
    (once; the answer is kept in status)."""
    out: list[BuildRecord] = []
    reads: list[LogRead] = []
    for record in records:
        if record.phase is not BuildPhase.FAILED or record.reason != Reason.ERROR:
            out.append(record)
            continue
        before = previous.get(record.id)
        if before is not None and before.reason not in (None, Reason.ERROR):
            carried = {"reason": before.reason, "message": before.message}
            out.append(record.model_copy(update=carried))
        elif record.job_name in logs:
            found = logs[record.job_name]
            if found is None:
                out.append(record)
            else:
                update = {"reason": found[0], "message": f"{found[1]}; {record.message}"}
                out.append(record.model_copy(update=update))
        else:
            pods = sorted(
                pods_by_job.get(record.job_name, ()),
                key=lambda p: str(p["metadata"].get("creationTimestamp", "")),
            )
            if pods:
                reads.append(LogRead(record.job_name, str(pods[-1]["metadata"]["name"])))
            out.append(record)
    return out, reads


def _push_secret_version(snapshot: Snapshot) -> str:
    """The versions of the Secrets the registry checks use (push credentials, CA bundle): a
    new version of either asks the registry again."""
    image = (snapshot.body.get("spec") or {}).get("image") or {}
    versions = []
    for field_name in ("pushSecret", "caSecret"):
        name = image.get(field_name)
        view = snapshot.secrets.get(name) if name else None
        versions.append(view.version if view is not None else "")
    # Without a caSecret the version is the push Secret's alone, as before.
    return versions[0] if not versions[1] else "/".join(versions)


def _may_create(
    automated_build: AutomatedBuild,
    snapshot: Snapshot,
    work: _Pass,
    checks_to_run: list[RegistryRequest],
) -> bool:
    """The push preflight: no Kaniko Job before the push Secret is known to be able to push.
    When it cannot, the builds wait (their pushes and trigger stay pending)."""
    if work.problem is not None and work.problem.stalled:
        return False
    gate = registry_gate.push_preflight(
        automated_build, _push_secret_version(snapshot), snapshot.registry, snapshot.now
    )
    if gate.proceed:
        return True
    work.last_trigger = None
    work.events = []
    if gate.request is not None:
        checks_to_run.append(gate.request)
    if gate.refusal is not None:
        work.problem = tracking.Problem(Reason(gate.refusal[0]), gate.refusal[1])
    if gate.requeue_after is not None:
        work.requeue(gate.requeue_after)
    return False


def _current_jobs(snapshot: Snapshot) -> tuple[list[_Job], dict[str, list[Obj]]]:
    pods_by_job: dict[str, list[Obj]] = defaultdict(list)
    for pod in snapshot.pods:
        pods_by_job[(pod["metadata"].get("labels") or {}).get("job-name", "")].append(pod)
    live = [j for j in snapshot.jobs if not (j.get("metadata") or {}).get("deletionTimestamp")]
    jobs = [
        _Job(
            dict(job),
            tracking.build_record(job, pods_by_job.get(job["metadata"]["name"], ()), snapshot.now),
        )
        for job in sorted(live, key=tracking.creation_key)
    ]
    return jobs, pods_by_job


def _new_jobs(
    automated_build: AutomatedBuild,
    builds: Sequence[PlannedBuild],
    existing: Sequence[_Job],
    snapshot: Snapshot,
    settings: BuildSettings,
) -> list[_Job]:
    """Render planned builds that have no Job yet; queued (suspended) until runPolicy says."""
    names = {j.record.job_name for j in existing}
    secret_name = automated_build.spec.source.credentials_secret
    secret = snapshot.secrets.get(secret_name) if secret_name else None
    keys = frozenset(secret.data) if secret is not None else frozenset()
    new = []
    for build in builds:
        body = render_job(automated_build, build, settings, secret_keys=keys)
        name = body["metadata"]["name"]
        if name in names:
            continue
        names.add(name)
        body["metadata"]["annotations"][tracking.ANNOTATION_REQUESTED] = snapshot.now.isoformat()
        if build.event.commit_time is not None:
            annotations = body["metadata"]["annotations"]
            annotations[replay.ANNOTATION_COMMIT_TIME] = build.event.commit_time.isoformat()
        body["spec"]["suspend"] = True
        new.append(_Job(body, tracking.build_record(body, (), snapshot.now), new=True))
    return new


def _pod_grace(job: _Job, now: datetime, work: _Pass) -> None:
    """Look again when a released build without a Pod reaches its grace period."""
    record = job.record
    if record.phase is not BuildPhase.PENDING or record.reason or job.new:
        return
    since = record.start_time or tracking.parse_time(job.body["metadata"].get("creationTimestamp"))
    if since is None:
        return
    left = (since + tracking.POD_CREATE_GRACE - now).total_seconds()
    if left > 0:
        work.requeue(left + 1)


def _status(
    snapshot: Snapshot,
    automated_build: AutomatedBuild | None,
    previous: AutomatedBuildStatus,
    records: list[BuildRecord],
    repository: RepositoryStatus | None,
    hook: hooks.HookOutcome,
    work: _Pass,
    pushes: PushRecord | None,
) -> tuple[dict[str, Any] | None, list[EventNote]]:
    """The new status, or None when it would not change; and the Events of the change."""
    meta = snapshot.body["metadata"]
    generation = int(meta.get("generation", 0))
    image = automated_build.spec.image.repository if automated_build else previous.image
    webhook_path = previous.webhook_path
    if automated_build is not None:
        webhook_path = WEBHOOK_PATHS.get(
            automated_build.spec.provider, WEBHOOK_PATHS[Provider.GITHUB]
        )
    observed_source = previous.observed_source
    if automated_build is not None and work.source_answered:
        observed_source = source_fingerprint(automated_build)
    webhook_ready = []
    if hook.condition is not None:
        webhook_ready.append(
            tracking.condition(
                ConditionType.WEBHOOK_READY,
                *hook.condition,
                generation,
                previous.conditions,
                snapshot.now,
            )
        )
    status = AutomatedBuildStatus(
        observed_generation=generation,
        observed_source=observed_source,
        image=image,
        webhook_path=webhook_path,
        conditions=[
            *tracking.conditions(
                generation, work.problem, records, previous.conditions, snapshot.now
            ),
            tracking.condition(
                ConditionType.VISIBILITY_APPLIED,
                *registry_gate.visibility_condition(repository),
                generation,
                previous.conditions,
                snapshot.now,
            ),
            *webhook_ready,
        ],
        latest_build=tracking.latest_build(records),
        repository=repository,
        webhook=hook.webhook,
        builds=records,
        last_trigger=work.last_trigger or previous.last_trigger,
        pushes=pushes,
    )
    new = status.model_dump(by_alias=True, exclude_none=True, mode="json")
    old = previous.model_dump(by_alias=True, exclude_none=True, mode="json")
    if new == old:
        return None, []
    events = _transitions(previous.builds, records)
    if work.problem is not None and _condition_changed(previous.conditions, work.problem):
        events.append(EventNote("Warning", work.problem.reason, work.problem.message))
    # A merge patch deletes with null: say so for fields that may disappear.
    new.setdefault("latestBuild", None)
    new.setdefault("lastTrigger", None)
    new.setdefault("webhook", None)
    return new, events


__all__ = [
    "Decision",
    "EventNote",
    "HeadsRequest",
    "HeadsResult",
    "JobWrite",
    "SecretView",
    "Snapshot",
    "decide",
    "previous_status",
    "redact",
    "referenced_secrets",
    "watched_secrets",
]
