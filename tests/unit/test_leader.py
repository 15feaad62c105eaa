"""The Lease election state machine (controller/leader.py) on a fake clock and a fake Lease API
that behaves as the API server does (resourceVersion, 409 on a stale one)."""

from __future__ import annotations

import asyncio
import copy
import functools
import heapq
import re
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from kubernetes import client

from autobuild.controller.kubeapi import KubeApi, NotLeaderError, Obj
from autobuild.controller.leader import (
    ElectionConfig,
    Elector,
    KubeLeases,
    default_identity,
    default_namespace,
    micro_time,
    parse_duration,
)
from autobuild.controller.reconcile import Controller
from autobuild.metrics import Metrics
from autobuild.settings import BuildSettings

MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


class Time:
    """One virtual clock for every replica: a sleep waits until :func:`until` moves the clock
    to its end (the earliest sleeper first), so concurrent sleeps overlap as real ones do."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.epoch = datetime(2026, 1, 1, tzinfo=UTC)
        self.sleepers: list[tuple[float, int, asyncio.Future[None]]] = []

    def clock(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return self.epoch + timedelta(seconds=self.now)

    async def sleep(self, seconds: float) -> None:
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self.sleepers, (self.now + seconds, id(woken), woken))
        await woken

    def advance(self) -> None:
        """Wake the earliest sleeper, at its time."""
        while self.sleepers:
            when, _, woken = heapq.heappop(self.sleepers)
            if not woken.done():
                self.now = max(self.now, when)
                woken.set_result(None)
                return


class Server:
    """The API server's side of one Lease."""

    def __init__(self) -> None:
        self.lease: Obj | None = None
        self.version = 0
        self.writes: list[Obj] = []

    def store(self, body: Obj) -> Obj:
        self.version += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.lease = stored
        self.writes.append(stored)
        return copy.deepcopy(stored)


class Leases:
    """One replica's view of the Lease API; ``cut`` makes every call fail as a lost network."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.cut = False

    def _reach(self) -> None:
        if self.cut:
            raise OSError("connection lost")

    async def get(self) -> Obj | None:
        self._reach()
        return copy.deepcopy(self.server.lease)

    async def create(self, body: Obj) -> Obj | None:
        self._reach()
        if self.server.lease is not None:
            return None
        return self.server.store(body)

    async def update(self, body: Obj) -> Obj | None:
        self._reach()
        current = self.server.lease
        assert current is not None
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            return None
        return self.server.store(body)


def elector(
    server: Server, time: Time, identity: str, **timing: float
) -> tuple[Elector, Leases, Metrics]:
    leases = Leases(server)
    metrics = Metrics()
    config = ElectionConfig(namespace="autobuild-system", identity=identity, **timing)
    made = Elector(leases, config, metrics, clock=time.clock, wall=time.wall, sleep=time.sleep)
    return made, leases, metrics


def replicas() -> tuple[Server, Time, Elector, Elector]:
    """One Lease, one clock, and two replicas a and b."""
    server, time = Server(), Time()
    return server, time, elector(server, time, "a")[0], elector(server, time, "b")[0]


def spec(server: Server) -> dict[str, Any]:
    assert server.lease is not None
    return dict(server.lease["spec"])


async def idle() -> None:
    """A part of a replica's work that runs until it is cancelled."""
    await asyncio.Event().wait()


def synchronous(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """The test, run on an event loop of its own."""

    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())

    return run


async def until(check: Callable[[], bool], time: Time | None = None, steps: int = 5000) -> None:
    """Run the loop until ``check()``; when everything waits, move the virtual clock on."""
    for _ in range(steps):
        for _ in range(20):  # let every task that can run, run
            if check():
                return
            await asyncio.sleep(0)
        if time is not None:
            time.advance()
    raise AssertionError("never happened")


@synchronous
async def test_the_first_replica_creates_the_lease() -> None:
    server, time = Server(), Time()
    a, _, _ = elector(server, time, "a")
    assert await a.try_acquire_or_renew()
    created = spec(server)
    assert created["holderIdentity"] == "a"
    assert created["leaseTransitions"] == 0
    assert created["leaseDurationSeconds"] == 15
    assert created["acquireTime"] == created["renewTime"] == micro_time(time.wall())
    assert MICRO_TIME.match(created["renewTime"])
    assert server.lease is not None
    assert server.lease["metadata"] == {
        "name": "autobuild-operator",
        "namespace": "autobuild-system",
        "resourceVersion": "1",
    }
    time.now += 2
    assert await a.try_acquire_or_renew()  # a renew keeps acquireTime and the transitions
    renewed = spec(server)
    assert renewed["acquireTime"] == created["acquireTime"]
    assert renewed["renewTime"] == micro_time(time.wall())
    assert renewed["leaseTransitions"] == 0


@synchronous
async def test_a_held_lease_is_taken_only_a_lease_duration_after_it_last_changed() -> None:
    server, time, a, b = replicas()
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    assert b.holder == "a"
    time.now += 10
    assert await a.try_acquire_or_renew()  # a renew: b's wait starts again when it sees it
    time.now += 5
    assert not await b.try_acquire_or_renew()
    time.now += 14.9
    assert not await b.try_acquire_or_renew()
    time.now += 0.2  # 15 s since b saw the renew
    assert await b.try_acquire_or_renew()
    taken = spec(server)
    assert taken["holderIdentity"] == "b"
    assert taken["leaseTransitions"] == 1
    assert taken["acquireTime"] == micro_time(time.wall())
    # a sees that it lost: the holder is b, within its lease duration.
    assert not await a.try_acquire_or_renew()
    assert a.holder == "b"


@synchronous
async def test_a_released_lease_is_taken_at_once() -> None:
    server, _, a, b = replicas()
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    await a._release()
    released = spec(server)
    assert released["holderIdentity"] == ""
    assert released["leaseDurationSeconds"] == 1
    assert await b.try_acquire_or_renew()
    assert spec(server)["leaseTransitions"] == 1


@synchronous
async def test_two_replicas_racing_for_one_version_one_wins() -> None:
    server, time = Server(), Time()
    a, a_leases, _ = elector(server, time, "a")
    b, _, _ = elector(server, time, "b")
    assert await a.try_acquire_or_renew()
    await a._release()
    stale = await a_leases.get()
    assert await b.try_acquire_or_renew()
    assert stale is not None
    # a's write conditional on the version it read before b's: the server says 409.
    assert await a_leases.update(a._record(stale)) is None
    assert spec(server)["holderIdentity"] == "b"


@synchronous
async def test_the_leader_leads_renews_and_releases_on_cancel() -> None:
    server, time = Server(), Time()
    a, _, metrics = elector(server, time, "a")
    leading: list[bool] = []

    async def lead() -> None:
        leading.append(True)
        try:
            await asyncio.Event().wait()
        finally:
            leading.append(False)

    running = asyncio.ensure_future(a.run(lead, idle))
    await until(lambda: a.may_write() and time.now > 1030, time)
    assert leading == [True]
    assert metrics.leader._value.get() == 1
    assert metrics.leader_transitions._value.get() == 1
    renewals = len(server.writes)
    assert renewals >= 15  # one every 2 s
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert leading == [True, False]
    assert not a.may_write()
    assert metrics.leader._value.get() == 0
    assert spec(server)["holderIdentity"] == ""


@synchronous
async def test_a_leader_cut_off_stops_writing_before_another_can_take_over() -> None:
    server, time = Server(), Time()
    a, a_leases, _ = elector(server, time, "a")
    b, _, _ = elector(server, time, "b")
    timeline: list[tuple[float, str]] = []

    def lead(who: str) -> Callable[[], Any]:
        async def leading() -> None:
            timeline.append((time.now, f"{who} leads"))
            try:
                await asyncio.Event().wait()
            finally:
                timeline.append((time.now, f"{who} stops"))

        return leading

    def follow(who: str) -> Callable[[], Any]:
        async def following() -> None:
            timeline.append((time.now, f"{who} follows"))
            await asyncio.Event().wait()

        return following

    run_a = asyncio.ensure_future(a.run(lead("a"), follow("a")))
    await until(lambda: a.may_write(), time)
    run_b = asyncio.ensure_future(b.run(lead("b"), follow("b")))
    await until(lambda: time.now > 1010, time)
    assert not b.leading
    a_leases.cut = True
    cut = time.now
    last_renew = max(s["metadata"]["resourceVersion"] for s in server.writes)
    await until(lambda: any(what == "b leads" for _, what in timeline), time)
    (a_stops,) = [t for t, what in timeline if what == "a stops"]
    (b_leads,) = [t for t, what in timeline if what == "b leads"]
    assert a_stops <= cut + 10  # the renew deadline
    assert b_leads >= a_stops + 5  # lease duration - renew deadline: the safety margin
    assert not a.may_write()
    assert spec(server)["holderIdentity"] == "b"
    assert last_renew
    # a follows again as soon as it stopped leading (it refreshes its cache meanwhile).
    events = [what for _, what in timeline]
    assert events.index("a stops") < events.index("a follows") < events.index("b leads")
    # Reconnected, a stays a follower: b holds the Lease.
    a_leases.cut = False
    await until(lambda: time.now > b_leads + 30, time)
    assert b.may_write()
    assert not a.leading
    for task in (run_a, run_b):
        task.cancel()
    await asyncio.gather(run_a, run_b, return_exceptions=True)


@synchronous
async def test_the_fence_closes_at_the_renew_deadline_whatever_the_loop_does() -> None:
    server, time = Server(), Time()
    a, _, _ = elector(server, time, "a")
    assert await a.try_acquire_or_renew()
    a.leading = True  # what run() sets
    time.now += 9.9
    assert a.may_write()
    time.now += 0.2
    assert not a.may_write()


@synchronous
async def test_a_renew_that_hangs_ends_leadership_within_the_renew_deadline() -> None:
    """On the real clock with short timings: a request that never answers must not keep the
    replica leading (or writing) past the renew deadline."""
    server = Server()
    hung = asyncio.Event()

    class Hanging(Leases):
        async def get(self) -> Obj | None:
            if self.cut:
                await hung.wait()
            return await super().get()

    leases = Hanging(server)
    config = ElectionConfig("ns", "a", lease_duration=0.6, renew_deadline=0.4, retry_period=0.1)
    a = Elector(leases, config, Metrics())
    stopped = asyncio.Event()

    async def lead() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    running = asyncio.ensure_future(a.run(lead, idle))
    loop = asyncio.get_running_loop()
    while not a.may_write():
        await asyncio.sleep(0.01)
    leases.cut = True
    cut = loop.time()
    await asyncio.wait_for(stopped.wait(), 2)
    assert loop.time() - cut < 0.4 + 0.15
    assert not a.may_write()
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15s", 15.0), ("500ms", 0.5), ("1m", 60.0), ("2", 2.0), ("1.5s", 1.5), ("1h", 3600.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "-1s", "15 seconds", "1d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    "timing",
    [
        {"lease_duration": 10, "renew_deadline": 10},
        {"renew_deadline": 2, "retry_period": 2},
        {"retry_period": 0},
    ],
)
def test_timings_that_could_overlap_two_leaders_are_refused(timing: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        ElectionConfig("ns", "a", **timing)


def test_identity_and_namespace_come_from_the_downward_api() -> None:
    assert default_identity({"POD_NAME": "autobuild-7c9-x2"}) == "autobuild-7c9-x2"
    assert re.match(r"^.+_\d+$", default_identity({}))
    assert default_namespace({"POD_NAMESPACE": "ops"}) == "ops"
    assert default_namespace({}) == "autobuild-system"


class Closed:
    """A fence that allows nothing (a replica that is not the leader)."""

    def may_write(self) -> bool:
        return False


@synchronous
async def test_writes_stop_at_the_edge_and_only_the_leases_own_pass() -> None:
    """The one check: with the fence closed a write never leaves the process (reads and the
    Lease's own writes do), and an effect of a decision is not run."""
    seen: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path}")
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    api = KubeApi(client.Configuration(host=f"http://127.0.0.1:{port}"))
    try:
        api.fence = Closed()
        with pytest.raises(NotLeaderError):
            await api.request("POST", "/api/v1/namespaces/ci/events", body={})
        with pytest.raises(NotLeaderError):
            await api.request("PATCH", "/apis/batch/v1/namespaces/ci/jobs/j", body={})
        await api.request("GET", "/api/v1/namespaces/ci/secrets/s")
        leases = KubeLeases(api, "ops", "autobuild-operator")
        await leases.update({"metadata": {"name": "autobuild-operator"}})
        assert seen == [
            "GET /api/v1/namespaces/ci/secrets/s",
            "PUT /apis/coordination.k8s.io/v1/namespaces/ops/leases/autobuild-operator",
        ]
        controller = Controller(api, BuildSettings())
        ran: list[str] = []

        async def effect() -> None:
            ran.append("effect")

        controller.executors._start(("ci", "app"), "hook", effect)
        await asyncio.sleep(0.05)
        assert ran == []
        api.fence = None  # no leader election: every write goes
        controller.executors._start(("ci", "app"), "hook", effect)
        await asyncio.sleep(0.05)
        assert ran == ["effect"]
        await api.request("POST", "/api/v1/namespaces/ci/events", body={})
        assert seen[-1] == "POST /api/v1/namespaces/ci/events"
    finally:
        await api.close()
        await runner.cleanup()


@synchronous
async def test_a_follower_asks_again_just_as_a_dead_leaders_lease_expires() -> None:
    """Not up to a retry period later: the takeover comes a lease duration after the follower
    first saw the last renew."""
    server, time, a, b = replicas()
    assert await a.try_acquire_or_renew()  # and then a dies: no renew any more
    seen = time.now
    following = asyncio.ensure_future(b.run(idle, idle))
    await until(lambda: b.leading, time)
    assert seen + 15 < time.now <= seen + 15.1
    assert spec(server)["holderIdentity"] == "b"
    following.cancel()
    await asyncio.gather(following, return_exceptions=True)
