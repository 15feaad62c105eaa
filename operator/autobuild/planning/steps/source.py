"""Source: the build requests (creation, ``autobuild.dev/trigger`` requests from the CLI and
the trigger URL) and the repository's heads they and the source check need. One
``git ls-remote`` answers both; a request that needs no heads (a commit given, or nothing to
resolve) never waits for the git host."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from autobuild.api import checks
from autobuild.api.conditions import STALLED, ConditionType, Reason
from autobuild.api.models import AutomatedBuild, AutomatedBuildStatus, LastTrigger, Trigger
from autobuild.planning.job import build_identity, clone_url
from autobuild.planning.planner import (
    PlannedBuild,
    PushEvent,
    buildable_ref,
    check_commit,
    full_ref,
    parse_ref,
    plan_builds,
)
from autobuild.planning.snapshot import EventNote, HeadsRequest, HeadsResult
from autobuild.planning.steps.access import Access
from autobuild.planning.steps.base import Contribution, Gate, World, credentials_version
from autobuild.planning.triggers import (
    ANNOTATION_TRIGGER,
    CREATE_ID,
    TriggerRequest,
    parse_requests,
    pending_requests,
)

OWNS: Final = frozenset({"observedSource", "lastTrigger"})
# How long a failed `git ls-remote` stands before it is tried again.
RETRY_SECONDS: Final = 30.0
# Problems after which the repository is asked again whether it answers.
_SOURCE_PROBLEMS: Final = STALLED | {Reason.SOURCE_UNREACHABLE, Reason.SOURCE_TOO_LARGE}


@dataclass(kw_only=True)
class Source(Contribution):
    """The builds the handled request asks for, how it was handled, and the heads to read.
    Its Events are about the request: they wait with it while :attr:`Gate.TRIGGER` is closed."""

    builds: tuple[PlannedBuild, ...] = ()
    last_trigger: LastTrigger | None = None
    resolve: HeadsRequest | None = None
    # The spec.source whose repository answered last (this pass's once it answers).
    observed_source: str = ""


@dataclass(frozen=True)
class _Request:
    """The build request this pass handles: creation, or the next trigger request."""

    id: str
    trigger: Trigger
    refs: tuple[str, ...]
    commit: str | None
    ref: str = ""
    invalid: str | None = None


def run(world: World, access: Access) -> Source:
    """Handle the next build request, reading the heads first when it or the source check
    needs them; nothing while access has a problem."""
    automated_build = access.automated_build
    observed = world.previous.observed_source
    if automated_build is None or access.problem is not None:
        return Source(observed_source=observed)
    snapshot, previous = world.snapshot, world.previous
    handled: Source | None = None
    request = _next_request(automated_build, previous)
    if request is not None and (request.invalid or not request.refs or request.commit):
        handled = _handle(automated_build, snapshot.now, request, None)
        request = None
    if request is None and not _source_needs_check(automated_build, previous):
        return _merge(handled, Source(), observed)
    request_id = request.id if request is not None else ""
    version = credentials_version(automated_build, snapshot)
    generation = automated_build.metadata.generation
    heads = snapshot.heads
    if heads is None or not _fresh(heads, (generation, request_id, version), snapshot.now):
        url = clone_url(automated_build.spec)
        ask = HeadsRequest(generation, request_id, url, access.username, access.password, version)
        return _merge(handled, Source(resolve=ask, closes=frozenset({Gate.STATUS})), observed)
    if heads.problem is not None:
        requeue = _retry_in(heads, snapshot.now) + 0.5
        return _merge(handled, Source(problem=heads.problem, requeue_after=requeue), observed)
    answered = source_fingerprint(automated_build)
    if request is None:
        return _merge(handled, Source(), answered)
    return _merge(handled, _handle(automated_build, snapshot.now, request, heads.heads), answered)


def _merge(handled: Source | None, then: Source, observed: str) -> Source:
    """The outcome of a request handled without heads, and of what the heads said after."""
    if handled is None:  # the common case: one outcome, made by this step, completed here
        then.observed_source = observed
        return then
    first = handled
    return Source(
        builds=first.builds + then.builds,
        last_trigger=then.last_trigger or first.last_trigger,
        events=first.events + then.events,
        resolve=then.resolve,
        observed_source=observed,
        problem=then.problem,
        closes=then.closes,
        requeue_after=then.requeue_after,
    )


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


def _fresh(result: HeadsResult, want: tuple[int, str, str], now: datetime) -> bool:
    """An answer for this generation, request and linked-token version (a changed token is
    tried at once); a failure stands for RETRY_SECONDS."""
    if (result.generation, result.request_id, result.credentials_version) != want:
        return False
    return result.problem is None or _retry_in(result, now) > 0


def _handle(
    automated_build: AutomatedBuild,
    now: datetime,
    request: _Request,
    heads: Mapping[str, str] | None,
) -> Source:
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
    ids = [build_identity(automated_build, b).build_id for b in builds]
    last_trigger = LastTrigger(
        id=request.id,
        time=now,
        ref=request.ref,
        commit=request.commit or "",
        builds=ids,
        reason=reason,
        message=message,
    )
    events: tuple[EventNote, ...] = ()
    if reason is not Reason.TRIGGERED:
        events = (EventNote("Warning", reason, f"trigger {request.id}: {message}"),)
    elif request.trigger is Trigger.MANUAL:
        events = (EventNote("Normal", reason, f"trigger {request.id}: {message}"),)
    return Source(builds=tuple(builds), last_trigger=last_trigger, events=events)


__all__ = ["OWNS", "RETRY_SECONDS", "Source", "run", "source_fingerprint"]
