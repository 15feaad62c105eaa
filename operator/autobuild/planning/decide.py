"""The decide step: a snapshot of one AutomatedBuild's world -> the writes that bring it in line.

Pure: no I/O, no clock, no randomness. The controller observes (a snapshot from its in-memory
store of watched objects), calls :func:`decide`, and acts (the writes, nothing else). Deciding
again on the world after those writes yields no writes and the same status.

:func:`decide` is the fold of the steps (``planning/steps``, one per concern), then
:func:`summarize` (kstatus' Ready, Reconciling and Stalled), the status and its Events, and
the redaction of every Secret value from what is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Final

from autobuild.api.conditions import ConditionType, Reason
from autobuild.api.models import (
    AutomatedBuild,
    AutomatedBuildStatus,
    BuildPhase,
    BuildRecord,
    Condition,
)
from autobuild.planning import hooks, registry_gate
from autobuild.planning import status as tracking
from autobuild.planning.snapshot import (
    Decision,
    EventNote,
    Obj,
    SecretView,
    Snapshot,
)
from autobuild.planning.steps import Done, Gate, World, fold
from autobuild.planning.steps.access import referenced_secrets
from autobuild.settings import BuildSettings, GitHubSettings

_REDACTED: Final = "***"
# Shorter secret values are not redacted: they would mangle ordinary words.
_REDACT_MIN: Final = 4


def decide(
    snapshot: Snapshot, settings: BuildSettings, github: GitHubSettings | None = None
) -> Decision:
    """Bring one AutomatedBuild's Jobs, status and GitHub webhook in line with its spec, its
    pending build requests and the state of its Jobs and Pods."""
    github = github or GitHubSettings()
    world = World.of(snapshot, settings, github)
    done = fold(world)
    status: dict[str, Any] | None = None
    events = _events(done)
    if not done.closed(Gate.STATUS):
        status, status_events = _status(world, done)
        events += status_events
    secrets = _secret_values(snapshot.secrets)
    hook = done.webhook.outcome
    requests = (done.preflight.request, *done.digests.requests, done.repository.request)
    return Decision(
        create=tuple(j.body for j in done.history.kept if j.new),
        release=tuple(j.write() for j in done.queue.release if not j.new),
        cancel=tuple(j.write() for j in done.queue.cancel),
        delete=tuple(j.write() for j in done.history.delete),
        status=redact(status, secrets),
        events=tuple(replace(e, message=redact(e.message, secrets)) for e in events),
        resolve=done.source.resolve or done.pushes.resolve,
        registry=tuple(r for r in requests if r is not None),
        read_logs=done.failure_logs.reads,
        pushes_done=done.taken.done,
        requeue_after=done.requeue,
        github=(*done.commit_statuses.requests, *hook.requests),
        finalizers=hook.finalizers,
        hook_secret=hook.create_secret,
        github_forget=tuple(hook.forget),
        push_events=tuple(
            replace(e, message=redact(e.message, secrets)) for e in done.taken.push_events
        ),
    )


def _events(done: Done) -> list[EventNote]:
    """Every step's Events in step order; a closed TRIGGER gate withholds the request's."""
    withheld = "source" if done.closed(Gate.TRIGGER) else None
    return [e for step, events in done.events if step != withheld for e in events]


def summarize(
    generation: int,
    problem: tracking.Problem | None,
    records: Sequence[BuildRecord],
    previous: Sequence[Condition],
    done: Done,
    now: datetime,
) -> list[Condition]:
    """Every condition: kstatus' Ready, Reconciling and Stalled from the pass's problem and the
    builds, then the conditions the steps own."""
    owned = [
        tracking.condition(
            ConditionType.VISIBILITY_APPLIED,
            *registry_gate.visibility_condition(done.repository.repository),
            generation,
            previous,
            now,
        )
    ]
    webhook_ready = done.webhook.outcome.condition
    if webhook_ready is not None:
        owned.append(
            tracking.condition(
                ConditionType.WEBHOOK_READY, *webhook_ready, generation, previous, now
            )
        )
    return [*tracking.conditions(generation, problem, records, previous, now), *owned]


def _status(world: World, done: Done) -> tuple[dict[str, Any] | None, list[EventNote]]:
    """The new status, or None when it would not change; and the Events of the change."""
    snapshot, previous = world.snapshot, world.previous
    access, records = done.access, list(done.commit_statuses.records)
    problem = done.problem()
    last_trigger = None if done.closed(Gate.TRIGGER) else done.source.last_trigger
    status = AutomatedBuildStatus(
        observed_generation=access.generation,
        observed_source=done.source.observed_source,
        image=access.image,
        webhook_path=access.webhook_path,
        conditions=summarize(
            access.generation, problem, records, previous.conditions, done, snapshot.now
        ),
        latest_build=tracking.latest_build(records),
        repository=done.repository.repository,
        webhook=done.webhook.outcome.webhook,
        builds=records,
        last_trigger=last_trigger or previous.last_trigger,
        pushes=done.taken.record,
    )
    new = status.model_dump(by_alias=True, exclude_none=True, mode="json")
    old = previous.model_dump(by_alias=True, exclude_none=True, mode="json")
    if new == old:
        return None, []
    events = _transitions(previous.builds, records)
    if problem is not None and _condition_changed(previous.conditions, problem):
        events.append(EventNote("Warning", problem.reason, problem.message))
    # A merge patch deletes with null: say so for fields that may disappear.
    new.setdefault("latestBuild", None)
    new.setdefault("lastTrigger", None)
    new.setdefault("webhook", None)
    return new, events


def watched_secrets(
    spec: Obj, automated_build: AutomatedBuild | None, github: GitHubSettings
) -> list[str]:
    """The Secrets a reconcile reads: those the spec refers to, and the one the operator
    creates for a generated webhook secret."""
    names = referenced_secrets(spec)
    generated = hooks.generated_secret_name(automated_build, github) if automated_build else None
    return [*names, generated] if generated and generated not in names else names


def _transitions(before: Sequence[BuildRecord], after: Sequence[BuildRecord]) -> list[EventNote]:
    """The Events of builds whose phase changed (the jobs concern, posted with the status
    that shows the change)."""
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


__all__ = ["decide", "redact", "summarize", "watched_secrets"]
