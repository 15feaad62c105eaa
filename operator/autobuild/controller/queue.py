"""A keyed work queue: one worker per key at a time, repeated keys merged, failures retried
with backoff, delayed requeues (controller-runtime's workqueue, in asyncio)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Final, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
log = logging.getLogger("autobuild.queue")

_BACKOFF_BASE: Final = 0.5
_BACKOFF_CAP: Final = 60.0


def backoff(failures: int) -> float:
    """Seconds before retry number ``failures``: 0.5, 1, 2 ... at most a minute."""
    return float(min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** min(failures - 1, 10)))


class WorkQueue(Generic[K]):
    """Keys to process. ``process(key)`` returns seconds until the key wants another look
    (None: only when something changes); an exception retries the key with backoff."""

    def __init__(self, process: Callable[[K], Awaitable[float | None]], workers: int = 8) -> None:
        self._process = process
        self._workers = workers
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._queued: set[K] = set()
        self._processing: set[K] = set()
        self._dirty: set[K] = set()
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._failures: dict[K, int] = {}
        self.processed = 0

    def add(self, key: K) -> None:
        """Look at ``key`` soon (merged with an add that has not run yet)."""
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: K, seconds: float) -> None:
        """Look at ``key`` in ``seconds`` (an earlier pending time wins)."""
        loop = asyncio.get_running_loop()
        when = loop.time() + seconds
        timer = self._timers.get(key)
        if timer is not None:
            if timer.when() <= when:
                return
            timer.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def forget(self, key: K) -> None:
        """Drop what the queue remembers of a deleted key."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._failures.pop(key, None)
        self._dirty.discard(key)

    @property
    def depth(self) -> int:
        """Keys waiting for a worker (not those being processed or waiting on a timer)."""
        return len(self._queued)

    def idle(self) -> bool:
        """Nothing queued or being processed (timers may be pending)."""
        return not self._queued and not self._processing

    async def run(self, process: Callable[[K], Awaitable[float | None]] | None = None) -> None:
        """Run the workers until cancelled; ``process`` instead of the queue's own (a follower
        of leader election only refreshes its cache with it)."""
        work = process or self._process
        await asyncio.gather(*(self._worker(work) for _ in range(self._workers)))

    async def _worker(self, process: Callable[[K], Awaitable[float | None]]) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._processing.add(key)
            again: float | None = None
            try:
                again = await process(key)
                self._failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception:
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                again = backoff(failures)
                log.exception(
                    "%s: reconcile failed (attempt %d); retrying in %gs", key, failures, again
                )
            finally:
                self._processing.discard(key)
                self.processed += 1
            if key in self._dirty:
                self._dirty.discard(key)
                self.add(key)
            elif again is not None:
                if again <= 0:
                    self.add(key)
                else:
                    self.add_after(key, again)
