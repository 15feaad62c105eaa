"""Polling (``spec.source.pollInterval``): ``git ls-remote`` finds heads that moved.

It covers clusters the git host cannot reach and GitHub's "no push event when more than three
tags are pushed at once". Two parts:

- pure: :func:`head_changes` (old heads vs new heads -> push events with trigger ``Poll``;
  deleted refs build nothing) and :class:`PollSchedule` (which target polls when, and the heads
  it saw last; time and randomness are passed in);
- effects: :func:`run_poller`, an async loop over injected callables (list the targets, run
  ls-remote, submit events) that keeps at most ``concurrency`` ls-remotes in flight.

The first poll of a target only records its heads (a baseline: no build storm after a start),
unless the target brings a baseline of its own (heads recorded earlier, e.g. in status), which
the first poll then compares with. Targets start at random points of their first interval and
each later poll is ``interval`` ± ``jitter`` after the previous one ended, so 10,000 objects
spread over time instead of polling together.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
import random
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from autobuild.api import checks
from autobuild.api.models import Trigger
from autobuild.planning.planner import PushEvent

__all__ = [
    "DEFAULT_CONCURRENCY",
    "PollOutcome",
    "PollSchedule",
    "PollTarget",
    "head_changes",
    "run_poller",
]

# Concurrent git processes (issue 9: a setting, default 4).
DEFAULT_CONCURRENCY: Final = 4
DEFAULT_JITTER: Final = 0.1
# How often the loop re-reads the target list (new, changed and deleted objects).
DEFAULT_RESCAN_SECONDS: Final = 10.0
_MAX_ERROR_CHARS: Final = 300

log = logging.getLogger("autobuild.webhooks.poller")

Key = tuple[str, str]


@dataclass(frozen=True)
class PollTarget:
    """An AutomatedBuild with ``spec.source.pollInterval``.

    ``repo`` is what is polled (its :func:`repo_key` or clone URL): when it changes the heads
    seen so far are dropped and the next poll records a new baseline. ``baseline`` holds heads
    recorded before this process started, or None.
    """

    namespace: str
    name: str
    repo: str
    interval: float
    baseline: Mapping[str, str] | None = field(default=None, compare=False)

    @property
    def key(self) -> Key:
        """(namespace, name)."""
        return (self.namespace, self.name)


def head_changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[PushEvent]:
    """Push events (trigger ``Poll``) for the refs of ``new`` that are new or moved since ``old``.

    Refs gone from ``new`` were deleted and build nothing; refs whose names cannot build
    (unsafe names, not a branch or tag) are left out. Sorted by ref for a stable order.
    """
    events: list[PushEvent] = []
    for ref in sorted(new):
        commit = new[ref]
        if old.get(ref) == commit:
            continue
        try:
            events.append(PushEvent.parse(ref, commit, trigger=Trigger.POLL))
        except checks.InputError:
            continue
    return events


@dataclass(frozen=True)
class PollOutcome:
    """What one finished poll asks for: events to submit, and whether the heads changed."""

    events: tuple[PushEvent, ...] = ()
    heads_changed: bool = False


@dataclass
class _Entry:
    target: PollTarget
    next_due: float
    heads: Mapping[str, str] | None
    in_flight: bool = False


class PollSchedule:
    """When each target polls next and the heads it saw last. Pure: no clock, no I/O."""

    def __init__(self, *, jitter: float = DEFAULT_JITTER, rng: random.Random | None = None) -> None:
        if not 0 <= jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        self._jitter = jitter
        self._rng = rng or random.Random()  # noqa: S311 (spreading polls, not cryptography)
        self._entries: dict[Key, _Entry] = {}
        # (due time, sequence, key); entries whose due time changed are skipped when popped.
        self._heap: list[tuple[float, int, Key]] = []
        self._sequence = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _schedule(self, key: Key, entry: _Entry, due: float) -> None:
        entry.next_due = due
        self._sequence += 1
        heapq.heappush(self._heap, (due, self._sequence, key))

    def sync(self, targets: Iterable[PollTarget], now: float) -> None:
        """Adopt the current target list: add new ones (first poll at a random point of their
        first interval), drop deleted ones, and follow changes of repo and interval."""
        seen: set[Key] = set()
        for target in targets:
            key = target.key
            seen.add(key)
            entry = self._entries.get(key)
            if entry is None or entry.target.repo != target.repo:
                entry = _Entry(target, math.inf, target.baseline)
                self._entries[key] = entry
                self._schedule(key, entry, now + self._rng.uniform(0, target.interval))
            elif entry.target.interval != target.interval:
                entry.target = target
                if not entry.in_flight:
                    due = min(entry.next_due, now + self._rng.uniform(0, target.interval))
                    self._schedule(key, entry, due)
            else:
                entry.target = target
        for key in self._entries.keys() - seen:
            del self._entries[key]

    def _live_top(self) -> tuple[float, Key] | None:
        while self._heap:
            due, _, key = self._heap[0]
            entry = self._entries.get(key)
            if entry is not None and not entry.in_flight and entry.next_due == due:
                return due, key
            heapq.heappop(self._heap)
        return None

    def next_due(self) -> float | None:
        """The earliest due time of a target not being polled, or None."""
        top = self._live_top()
        return None if top is None else top[0]

    def take_due(self, now: float, limit: int) -> list[PollTarget]:
        """Up to ``limit`` targets due at ``now``, earliest first, marked as being polled."""
        taken: list[PollTarget] = []
        while len(taken) < limit:
            top = self._live_top()
            if top is None or top[0] > now:
                break
            heapq.heappop(self._heap)
            entry = self._entries[top[1]]
            entry.in_flight = True
            taken.append(entry.target)
        return taken

    def finish(
        self, target: PollTarget, now: float, heads: Mapping[str, str] | None
    ) -> PollOutcome:
        """Record the end of a poll (``heads`` None: it failed) and schedule the next one.

        No events for a failure, a first poll (baseline) or a target deleted or re-pointed
        meanwhile; ``heads_changed`` says whether the recorded heads changed.
        """
        entry = self._entries.get(target.key)
        if entry is None or entry.target.repo != target.repo or not entry.in_flight:
            return PollOutcome()
        entry.in_flight = False
        spread = self._rng.uniform(1 - self._jitter, 1 + self._jitter)
        self._schedule(target.key, entry, now + entry.target.interval * spread)
        if heads is None or heads == entry.heads:
            return PollOutcome()
        old, entry.heads = entry.heads, dict(heads)
        events = () if old is None else tuple(head_changes(old, heads))
        return PollOutcome(events, heads_changed=True)


ListTargets = Callable[[], Iterable[PollTarget]]
LsRemote = Callable[[PollTarget], Coroutine[Any, Any, Mapping[str, str]]]
SubmitPush = Callable[[str, str, Sequence[PushEvent]], object]
RecordHeads = Callable[[str, str, Mapping[str, str]], object]


async def run_poller(
    list_targets: ListTargets,
    ls_remote: LsRemote,
    submit: SubmitPush,
    *,
    record_heads: RecordHeads | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    jitter: float = DEFAULT_JITTER,
    rescan: float = DEFAULT_RESCAN_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
) -> None:
    """Poll forever (until cancelled); run it as a task on the operator's loop.

    - ``list_targets()``: the AutomatedBuilds with a poll interval (from memory; re-read every
      ``rescan`` seconds);
    - ``ls_remote(target)``: the repository's heads (``refs/heads/*``, ``refs/tags/*`` ->
      commit); exceptions count as a failed poll and are logged (their messages must be safe);
    - ``submit(namespace, name, events)``: non-blocking, as the webhook receiver's;
    - ``record_heads(namespace, name, heads)``: optional, after each poll that saw new heads
      (to keep a baseline in status across restarts).

    At most ``concurrency`` ls-remotes run at once; due targets wait their turn.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    schedule = PollSchedule(jitter=jitter, rng=rng)
    running: dict[asyncio.Task[Mapping[str, str]], PollTarget] = {}
    next_scan = -math.inf
    try:
        while True:
            now = clock()
            if now >= next_scan:
                next_scan = now + rescan
                try:
                    schedule.sync(list(list_targets()), now)
                except Exception:
                    # Keep polling what is known; the next rescan tries again.
                    log.exception("polling: could not list the AutomatedBuilds to poll")
            for target in schedule.take_due(now, concurrency - len(running)):
                running[asyncio.create_task(ls_remote(target))] = target
            wake = next_scan
            if len(running) < concurrency:
                wake = min(wake, schedule.next_due() or math.inf)
            timeout = max(0.0, wake - now)
            if not running:
                await asyncio.sleep(timeout)
                continue
            done, _ = await asyncio.wait(
                running, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                _finish(schedule, running.pop(task), task, clock(), submit, record_heads)
    finally:
        for task in running:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*running, return_exceptions=True)


def _finish(
    schedule: PollSchedule,
    target: PollTarget,
    task: asyncio.Task[Mapping[str, str]],
    now: float,
    submit: SubmitPush,
    record_heads: RecordHeads | None,
) -> None:
    """Hand one finished ls-remote to the schedule, then submit and record what it found."""
    where = f"{target.namespace}/{target.name}"
    heads: Mapping[str, str] | None = None
    if task.cancelled():
        pass
    elif (error := task.exception()) is not None:
        detail = str(error)[:_MAX_ERROR_CHARS]
        log.warning("poll of %s failed (%s): %s", where, type(error).__name__, detail)
    else:
        heads = task.result()
    outcome = schedule.finish(target, now, heads)
    if outcome.events:
        log.info("poll of %s: %d ref(s) moved", where, len(outcome.events))
        try:
            submit(target.namespace, target.name, outcome.events)
        except Exception:
            log.exception("poll of %s: could not queue the build", where)
    if outcome.heads_changed and heads is not None and record_heads is not None:
        try:
            record_heads(target.namespace, target.name, heads)
        except Exception:
            log.exception("poll of %s: could not record the heads", where)
