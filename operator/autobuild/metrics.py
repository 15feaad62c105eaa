"""The operator's Prometheus metrics (the official prometheus-client), served on ``GET /metrics``
of the webhook port.

Two kinds, as Prometheus expects them:

- things that happen are counters and histograms, updated where they happen: build phase
  transitions, build durations, webhook deliveries, reconciles and their errors;
- things that are are gauges read from the operator's memory at scrape time (a collector, the
  way kube-state-metrics works): builds by phase, work-queue depth, informer health. A gauge
  computed from the store cannot drift from what the operator knows, and costs nothing between
  scrapes.

Every :class:`Metrics` has its own :class:`~prometheus_client.CollectorRegistry` instead of the
process-wide default: a registry refuses a second metric of the same name, so the default would
allow one controller per process, and tests run several. The operator process has one
controller, so one registry is what it serves (without the client's process and platform
collectors, which describe the Python runtime rather than the builds).
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import ValidationError

from autobuild.api.models import BuildPhase, BuildRecord
from autobuild.planning.status import is_finished

K = TypeVar("K")

# Kaniko builds take from seconds (a scratch image) to an hour or more (a big toolchain).
BUILD_DURATION_BUCKETS: Final = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
# The webhook routes counted, by the path segment after /hooks/ (bounded: never a raw path).
WEBHOOK_SOURCES: Final = frozenset({"github", "bitbucket", "gitlab", "trigger"})
# What one reconcile ended with (controller-runtime's controller_runtime_reconcile_total).
RECONCILE_RESULTS: Final = ("success", "error", "requeue", "requeue_after")
# Why the store left a Job or Pod out (controller/store.py UNOWNED, MALFORMED).
SKIP_REASONS: Final = ("unowned", "malformed")
_FINISHED_PHASES: Final = tuple(phase for phase in BuildPhase if is_finished(phase))


@dataclass(frozen=True)
class Transition:
    """A build entered ``phase``; ``duration_seconds`` is set when that phase is a finished one
    and the build had started (a build cancelled while queued never ran)."""

    phase: BuildPhase
    duration_seconds: float | None = None


def build_transitions(
    before: Sequence[BuildRecord], after: Sequence[BuildRecord]
) -> list[Transition]:
    """The phase changes between two recorded statuses: a new build counts as entering its
    phase; a build that left the history (or did not change) counts nothing."""
    old = {build.id: build.phase for build in before}
    changes = []
    for build in after:
        previous = old.get(build.id)
        if previous == build.phase:
            continue
        duration = None
        if is_finished(build.phase) and (previous is None or not is_finished(previous)):
            duration = None if build.duration_seconds is None else float(build.duration_seconds)
        changes.append(Transition(build.phase, duration))
    return changes


def recorded_builds(status: Mapping[str, Any] | None) -> list[BuildRecord]:
    """The build records of a status as written (one that does not parse is left out)."""
    records = []
    for build in (status or {}).get("builds") or ():
        try:
            records.append(BuildRecord.model_validate(build))
        except ValidationError:
            continue
    return records


def count_phases(bodies: Iterable[Mapping[str, Any]]) -> dict[BuildPhase, int]:
    """Builds recorded in these AutomatedBuilds' status, by phase (every phase, 0 included;
    an unknown phase written by something else is not counted)."""
    seen: Tally[str] = Tally(
        str(build.get("phase"))
        for body in bodies
        for build in (body.get("status") or {}).get("builds") or ()
        if isinstance(build, Mapping)
    )
    return {phase: seen[phase.value] for phase in BuildPhase}


def webhook_source(path: str) -> str | None:
    """The ``provider`` label of a request path: ``github`` for ``/hooks/github``, ``trigger``
    for ``/hooks/trigger/...``; None for anything else (not a delivery)."""
    parts = path.split("/", 3)
    if len(parts) >= 3 and parts[0] == "" and parts[1] == "hooks" and parts[2] in WEBHOOK_SOURCES:
        return parts[2]
    return None


def reconcile_result(again: float | None) -> str:
    """The ``result`` label of a reconcile that returned ``again`` (seconds until the next
    look, or None)."""
    if again is None:
        return "success"
    return "requeue" if again <= 0 else "requeue_after"


@dataclass(frozen=True)
class StateSources:
    """Where the scrape-time gauges read the operator's state (cheap, non-blocking calls made
    on the event loop that serves /metrics, so they see a consistent store)."""

    automated_builds: Callable[[], Iterable[Mapping[str, Any]]]
    queue_depth: Callable[[], int]
    informers: Callable[[], Iterable[tuple[str, bool]]]


class _StateCollector(Collector):
    """Gauges computed from the operator's memory when Prometheus scrapes."""

    def __init__(self, sources: StateSources) -> None:
        self._sources = sources

    def describe(self) -> Iterable[Metric]:
        # Names only: registering must not read state that may not exist yet.
        return self._families()

    def collect(self) -> Iterable[Metric]:
        builds, depth, informers = self._families()
        for phase, count in count_phases(self._sources.automated_builds()).items():
            builds.add_metric([phase.value], count)
        depth.add_metric([], self._sources.queue_depth())
        for name, healthy in self._sources.informers():
            informers.add_metric([name], 1.0 if healthy else 0.0)
        return (builds, depth, informers)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "autobuild_builds",
                "Builds recorded in the status of the AutomatedBuilds, by phase "
                "(finished ones as long as the history limit keeps them).",
                labels=["phase"],
            ),
            GaugeMetricFamily(
                "autobuild_workqueue_depth",
                "AutomatedBuilds waiting in the work queue for a reconcile.",
            ),
            GaugeMetricFamily(
                "autobuild_informer_healthy",
                "1 when the list and every watch of this resource work, else 0 (e.g. RBAC "
                "refuses the watch).",
                labels=["resource"],
            ),
        )


class Metrics:
    """The operator's metrics in a registry of their own (see the module docstring)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.build_transitions = Counter(
            "autobuild_build_transitions",
            "Builds that entered a phase (as recorded in status); a new build counts for its "
            "first phase.",
            ["phase"],
            registry=self.registry,
        )
        self.build_duration = Histogram(
            "autobuild_build_duration_seconds",
            "Run time of finished builds (start to completion of the Kaniko Job), observed "
            "once per build when it finishes.",
            ["phase"],
            buckets=BUILD_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.webhook_deliveries = Counter(
            "autobuild_webhook_deliveries",
            "Requests to the webhook routes (/hooks/<provider>, /hooks/trigger/...), by "
            "provider and HTTP status code of the answer.",
            ["provider", "code"],
            registry=self.registry,
        )
        self.github_calls = Counter(
            "autobuild_github_calls",
            "Calls to GitHub's API for webhooks and commit statuses, by kind (hook, unhook, "
            "refresh, status) and outcome (ok, or GitHub's reason such as RateLimited).",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.reconciles = Counter(
            "autobuild_reconcile",
            "Reconciles of AutomatedBuilds, by result (success, error, requeue, requeue_after).",
            ["result"],
            registry=self.registry,
        )
        self.reconcile_errors = Counter(
            "autobuild_reconcile_errors",
            "Reconciles that failed with an error (retried with backoff).",
            registry=self.registry,
        )
        self.reconcile_duration = Histogram(
            "autobuild_reconcile_duration_seconds",
            "Time one reconcile took (observe, decide, act).",
            registry=self.registry,
        )
        self.skipped_records = Counter(
            "autobuild_skipped_records",
            "Jobs and Pods with the autobuild.dev/uid label that the operator ignored, by "
            "resource and reason: unowned (no controller ownerReference chain to an "
            "AutomatedBuild of their namespace) or malformed (does not parse as a build); "
            "per watch event or list item.",
            ["resource", "reason"],
            registry=self.registry,
        )
        self.leader = Gauge(
            "autobuild_leader",
            "1 while this replica is the leader (the one that reconciles and writes), else 0; "
            "1 without leader election.",
            registry=self.registry,
        )
        self.leader_transitions = Counter(
            "autobuild_leader_transitions",
            "Times this replica became the leader.",
            registry=self.registry,
        )
        # Known label values start at 0, so rate() and absent() work before the first event.
        for phase in BuildPhase:
            self.build_transitions.labels(phase.value)
        for phase in _FINISHED_PHASES:
            self.build_duration.labels(phase.value)
        for result in RECONCILE_RESULTS:
            self.reconciles.labels(result)
        for resource in ("jobs", "pods"):
            for reason in SKIP_REASONS:
                self.skipped_records.labels(resource, reason)

    def watch(self, sources: StateSources) -> None:
        """Serve the scrape-time gauges from ``sources`` (once per registry)."""
        self.registry.register(_StateCollector(sources))

    def record_status(
        self, before: Mapping[str, Any] | None, after: Mapping[str, Any]
    ) -> list[Transition]:
        """Count the build transitions from status ``before`` to the status ``after`` that was
        just written. Call it only once the write succeeded: a write that lost a race is
        decided again and must not count twice; and an operator restart counts nothing again,
        since the status on the server already holds what happened."""
        changes = build_transitions(recorded_builds(before), recorded_builds(after))
        for change in changes:
            self.build_transitions.labels(change.phase.value).inc()
            if change.duration_seconds is not None:
                self.build_duration.labels(change.phase.value).observe(change.duration_seconds)
        return changes

    def record_delivery(self, provider: str, code: int) -> None:
        """Count one answered request to a webhook route."""
        self.webhook_deliveries.labels(provider, str(code)).inc()

    def record_skipped(self, resource: str, reason: str) -> None:
        """Count one Job or Pod the store left out (``jobs`` or ``pods``; ``unowned`` or
        ``malformed``)."""
        self.skipped_records.labels(resource, reason).inc()

    def record_leader(self, leading: bool) -> None:
        """This replica started (True) or stopped (False) leading."""
        self.leader.set(1 if leading else 0)
        if leading:
            self.leader_transitions.inc()

    def record_github_call(self, kind: str, ok: bool, reason: str) -> None:
        """Count one finished GitHub call (its reason when it failed)."""
        self.github_calls.labels(kind, "ok" if ok else reason or "Error").inc()

    def instrument(
        self, process: Callable[[K], Awaitable[float | None]]
    ) -> Callable[[K], Awaitable[float | None]]:
        """``process`` (one reconcile) counted by result and timed; errors still propagate to
        the work queue, which retries them."""

        async def measured(key: K) -> float | None:
            started = time.monotonic()
            try:
                again = await process(key)
            except Exception:
                self.reconcile_duration.observe(time.monotonic() - started)
                self.reconciles.labels("error").inc()
                self.reconcile_errors.inc()
                raise
            self.reconcile_duration.observe(time.monotonic() - started)
            self.reconciles.labels(reconcile_result(again)).inc()
            return again

        return measured


__all__ = [
    "BUILD_DURATION_BUCKETS",
    "RECONCILE_RESULTS",
    "SKIP_REASONS",
    "WEBHOOK_SOURCES",
    "Metrics",
    "StateSources",
    "Transition",
    "build_transitions",
    "count_phases",
    "reconcile_result",
    "recorded_builds",
    "webhook_source",
]
