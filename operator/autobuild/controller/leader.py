"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's tools/leaderelection does it
(the semantics controller-runtime's managers use, with their defaults):

- a replica takes the Lease when it has no holder, or when its record has not changed for the
  record's ``leaseDurationSeconds`` as measured on this replica's own clock (a record this
  replica sees change restarts that wait: clocks of different machines are never compared);
- a follower asks every retry period, and again just as the Lease it saw expires;
- the leader renews it every retry period; when it could not renew within the renew deadline
  (shorter than the lease duration) it stops leading;
- every write is conditional on the Lease's resourceVersion: a 409 means another replica won
  the race;
- on a clean stop the leader releases it (no holder, ``leaseDurationSeconds`` 1, as client-go's
  ReleaseOnCancel), so a follower takes over within a retry period.

:class:`Elector` is also the write fence (:class:`autobuild.controller.kubeapi.Fence`): it allows
writes only until the last successful renew (counted from when that request was sent) plus the
renew deadline. Another replica can take the Lease only a lease duration after it saw that
renew, so a leader cut off from the API server stops writing before anyone else may start.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import re
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import aiohttp

from autobuild.controller.kubeapi import ApiError, KubeApi, Obj, segment
from autobuild.metrics import Metrics

log = logging.getLogger("autobuild.leader")

LEASE_NAME: Final = "autobuild-operator"
DEFAULT_NAMESPACE: Final = "autobuild-system"
# controller-runtime's defaults (manager.Options LeaseDuration, RenewDeadline, RetryPeriod).
LEASE_DURATION: Final = 15.0
RENEW_DEADLINE: Final = 10.0
RETRY_PERIOD: Final = 2.0
# client-go's JitterFactor: the renew deadline must leave room for a jittered retry.
_JITTER: Final = 1.2
# How long after a Lease's expiry (on this replica's clock) a follower asks for it.
_EXPIRY_MARGIN: Final = 0.05
_DURATION: Final = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds of a duration as the flags take it: ``15s``, ``500ms``, ``1m``, or a bare number
    of seconds."""
    found = _DURATION.match(text.strip())
    if found is None:
        raise ValueError(f"expected a duration such as 15s or 500ms, got {text!r}")
    return float(found.group(1)) * _UNITS[found.group(2) or "s"]


def default_identity(env: Mapping[str, str] = os.environ) -> str:
    """This replica's holder identity: the Pod's name (downward API POD_NAME), else
    ``hostname_pid``."""
    return env.get("POD_NAME") or f"{socket.gethostname()}_{os.getpid()}"


def default_namespace(env: Mapping[str, str] = os.environ) -> str:
    """Where the Lease lives by default: the Pod's namespace (POD_NAMESPACE), else
    autobuild-system."""
    return env.get("POD_NAMESPACE") or DEFAULT_NAMESPACE


@dataclass(frozen=True)
class ElectionConfig:
    """Which Lease, who this replica is, and the timing (seconds)."""

    namespace: str
    identity: str
    lease_duration: float = LEASE_DURATION
    renew_deadline: float = RENEW_DEADLINE
    retry_period: float = RETRY_PERIOD
    name: str = LEASE_NAME

    def __post_init__(self) -> None:
        # client-go's own checks: a leader must give up before its Lease can expire for others.
        if not self.identity:
            raise ValueError("leader election needs a holder identity")
        if self.lease_duration <= self.renew_deadline:
            raise ValueError("the lease duration must be greater than the renew deadline")
        if self.renew_deadline <= _JITTER * self.retry_period:
            raise ValueError(f"the renew deadline must exceed {_JITTER} x the retry period")
        if self.retry_period <= 0:
            raise ValueError("the retry period must be positive")


class LeaseApi(Protocol):
    """The three calls on one Lease; a create or update that lost a race answers None."""

    async def get(self) -> Obj | None:
        """The Lease, None when it does not exist."""

    async def create(self, body: Obj) -> Obj | None:
        """Create it; None when it exists already."""

    async def update(self, body: Obj) -> Obj | None:
        """Replace it (conditional on body's resourceVersion); None on a conflict."""


class KubeLeases:
    """:class:`LeaseApi` on the operator's API client. Its writes pass the fence: they are how
    a replica becomes and stays the leader."""

    def __init__(self, api: KubeApi, namespace: str, name: str) -> None:
        self._api = api
        self._collection = f"/apis/coordination.k8s.io/v1/namespaces/{segment(namespace)}/leases"
        self._path = f"{self._collection}/{segment(name)}"

    async def get(self) -> Obj | None:
        """GET the Lease; None on 404."""
        try:
            return await self._api.request("GET", self._path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def create(self, body: Obj) -> Obj | None:
        """POST the Lease; None on 409."""
        return await self._write("POST", self._collection, body)

    async def update(self, body: Obj) -> Obj | None:
        """PUT the Lease; None on 409 (its resourceVersion changed)."""
        return await self._write("PUT", self._path, body)

    async def _write(self, method: str, path: str, body: Obj) -> Obj | None:
        try:
            return await self._api.request(method, path, body=body, fenced=False)
        except ApiError as exc:
            if exc.status == 409:
                return None
            raise


def micro_time(moment: datetime) -> str:
    """A metav1.MicroTime (RFC 3339 with microseconds, UTC)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _wall() -> datetime:
    return datetime.now(UTC)


class Elector:
    """Runs the election for this replica, and fences its writes (see the module docstring).
    ``clock`` is monotonic seconds and ``wall`` the time written into the Lease; both, and
    ``sleep``, are the tests' to replace."""

    def __init__(
        self,
        leases: LeaseApi,
        config: ElectionConfig,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = _wall,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._leases = leases
        self.config = config
        self._metrics = metrics
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        # The Lease as last seen, and when (this replica's clock) its version was first seen.
        self._lease: Obj | None = None
        self._observed_at = 0.0
        # When the Lease as last seen expires unless it changes (this replica's clock).
        self._expires = -math.inf
        # Writes are allowed until then (this replica's clock): last renew sent + renew deadline.
        self._valid_until = -math.inf
        self.leading = False

    # The fence ----------------------------------------------------------------------------
    def may_write(self) -> bool:
        """True while this replica leads and its last renew is within the renew deadline."""
        return self.leading and self._holds()

    def _holds(self) -> bool:
        """The Lease is this replica's for sure: renewed less than a renew deadline ago."""
        return self._clock() < self._valid_until

    @property
    def holder(self) -> str:
        """The holder identity of the Lease as last seen ("" for none)."""
        spec = (self._lease or {}).get("spec") or {}
        return str(spec.get("holderIdentity") or "")

    # One round ----------------------------------------------------------------------------
    async def try_acquire_or_renew(self) -> bool:
        """One attempt to take or renew the Lease; True when this replica holds it now."""
        sent = self._clock()
        lease = await self._leases.get()
        if lease is None:
            return self._took(await self._leases.create(self._record(None)), sent)
        version = (lease.get("metadata") or {}).get("resourceVersion")
        if version != ((self._lease or {}).get("metadata") or {}).get("resourceVersion"):
            self._observed_at = sent  # a change seen: its lease duration counts from now
        self._lease = lease
        spec = lease.get("spec") or {}
        holder = self.holder
        seconds = float(spec.get("leaseDurationSeconds") or self.config.lease_duration)
        self._expires = self._observed_at + seconds
        if holder and holder != self.config.identity and self._expires > sent:
            return False
        return self._took(await self._leases.update(self._record(lease)), sent)

    def _record(self, lease: Obj | None) -> Obj:
        """The Lease this replica writes: renewed when it holds it, else taken over (a new
        acquireTime, one more transition)."""
        now = micro_time(self._wall())
        spec: dict[str, Any] = dict((lease or {}).get("spec") or {})
        mine = lease is not None and spec.get("holderIdentity") == self.config.identity
        if lease is None:
            spec.update(acquireTime=now, leaseTransitions=0)
        elif not mine:  # a takeover
            spec.update(
                acquireTime=now, leaseTransitions=int(spec.get("leaseTransitions") or 0) + 1
            )
        spec.update(
            holderIdentity=self.config.identity,
            leaseDurationSeconds=math.ceil(self.config.lease_duration),
            renewTime=now,
        )
        meta = (lease or {}).get("metadata") or {}
        metadata = {"name": self.config.name, "namespace": self.config.namespace}
        if meta.get("resourceVersion"):
            metadata["resourceVersion"] = meta["resourceVersion"]
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": spec,
        }

    def _took(self, written: Obj | None, sent: float) -> bool:
        if written is None:  # another replica wrote it in between
            return False
        self._lease = written
        self._observed_at = sent
        self._valid_until = sent + self.config.renew_deadline
        return True

    async def _attempt(self) -> bool:
        """One round, bounded: while leading by what is left of the renew deadline (a request
        that hangs must not keep this replica leading), else by the renew deadline."""
        budget = self.config.renew_deadline
        if self.leading:
            budget = self._valid_until - self._clock()
        try:
            async with asyncio.timeout(max(budget, 0.0)):
                return await self.try_acquire_or_renew()
        except (ApiError, OSError, TimeoutError, ValueError, aiohttp.ClientError) as exc:
            log.warning(
                "lease %s/%s: %s", self.config.namespace, self.config.name, exc or "timeout"
            )
            return False

    # The loop -----------------------------------------------------------------------------
    async def run(
        self, lead: Callable[[], Awaitable[None]], follow: Callable[[], Awaitable[None]]
    ) -> None:
        """Run ``follow`` until this replica holds the Lease, ``lead`` while it does, and again,
        until cancelled; then stop them and release the Lease."""
        try:
            while True:
                following = asyncio.ensure_future(follow())
                try:
                    await self._acquire()
                finally:
                    following.cancel()
                    await asyncio.gather(following, return_exceptions=True)
                await self._lead(lead)
        finally:
            await self._release()

    async def _acquire(self) -> None:
        while not await self._attempt():
            # Jittered within the period (client-go jitters beyond it): a released Lease is
            # taken within one retry period, and replicas still do not ask in lockstep.
            spread = 1 - 0.2 * random.random()  # noqa: S311 (spreading requests, not cryptography)
            wait = self.config.retry_period * spread
            # And asked again just as it expires (a margin for the loop's timer resolution),
            # not up to a retry period later: a dead leader's Lease is taken a lease duration
            # after its last renew was seen, which itself is at most a retry period late.
            expires = self._expires - self._clock()
            await self._sleep(min(wait, expires + _EXPIRY_MARGIN) if expires > 0 else wait)

    async def _lead(self, lead: Callable[[], Awaitable[None]]) -> None:
        self._set_leading(True)
        work = asyncio.ensure_future(lead())
        renewing = asyncio.ensure_future(self._renew())
        try:
            done, _ = await asyncio.wait({work, renewing}, return_when=asyncio.FIRST_COMPLETED)
            if work in done:
                work.result()  # ``lead`` does not end on its own: an error is the operator's
        finally:
            # The fence closes first: nothing ``lead`` still runs while it unwinds writes.
            self._set_leading(False)
            for task in (work, renewing):
                task.cancel()
            await asyncio.gather(work, renewing, return_exceptions=True)

    async def _renew(self) -> None:
        """Renew every retry period; return once it could not within the renew deadline, or
        another replica holds the Lease."""
        while True:
            await self._sleep(self.config.retry_period)
            while not await self._attempt():
                if self.holder not in ("", self.config.identity) or not self._holds():
                    return
                await self._sleep(min(self.config.retry_period, self._time_left()))

    def _time_left(self) -> float:
        return max(self._valid_until - self._clock(), 0.0)

    def _set_leading(self, leading: bool) -> None:
        if leading == self.leading:
            return
        self.leading = leading
        self._metrics.record_leader(leading)
        where = f"{self.config.namespace}/{self.config.name}"
        if leading:
            log.info("started leading: lease %s, identity %s", where, self.config.identity)
        else:
            log.warning("stopped leading: lease %s, identity %s", where, self.config.identity)

    async def _release(self) -> None:
        """Give the Lease up when this replica held it when last seen (client-go's
        ReleaseOnCancel). The update is conditional on that version: should another replica
        have taken it since, the release is a 409 and changes nothing."""
        if self._lease is None or self.holder != self.config.identity:
            return
        spec = dict(self._lease.get("spec") or {})
        now = micro_time(self._wall())
        spec.update(holderIdentity="", leaseDurationSeconds=1, acquireTime=now, renewTime=now)
        try:
            async with asyncio.timeout(self.config.retry_period):
                released = await self._leases.update({**self._lease, "spec": spec})
        except (ApiError, OSError, TimeoutError, aiohttp.ClientError) as exc:
            log.warning("could not release the lease: %s", exc or "timeout")
            return
        if released is not None:
            self._lease = released
            self._valid_until = -math.inf
            log.info("released lease %s/%s", self.config.namespace, self.config.name)


__all__ = [
    "DEFAULT_NAMESPACE",
    "LEASE_DURATION",
    "LEASE_NAME",
    "RENEW_DEADLINE",
    "RETRY_PERIOD",
    "ElectionConfig",
    "Elector",
    "KubeLeases",
    "LeaseApi",
    "default_identity",
    "default_namespace",
    "micro_time",
    "parse_duration",
]
