"""Polling: head changes, the schedule, and the loop driven by fakes of its callables."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping, Sequence

import pytest

from autobuild.api.models import Trigger
from autobuild.planning.planner import PushEvent
from autobuild.webhooks.poller import PollSchedule, PollTarget, head_changes, run_poller

A = "a" * 40
B = "b" * 40
C = "c" * 40


def target(name: str = "app", repo: str = "github.com/acme/app", interval: float = 60.0, **kw):  # type: ignore[no-untyped-def]
    return PollTarget("ci", name, repo, interval, **kw)


# --- head_changes ---------------------------------------------------------------------------


def test_new_and_moved_refs_become_poll_events_deleted_ones_nothing() -> None:
    old = {"refs/heads/main": A, "refs/heads/gone": A, "refs/tags/v1": A}
    new = {"refs/heads/main": B, "refs/tags/v1": A, "refs/tags/v2": C, "refs/heads/dev": A}
    events = head_changes(old, new)
    assert [(e.git_ref, e.commit) for e in events] == [
        ("refs/heads/dev", A),
        ("refs/heads/main", B),
        ("refs/tags/v2", C),
    ]
    assert all(e.trigger is Trigger.POLL for e in events)


def test_refs_that_cannot_build_are_left_out() -> None:
    new = {"refs/heads/-x": A, "refs/heads/a..b": A, "refs/heads/ok": A, "refs/heads/bad": "zz"}
    assert [e.name for e in head_changes({}, new)] == ["ok"]


# --- PollSchedule ---------------------------------------------------------------------------


def test_first_polls_spread_over_the_first_interval() -> None:
    schedule = PollSchedule(rng=random.Random(7))
    targets = [target(f"app-{i}", f"github.com/acme/app-{i}", 300.0) for i in range(10_000)]
    schedule.sync(targets, now=1000.0)
    assert len(schedule) == 10_000
    first_ten_seconds = schedule.take_due(1010.0, limit=10_000)
    # Uniform over 300 s: about 333 in the first 10 s, never all of them.
    assert 150 < len(first_ten_seconds) < 600
    assert len(schedule.take_due(1300.0, limit=10_000)) == 10_000 - len(first_ten_seconds)


def test_take_due_honours_the_limit_and_never_hands_out_a_target_twice() -> None:
    schedule = PollSchedule(rng=random.Random(1))
    schedule.sync([target(f"t{i}", f"h/o/t{i}") for i in range(10)], now=0.0)
    first = schedule.take_due(60.0, limit=4)
    second = schedule.take_due(60.0, limit=100)
    assert len(first) == 4
    assert len(second) == 6
    assert {t.name for t in first}.isdisjoint({t.name for t in second})
    assert schedule.take_due(1e9, limit=100) == []
    assert schedule.next_due() is None  # all in flight


def poll_once(schedule: PollSchedule, now: float, heads: Mapping[str, str] | None):  # type: ignore[no-untyped-def]
    (taken,) = schedule.take_due(now, limit=1)
    return schedule.finish(taken, now, heads)


def test_first_poll_records_a_baseline_later_polls_report_moves() -> None:
    schedule = PollSchedule(rng=random.Random(2))
    schedule.sync([target()], now=0.0)
    first = poll_once(schedule, 60.0, {"refs/heads/main": A})
    assert (first.events, first.heads_changed) == ((), True)
    due = schedule.next_due()
    assert due is not None
    assert 60.0 + 54.0 <= due <= 60.0 + 66.0  # interval ± 10 %
    same = poll_once(schedule, 200.0, {"refs/heads/main": A})
    assert (same.events, same.heads_changed) == ((), False)
    moved = poll_once(schedule, 400.0, {"refs/heads/main": B, "refs/tags/v1": B})
    assert [(e.git_ref, e.commit) for e in moved.events] == [
        ("refs/heads/main", B),
        ("refs/tags/v1", B),
    ]


def test_a_baseline_from_before_a_restart_is_compared_with() -> None:
    schedule = PollSchedule(rng=random.Random(3))
    schedule.sync([target(baseline={"refs/heads/main": A})], now=0.0)
    outcome = poll_once(schedule, 60.0, {"refs/heads/main": B})
    assert [e.commit for e in outcome.events] == [B]


def test_a_failed_poll_keeps_the_heads_and_retries_an_interval_later() -> None:
    schedule = PollSchedule(rng=random.Random(4))
    schedule.sync([target()], now=0.0)
    poll_once(schedule, 60.0, {"refs/heads/main": A})
    failed = poll_once(schedule, 200.0, None)
    assert (failed.events, failed.heads_changed) == ((), False)
    due = schedule.next_due()
    assert due is not None
    assert due >= 254.0
    assert [e.commit for e in poll_once(schedule, 400.0, {"refs/heads/main": B}).events] == [B]


def test_a_new_repo_starts_a_new_baseline_and_deleted_targets_are_dropped() -> None:
    schedule = PollSchedule(rng=random.Random(5))
    schedule.sync([target()], now=0.0)
    poll_once(schedule, 60.0, {"refs/heads/main": A})
    schedule.sync([target(repo="github.com/acme/fork")], now=100.0)
    assert poll_once(schedule, 200.0, {"refs/heads/main": B}).events == ()  # baseline again
    (taken,) = schedule.take_due(400.0, limit=1)
    schedule.sync([], now=400.0)
    assert len(schedule) == 0
    assert schedule.finish(taken, 401.0, {"refs/heads/main": C}).events == ()
    assert schedule.next_due() is None


def test_a_shorter_interval_brings_the_next_poll_forward() -> None:
    schedule = PollSchedule(rng=random.Random(6))
    schedule.sync([target(interval=3600.0)], now=0.0)
    poll_once(schedule, 3600.0, {"refs/heads/main": A})
    schedule.sync([target(interval=60.0)], now=3700.0)
    due = schedule.next_due()
    assert due is not None
    assert due <= 3760.0


# --- run_poller with fakes ------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeGit:
    """ls-remote over a dict of repo -> heads; can hold every call until released."""

    def __init__(self, heads: dict[str, dict[str, str]]) -> None:
        self.heads = heads
        self.calls: list[str] = []
        self.running = 0
        self.max_running = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.cancelled = 0
        self.failing: set[str] = set()

    async def ls_remote(self, target: PollTarget) -> Mapping[str, str]:
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await self.gate.wait()
            self.calls.append(target.name)
            if target.repo in self.failing:
                raise RuntimeError(f"cannot read {target.repo}: connection refused")
            return dict(self.heads[target.repo])
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1


async def until(predicate: Callable[[], bool]) -> None:
    """Wait for a state (the loop runs on the same event loop); a guard, not a timing check."""
    async with asyncio.timeout(30):
        while not predicate():
            await asyncio.sleep(0.005)


class Submitted:
    def __init__(self) -> None:
        self.events: list[tuple[str, list[PushEvent]]] = []
        self.recorded: list[tuple[str, dict[str, str]]] = []

    def submit(self, namespace: str, name: str, events: Sequence[PushEvent]) -> None:
        self.events.append((name, list(events)))

    def record(self, namespace: str, name: str, heads: Mapping[str, str]) -> None:
        self.recorded.append((name, dict(heads)))


class Poller:
    """run_poller as a task, with a fake clock; ``listed`` counts reads of the target list."""

    def __init__(
        self, targets: list[PollTarget], git: FakeGit, out: Submitted, concurrency: int = 4
    ) -> None:
        self.clock = FakeClock()
        self.listed = 0
        self.task = asyncio.create_task(
            run_poller(
                self._list,
                git.ls_remote,
                out.submit,
                record_heads=out.record,
                concurrency=concurrency,
                rescan=0.01,
                clock=self.clock,
                rng=random.Random(0),
            )
        )
        self.targets = targets
        self.list_error: Exception | None = None

    def _list(self) -> list[PollTarget]:
        self.listed += 1
        if self.list_error is not None:
            raise self.list_error
        return self.targets

    async def advance_to(self, now: float) -> None:
        """Move the clock, once the loop has seen the targets (at time 0)."""
        await until(lambda: self.listed > 0)
        self.clock.now = now

    async def stop(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


def test_loop_records_a_baseline_then_submits_what_moved() -> None:
    async def scenario() -> None:
        out = Submitted()
        git = FakeGit({"github.com/acme/app": {"refs/heads/main": A}})
        poller = Poller([target()], git, out)
        await poller.advance_to(60.0)
        await until(lambda: len(git.calls) == 1)
        await until(lambda: len(out.recorded) == 1)
        assert out.events == []
        git.heads["github.com/acme/app"] = {"refs/heads/main": B, "refs/tags/v1": B}
        await poller.advance_to(200.0)
        await until(lambda: len(out.events) == 1)
        ((name, events),) = out.events
        assert name == "app"
        assert [(e.git_ref, e.commit, e.trigger) for e in events] == [
            ("refs/heads/main", B, Trigger.POLL),
            ("refs/tags/v1", B, Trigger.POLL),
        ]
        await poller.advance_to(400.0)  # nothing moved: polls again, submits nothing
        await until(lambda: len(git.calls) == 3)
        await poller.stop()
        assert len(out.events) == 1
        assert [heads for _, heads in out.recorded] == [
            {"refs/heads/main": A},
            {"refs/heads/main": B, "refs/tags/v1": B},
        ]

    asyncio.run(scenario())


def test_loop_never_runs_more_ls_remotes_than_the_cap() -> None:
    async def scenario() -> None:
        out = Submitted()
        targets = [target(f"t{i}", f"h/o/t{i}") for i in range(50)]
        git = FakeGit({t.repo: {"refs/heads/main": A} for t in targets})
        git.gate.clear()
        poller = Poller(targets, git, out, concurrency=4)
        await poller.advance_to(100.0)
        await until(lambda: git.running == 4)
        await asyncio.sleep(0.05)  # give an over-eager loop the chance to start more
        assert git.running == 4
        git.gate.set()
        await until(lambda: len(git.calls) == 50)
        await poller.stop()
        assert git.max_running == 4
        assert sorted(git.calls) == sorted(t.name for t in targets)

    asyncio.run(scenario())


def test_loop_survives_failures_and_logs_them(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        out = Submitted()
        git = FakeGit({"h/o/bad": {}, "h/o/good": {"refs/heads/main": A}})
        git.failing.add("h/o/bad")
        poller = Poller([target("bad", "h/o/bad"), target("good", "h/o/good")], git, out)
        await poller.advance_to(60.0)
        await until(lambda: len(git.calls) == 2)
        git.heads["h/o/good"] = {"refs/heads/main": B}
        await poller.advance_to(200.0)
        await until(lambda: len(out.events) == 1)
        await poller.stop()
        assert out.events[0][0] == "good"

    with caplog.at_level(logging.WARNING, logger="autobuild.webhooks.poller"):
        asyncio.run(scenario())
    assert "poll of ci/bad failed (RuntimeError): cannot read h/o/bad" in caplog.text


def test_cancelling_the_loop_cancels_the_ls_remotes_in_flight() -> None:
    async def scenario() -> None:
        git = FakeGit({"h/o/a": {}, "h/o/b": {}})
        git.gate.clear()
        poller = Poller([target("a", "h/o/a"), target("b", "h/o/b")], git, Submitted())
        await poller.advance_to(60.0)
        await until(lambda: git.running == 2)
        await poller.stop()
        assert git.cancelled == 2
        assert git.running == 0

    asyncio.run(scenario())


def test_loop_survives_a_failing_target_list(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        out = Submitted()
        git = FakeGit({"github.com/acme/app": {"refs/heads/main": A}})
        poller = Poller([target()], git, out)
        poller.list_error = RuntimeError("store not ready")
        await until(lambda: poller.listed == 1)
        poller.list_error = None
        poller.clock.now = 1.0  # past the rescan: the loop lives and lists again
        await until(lambda: poller.listed == 2)
        poller.clock.now = 62.0
        await until(lambda: len(git.calls) == 1)
        await poller.stop()

    with caplog.at_level(logging.ERROR, logger="autobuild.webhooks.poller"):
        asyncio.run(scenario())
    assert "could not list the AutomatedBuilds to poll" in caplog.text
