"""The operator process: restarts (its own and the API server's), probes and JSON logs, the
shipped RBAC as its only permissions, and a failed status write retried."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.gitserver import Repo
from tests.support.operator_harness import (
    DEFAULT_REGISTRY_AUTH,
    DIGEST,
    World,
    build_phase,
    manifest,
    service_account_kubeconfig,
    trigger,
)
from tests.support.operator_process import Operator, eventually

pytestmark = pytest.mark.k8s


def test_restart_mid_build_keeps_records_and_idle_restart_writes_nothing(
    world: World, repo: Repo, operator: Operator
) -> None:
    world.create(manifest(world.namespace, repo))
    (job,) = eventually(world.jobs, 30, "Job")
    eventually(build_phase(world, "Pending"), 30, "Pending")
    operator.stop()
    world.finish_pod(job.metadata.name, 0, DIGEST)
    time.sleep(1)
    operator.start()
    eventually(build_phase(world, "Succeeded"), 60, "Succeeded after restart")
    assert len(world.jobs()) == 1
    before = world.get()["metadata"]["resourceVersion"]
    operator.stop()
    operator.start()
    time.sleep(5)
    assert world.get()["metadata"]["resourceVersion"] == before
    assert len(world.jobs()) == 1


def test_probes_and_json_logs(operator: Operator) -> None:
    for path in ("/healthz", "/readyz"):
        with urllib.request.urlopen(f"http://127.0.0.1:{operator.port}{path}", timeout=2) as answer:
            assert answer.status == 200
    lines = [line for line in operator.log.read_text().splitlines() if line.startswith("{")]
    assert lines, "no JSON log line"
    record = json.loads(lines[-1])
    assert {"message", "severity", "timestamp"} <= record.keys()


def test_operator_survives_an_api_server_restart(
    world: World, repo: Repo, k8s_cluster: Any, k8s_api: Any
) -> None:
    if k8s_cluster.local is None:
        pytest.skip("needs a cluster this session started (not AUTOBUILD_KUBECONFIG)")
    world.create(manifest(world.namespace, repo, runPolicy="Parallel"))
    (job,) = eventually(world.jobs, 30, "creation build")
    k8s_cluster.local.restart("kube-apiserver", down_seconds=3)
    world.finish_pod(job.metadata.name, 0, DIGEST)
    eventually(build_phase(world, "Succeeded"), 90, "Succeeded after the outage")
    repo.commit("main", {"after.txt": "1"}, "after the outage")
    trigger(k8s_cluster, world)
    eventually(lambda: len(world.jobs()) == 2, 60, "a build triggered after the outage")


def test_the_shipped_rbac_is_enough(
    world: World, repo: Repo, k8s_cluster: Any, operator: Operator, tmp_path: Path
) -> None:
    """The operator runs with only manifests/base/rbac.yaml's ClusterRole, through a real token."""
    operator.stop()
    with contextlib.ExitStack() as stack:
        limited = stack.enter_context(service_account_kubeconfig(k8s_cluster, tmp_path))
        stack.callback(operator.start)
        restricted = Operator(limited, tmp_path / "restricted.log", operator.registry)
        stack.callback(restricted.stop)
        restricted.start()
        world.push_secret(DEFAULT_REGISTRY_AUTH)
        body = manifest(
            world.namespace,
            repo,
            runPolicy="SerialLatestOnly",
            historyLimit={"succeeded": 0, "failed": 1},
        )
        body["spec"]["image"]["pushSecret"] = "regcred"
        world.create(body)
        (job,) = eventually(world.jobs, 30, "creation build")
        world.run_pod(job.metadata.name)
        eventually(build_phase(world, "Running"), 30, "Running")
        world.finish_pod(job.metadata.name, 0, DIGEST)
        eventually(build_phase(world, "Succeeded"), 60, "Succeeded")
        world.wait_events("BuildStarted", "BuildSucceeded")
        repo.commit("main", {"b.txt": "2"}, "second")
        trigger(k8s_cluster, world)
        # historyLimit 0 prunes the first Job as soon as the second exists: wait for what
        # must hold (a second Job), not for the moment when both exist.
        second = eventually(
            lambda: next((j for j in world.jobs() if j.metadata.name != job.metadata.name), None),
            30,
            "second Job",
        )
        world.finish_pod(second.metadata.name, 0, DIGEST)
        eventually(
            lambda: [j.metadata.name for j in world.jobs()] == [second.metadata.name],
            60,
            "the older succeeded Job pruned (historyLimit 0 keeps only the newest)",
        )
    # RBAC denials read 'User "system:serviceaccount:..." cannot VERB resource ...'.
    assert "cannot " not in restricted.log.read_text()


def test_a_failed_write_is_retried_without_a_new_event(world: World, repo: Repo) -> None:
    """kopf never retries on.event work; our queue does. A quota refuses Job creation (403),
    then goes away: the build is created with no further change to the object."""
    world.core.create_namespaced_resource_quota(
        world.namespace,
        {"metadata": {"name": "no-jobs"}, "spec": {"hard": {"count/jobs.batch": "0"}}},
    )
    eventually(
        lambda: (
            world.core.read_namespaced_resource_quota("no-jobs", world.namespace).status.hard or {}
        ),
        30,
        "quota in force",
    )
    world.create(manifest(world.namespace, repo))
    time.sleep(3)  # let the operator try (and fail) a few times
    assert world.jobs() == []
    world.core.delete_namespaced_resource_quota("no-jobs", world.namespace)
    eventually(world.jobs, 90, "the Job, created by a retry")
