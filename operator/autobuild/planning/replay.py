"""Replayed webhook pushes: a captured signed push of an old commit must not build again once
its Job is gone, after a restart too. Pure: no I/O, no clock.

A delivery proves only that the git host sent it once: GitHub's signature carries no time and
the delivery id is a header anyone can repeat. So (issue 17) a push from a webhook builds only
if its commit is newer than the ref's last build, or is still the ref's head. ``status.pushes``
keeps, per ref, the newest build (its commit, when it was requested, the newest commit time
among its builds) and the deliveries that made it; decide screens the pending pushes with it
before planning (:func:`screen`) and writes it back after (:func:`updated`).

- A delivery recorded for the ref, or the commit the ref last built: built already, nothing.
- A commit time (from the payload) later than the ref's bound and not in the future: builds.
  The bound is the later of when the ref's newest build was requested and the newest commit
  time among its builds; for a ref not kept, ``status.pushes.since``.
- Otherwise (older, no time given, a time in the future): it builds only if the repository's
  head for the ref, read after the push arrived, is its commit (a force push to an older
  commit is the head: it builds). One ls-remote answers every push pending when it was asked.

Polls, trigger-URL calls and manual triggers come from the operator or a person, not from the
network: they are not screened, but their builds move the bound like any other build.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from autobuild.api.models import MAX_BUILT_REFS, MAX_REF_DELIVERIES, BuiltRef, PushRecord, Trigger
from autobuild.planning import status as tracking
from autobuild.planning.job import ANNOTATION_COMMIT, ANNOTATION_SOURCE_REF
from autobuild.planning.planner import PushEvent

__all__ = [
    "ANNOTATION_COMMIT_TIME",
    "HeadsSeen",
    "Screened",
    "covered",
    "heads_request_id",
    "screen",
    "updated",
]

# On a build's Job: the commit time its push gave, so the bound survives a lost status write.
ANNOTATION_COMMIT_TIME: Final = "autobuild.dev/commit-time"
# HeadsRequest ids of these checks: "push:N" reads heads for the pending pushes up to number N.
_REQUEST_PREFIX: Final = "push:"
# Refused pushes named in one Event; the rest are counted.
_NAMED: Final = 3


@dataclass(frozen=True)
class HeadsSeen:
    """An ls-remote asked for by a push check: it covers the pushes numbered up to
    ``covers`` (read after they arrived). ``problem``: why the heads could not be read."""

    covers: int
    heads: Mapping[str, str] | None
    problem: str | None = None


@dataclass(frozen=True)
class Screened:
    """What the screen let through, how many pending pushes it handled (the first ``done``),
    the refused ones in a sentence each, and the push number heads must cover (None: none
    needed)."""

    accepted: tuple[PushEvent, ...]
    done: int
    refused: tuple[str, ...] = ()
    ask_heads: int | None = None

    def note(self) -> str | None:
        """One Event message for every refused push, or None."""
        if not self.refused:
            return None
        named = "; ".join(self.refused[:_NAMED])
        more = len(self.refused) - _NAMED
        return f"{len(self.refused)} webhook push(es) built nothing: {named}" + (
            f"; and {more} more" if more > 0 else ""
        )


def heads_request_id(number: int) -> str:
    """The HeadsRequest id of a push check covering the pending pushes up to ``number``."""
    return f"{_REQUEST_PREFIX}{number}"


def covered(request_id: str) -> int | None:
    """The push number a push check's answer covers; None for other heads requests."""
    if not request_id.startswith(_REQUEST_PREFIX):
        return None
    number = request_id[len(_REQUEST_PREFIX) :]
    return int(number) if number.lstrip("-").isdigit() else None


def _bound(built: BuiltRef) -> datetime:
    return max(built.time, built.commit_time) if built.commit_time else built.time


def _moment(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _screened_out(event: PushEvent, built: BuiltRef | None) -> bool:
    """Built already: a redelivery of a recorded delivery, or the commit the ref last built."""
    if built is None:
        return False
    return event.commit == built.commit or event.delivery in built.deliveries


def screen(
    events: Sequence[PushEvent],
    record: PushRecord | None,
    first: int,
    heads: HeadsSeen | None,
    now: datetime,
) -> Screened:
    """Screen the pending pushes, in order (``first``: the number of ``events[0]``). Stops at
    the first push that needs heads the answer does not cover: it and those after it wait."""
    refs = {built.ref: built for built in (record.refs if record else ())}
    since = record.since if record is not None else None
    accepted: list[PushEvent] = []
    refused: list[str] = []
    for index, event in enumerate(events):
        if not event.delivery or event.trigger is not Trigger.PUSH:
            accepted.append(event)
            continue
        built = refs.get(event.git_ref)
        if _screened_out(event, built):
            continue
        bound = _bound(built) if built is not None else since
        moment = event.commit_time
        if bound is None or (moment is not None and bound < moment <= now):
            accepted.append(event)
            continue
        if heads is None or heads.covers < first + index:
            return Screened(tuple(accepted), index, tuple(refused), first + len(events) - 1)
        head = (heads.heads or {}).get(event.git_ref)
        if heads.problem is None and head == event.commit:
            accepted.append(event)
            continue
        refused.append(_refusal(event, bound, moment, now, head, heads.problem))
    return Screened(tuple(accepted), len(events), tuple(refused))


def _refusal(
    event: PushEvent,
    bound: datetime,
    moment: datetime | None,
    now: datetime,
    head: str | None,
    problem: str | None,
) -> str:
    what = f"{event.git_ref}@{event.commit[:7]} ({event.delivery})"
    if moment is None:
        when = "its delivery gives no commit time"
    elif moment > now:
        when = f"its commit time {_moment(moment)} is in the future"
    else:
        when = f"its commit time {_moment(moment)} is not after the ref's last build"
    when += f" ({_moment(bound)})"
    if problem is not None:
        return f"{what}: {when}, and the repository's heads could not be read: {problem[:200]}"
    if head is None:
        return f"{what}: {when}, and the repository has no such ref now"
    return f"{what}: {when}, and the ref's head is {head[:7]} now"


def _job_facts(job: Mapping[str, Any]) -> tuple[str, str, datetime, datetime | None] | None:
    """(ref, commit, when requested, commit time) of a build Job; None when it says too little."""
    meta = job.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    ref = annotations.get(ANNOTATION_SOURCE_REF)
    commit = annotations.get(ANNOTATION_COMMIT)
    try:
        requested = tracking.parse_time(
            annotations.get(tracking.ANNOTATION_REQUESTED) or meta.get("creationTimestamp")
        )
        commit_time = tracking.parse_time(annotations.get(ANNOTATION_COMMIT_TIME))
    except ValueError:
        return None  # not written by this operator: it cannot move the bound
    if not ref or not commit or requested is None or requested.tzinfo is None:
        return None
    if commit_time is not None and commit_time.tzinfo is None:
        commit_time = None
    return str(ref), str(commit), requested, commit_time


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return max(a, b)


def updated(
    previous: PushRecord | None,
    jobs: Iterable[Mapping[str, Any]],
    handled: Sequence[PushEvent],
    now: datetime,
) -> PushRecord:
    """The record after this decision: the previous one, every build Job there is (new ones
    included) and the deliveries of the pushes it handled; the newest MAX_BUILT_REFS refs,
    the bound of those that fall out kept in ``since``."""
    since = previous.since if previous is not None and previous.since else now
    refs = {built.ref: built for built in (previous.refs if previous else ())}
    for job in jobs:
        facts = _job_facts(job)
        if facts is None:
            continue
        ref, commit, requested, commit_time = facts
        built = refs.get(ref)
        if built is None:
            refs[ref] = BuiltRef(ref=ref, commit=commit, time=requested, commit_time=commit_time)
            continue
        change: dict[str, Any] = {}
        newest = _later(built.commit_time, commit_time)
        if newest != built.commit_time:
            change["commit_time"] = newest
        if requested > built.time:
            change |= {"commit": commit, "time": requested}
        if change:  # most visits: the Jobs are already in the record
            refs[ref] = built.model_copy(update=change)
    for event in handled:
        built = refs.get(event.git_ref)
        if built is None or not event.delivery or event.delivery.endswith(":"):
            continue
        deliveries = [event.delivery, *(d for d in built.deliveries if d != event.delivery)]
        refs[event.git_ref] = built.model_copy(
            update={"deliveries": deliveries[:MAX_REF_DELIVERIES]}
        )
    ordered = sorted(refs.values(), key=lambda b: (b.time, b.ref), reverse=True)
    for dropped in ordered[MAX_BUILT_REFS:]:
        since = max(since, _bound(dropped))
    return PushRecord(since=since, refs=ordered[:MAX_BUILT_REFS])
