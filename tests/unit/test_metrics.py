"""The operator's Prometheus metrics (autobuild.metrics): what each update counts, read back from
the metrics' own registry."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from autobuild.api.models import BuildPhase
from autobuild.controller.queue import WorkQueue
from autobuild.metrics import (
    Metrics,
    StateSources,
    build_transitions,
    count_phases,
    recorded_builds,
    webhook_source,
)


def record(build_id: str, phase: str, duration: int | None = None) -> dict[str, Any]:
    """A build record as status holds it (camelCase JSON)."""
    built: dict[str, Any] = {
        "id": build_id,
        "rule": 0,
        "sourceType": "Branch",
        "sourceRef": "main",
        "commit": "0" * 40,
        "trigger": "Push",
        "tags": ["latest"],
        "phase": phase,
    }
    if duration is not None:
        built["startTime"] = "2026-11-29T09:00:00Z"
        built["completionTime"] = "2026-11-29T09:00:00Z"
        built["durationSeconds"] = duration
    return built


def status(*builds: dict[str, Any]) -> dict[str, Any]:
    return {"observedGeneration": 1, "latestBuild": None, "builds": list(builds)}


def value(metrics: Metrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    assert found is not None, f"no sample {name}{labels}"
    return found


def transitions(metrics: Metrics) -> dict[str, float]:
    return {
        phase.value: value(metrics, "autobuild_build_transitions_total", phase=phase.value)
        for phase in BuildPhase
    }


def test_a_new_build_counts_its_first_phase_and_each_change_after() -> None:
    metrics = Metrics()
    metrics.record_status(None, status(record("b1", "Pending")))
    metrics.record_status(status(record("b1", "Pending")), status(record("b1", "Running")))
    # The same status written again (e.g. a condition changed) counts nothing.
    metrics.record_status(status(record("b1", "Running")), status(record("b1", "Running")))
    counted = transitions(metrics)
    assert counted == {**dict.fromkeys(counted, 0.0), "Pending": 1.0, "Running": 1.0}
    assert value(metrics, "autobuild_build_duration_seconds_count", phase="Succeeded") == 0


def test_a_finished_build_is_timed_once() -> None:
    metrics = Metrics()
    running = status(record("b1", "Running"), record("b0", "Succeeded", 700))
    done = status(record("b1", "Succeeded", 42), record("b0", "Succeeded", 700))
    changes = metrics.record_status(running, done)
    assert [(c.phase, c.duration_seconds) for c in changes] == [(BuildPhase.SUCCEEDED, 42.0)]
    metrics.record_status(done, done)
    assert value(metrics, "autobuild_build_duration_seconds_count", phase="Succeeded") == 1
    assert value(metrics, "autobuild_build_duration_seconds_sum", phase="Succeeded") == 42
    assert value(metrics, "autobuild_build_duration_seconds_bucket", phase="Succeeded", le="60.0")
    assert not value(
        metrics, "autobuild_build_duration_seconds_bucket", phase="Succeeded", le="30.0"
    )


def test_what_has_no_duration_or_changes_between_finished_phases_is_not_timed() -> None:
    queued = [*recorded_builds(status(record("q", "Queued"), record("s", "Succeeded", 30)))]
    after = recorded_builds(status(record("q", "Cancelled"), record("s", "Failed", 30)))
    changes = build_transitions(queued, after)
    # A build cancelled while queued never ran; one already finished was timed when it finished.
    assert [(c.phase, c.duration_seconds) for c in changes] == [
        (BuildPhase.CANCELLED, None),
        (BuildPhase.FAILED, None),
    ]


def test_a_build_that_leaves_the_history_counts_nothing() -> None:
    assert build_transitions(recorded_builds(status(record("old", "Succeeded", 5))), []) == []


def test_unreadable_records_are_left_out() -> None:
    assert recorded_builds({"builds": [{"id": "x"}, record("b", "Failed")]})[0].id == "b"
    assert recorded_builds(None) == recorded_builds({}) == []


def test_builds_by_phase_counts_every_phase_and_ignores_unknown_ones() -> None:
    bodies = [
        {"status": status(record("a", "Running"), record("b", "Succeeded"))},
        {"status": status(record("c", "Running"), {"phase": "Exploded"})},
        {"metadata": {"name": "new"}},  # no status yet
    ]
    counts = count_phases(bodies)
    assert counts == {**dict.fromkeys(BuildPhase, 0), "Running": 2, "Succeeded": 1}


@pytest.mark.parametrize(
    ("path", "source"),
    [
        ("/hooks/github", "github"),
        ("/hooks/bitbucket", "bitbucket"),
        ("/hooks/gitlab", "gitlab"),
        ("/hooks/trigger/ns/name/token", "trigger"),
        ("/hooks/trigger/ns/name/token/", "trigger"),
        ("/hooks/gitea", None),
        ("/hooks", None),
        ("/hooksgithub", None),
        ("/metrics", None),
        ("/healthz", None),
        ("hooks/github", None),
    ],
)
def test_webhook_source_is_a_bounded_label(path: str, source: str | None) -> None:
    assert webhook_source(path) == source


def test_state_gauges_are_read_at_scrape_time() -> None:
    bodies: list[dict[str, Any]] = []
    informers = {"automatedbuilds": True, "jobs": False}
    depth = [0]
    metrics = Metrics()
    metrics.watch(StateSources(lambda: bodies, lambda: depth[0], lambda: informers.items()))
    assert value(metrics, "autobuild_builds", phase="Running") == 0
    bodies.append({"status": status(record("a", "Running"))})
    depth[0] = 3
    informers["jobs"] = True
    assert value(metrics, "autobuild_builds", phase="Running") == 1
    assert value(metrics, "autobuild_workqueue_depth") == 3
    assert value(metrics, "autobuild_informer_healthy", resource="jobs") == 1
    assert value(metrics, "autobuild_informer_healthy", resource="automatedbuilds") == 1


def test_each_metrics_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()  # the process-wide registry would refuse the second
    first.record_delivery("github", 202)
    assert value(first, "autobuild_webhook_deliveries_total", provider="github", code="202") == 1
    assert (
        second.registry.get_sample_value(
            "autobuild_webhook_deliveries_total", {"provider": "github", "code": "202"}
        )
        is None
    )
    # Every family is named autobuild_* and the exposition parses.
    text = generate_latest(first.registry).decode()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert names
    assert all(name.startswith("autobuild_") for name in names)


def test_reconciles_through_the_work_queue_are_counted_by_result() -> None:
    metrics = Metrics()
    answers: dict[str, list[float | None]] = {
        "settled": [None],
        "soon": [30.0],
        "flaky": [],  # raises once, then settles
    }
    calls: list[str] = []

    async def process(key: str) -> float | None:
        calls.append(key)
        if key == "flaky" and calls.count("flaky") == 1:
            raise RuntimeError("the API said 500")
        return answers[key][0] if answers[key] else None

    async def scenario() -> int:
        queue: WorkQueue[str] = WorkQueue(metrics.instrument(process), workers=2)
        for key in answers:
            queue.add(key)
        waiting = queue.depth
        worker = asyncio.create_task(queue.run())
        for _ in range(500):  # the retry comes after 0.5 s of backoff
            await asyncio.sleep(0.01)
            if calls.count("flaky") == 2 and queue.idle():
                break
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        return waiting

    assert asyncio.run(scenario()) == 3
    assert calls.count("flaky") == 2
    results = {
        result: value(metrics, "autobuild_reconcile_total", result=result)
        for result in ("success", "error", "requeue", "requeue_after")
    }
    assert results == {"success": 2, "error": 1, "requeue": 0, "requeue_after": 1}
    assert value(metrics, "autobuild_reconcile_errors_total") == 1
    assert value(metrics, "autobuild_reconcile_duration_seconds_count") == 4


def test_leadership_is_a_gauge_and_its_gains_a_counter() -> None:
    metrics = Metrics()
    assert value(metrics, "autobuild_leader") == 0
    assert value(metrics, "autobuild_leader_transitions_total") == 0
    metrics.record_leader(True)
    metrics.record_leader(False)
    metrics.record_leader(True)
    assert value(metrics, "autobuild_leader") == 1
    assert value(metrics, "autobuild_leader_transitions_total") == 2
