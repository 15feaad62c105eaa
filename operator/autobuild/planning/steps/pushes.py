"""Pushes: the webhook deliveries queued for the object. Replays of pushes already built are
refused (a STALE_PUSH Event); some wait for the heads to say whether they are still the tip.
Two steps: :func:`screen` before the Jobs are planned, :func:`record` after, for
``status.pushes`` and the pushes the pass takes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from autobuild.api.conditions import Reason
from autobuild.api.models import AutomatedBuild, PushRecord
from autobuild.planning import replay
from autobuild.planning import status as tracking
from autobuild.planning.job import clone_url
from autobuild.planning.planner import PlannedBuild, plan_builds
from autobuild.planning.snapshot import EventNote, HeadsRequest, Obj, Snapshot
from autobuild.planning.steps.access import Access
from autobuild.planning.steps.base import Contribution, World, credentials_version

OWNS: Final = frozenset({"pushes"})
_NOTHING: Final = replay.Screened((), 0)


@dataclass(kw_only=True)
class Pushes(Contribution):
    """The pushes screened this pass: the builds of the accepted ones, and the heads to read
    for those that wait."""

    screened: replay.Screened = _NOTHING
    builds: tuple[PlannedBuild, ...] = ()
    resolve: HeadsRequest | None = None


@dataclass(kw_only=True)
class PushesTaken(Contribution):
    """How many queued pushes this pass takes, ``status.pushes`` after it, and the Events
    about the refused ones (posted once they are taken, whether or not status changes)."""

    done: int = 0
    record: PushRecord | None = None
    push_events: tuple[EventNote, ...] = ()


def screen(world: World, access: Access, problem: tracking.Problem | None) -> Pushes:
    """Screen the queued pushes, unless ``problem`` (the pass's so far) stalls the object."""
    automated_build = access.automated_build
    if automated_build is None or (problem is not None and problem.stalled):
        return Pushes()
    snapshot = world.snapshot
    screened = replay.screen(
        snapshot.pushes,
        world.previous.pushes,
        snapshot.push_count - len(snapshot.pushes) + 1,
        _push_heads(automated_build, snapshot),
        snapshot.now,
    )
    builds = [
        b for event in screened.accepted for b in plan_builds(automated_build.spec, event).builds
    ]
    resolve = None
    if screened.ask_heads is not None:
        resolve = HeadsRequest(
            automated_build.metadata.generation,
            replay.heads_request_id(screened.ask_heads),
            clone_url(automated_build.spec),
            access.username,
            access.password,
            credentials_version(automated_build, snapshot),
        )
    return Pushes(screened=screened, builds=tuple(builds), resolve=resolve)


def record(
    world: World,
    access: Access,
    pushes: Pushes,
    created: bool,
    jobs: Sequence[Obj],
) -> PushesTaken:
    """The pushes taken (none while new Jobs may not be ``created``) and ``status.pushes``
    after the pass's ``jobs``."""
    if access.automated_build is None:
        return PushesTaken(record=world.previous.pushes)
    done = pushes.screened.done if created else 0
    handled = pushes.screened.accepted if done else ()
    updated = replay.updated(world.previous.pushes, jobs, handled, world.snapshot.now)
    refused = pushes.screened.note() if done else None
    notes = (EventNote("Warning", Reason.STALE_PUSH, refused),) if refused else ()
    return PushesTaken(done=done, record=updated, push_events=notes)


def _push_heads(automated_build: AutomatedBuild, snapshot: Snapshot) -> replay.HeadsSeen | None:
    """The heads a push check asked for, if they are the answer for this generation and
    linked-token version."""
    result = snapshot.heads
    if result is None:
        return None
    covers = replay.covered(result.request_id)
    want = (automated_build.metadata.generation, credentials_version(automated_build, snapshot))
    if covers is None or (result.generation, result.credentials_version) != want:
        return None
    problem = result.problem.message if result.problem is not None else None
    return replay.HeadsSeen(covers, result.heads, problem)


__all__ = ["OWNS", "Pushes", "PushesTaken", "record", "screen"]
