"""runPolicy (Serial, SerialLatestOnly, Parallel), cancelling and historyLimit on the real
control plane."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from tests.support.gitserver import Repo
from tests.support.operator_harness import (
    DIGEST,
    World,
    autobuild_cli,
    build_phase,
    manifest,
    ready_condition,
    trigger,
)
from tests.support.operator_process import eventually

pytestmark = pytest.mark.k8s


def test_serial_queues_and_manual_triggers(world: World, repo: Repo, k8s_cluster: Any) -> None:
    world.create(manifest(world.namespace, repo, runPolicy="Serial"))
    (first,) = eventually(world.jobs, 30, "creation build")
    second_commit = repo.commit("main", {"a.txt": "2"}, "Second")
    trigger(k8s_cluster, world)
    eventually(lambda: len(world.jobs()) == 2, 30, "second Job")
    eventually(build_phase(world, "Queued", 0), 30, "second build queued")

    def newest() -> Any:
        return next(j for j in world.jobs() if j.metadata.name != first.metadata.name)

    assert newest().spec.suspend is True
    assert second_commit in newest().spec.template.spec.containers[0].args[0]
    assert world.builds()[0]["trigger"] == "Manual"
    world.finish_pod(first.metadata.name, 0, DIGEST)
    eventually(lambda: newest().spec.suspend is False, 60, "queued build released")
    eventually(
        lambda: [b["phase"] for b in world.builds()] == ["Pending", "Succeeded"], 30, "phases"
    )


def test_serial_latest_only_cancels_older_queued(
    world: World, repo: Repo, k8s_cluster: Any
) -> None:
    world.create(manifest(world.namespace, repo, runPolicy="SerialLatestOnly"))
    eventually(world.jobs, 30, "creation build")
    for n in range(2):
        repo.commit("main", {"n.txt": str(n)}, f"change {n}")
        trigger(k8s_cluster, world)
        eventually(lambda n=n: len(world.jobs()) == n + 2, 30, "queued Job")
    eventually(
        lambda: [b["phase"] for b in world.builds()] == ["Queued", "Cancelled", "Pending"],
        60,
        "older queued build cancelled",
    )


def test_parallel_runs_all_and_cancel(world: World, repo: Repo, k8s_cluster: Any) -> None:
    world.create(
        manifest(
            world.namespace,
            repo,
            runPolicy="Parallel",
            tags=[
                {"source": "main", "dockerTag": "latest"},
                {"source": "/^ma/", "dockerTag": "edge"},
            ],
        )
    )
    eventually(lambda: len(world.jobs()) == 2, 30, "two Jobs")
    assert all(job.spec.suspend in (None, False) for job in world.jobs())
    build_id = world.jobs()[0].metadata.labels["autobuild.dev/build-id"]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "autobuild.cli",
            "cancel",
            "app",
            "-n",
            world.namespace,
            "--build",
            build_id,
        ],
        env=dict(os.environ, KUBECONFIG=str(k8s_cluster.kubeconfig)),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert f"build {build_id} cancelled" in result.stdout
    eventually(
        lambda: {b["id"]: b["phase"] for b in world.builds()}.get(build_id) == "Cancelled",
        30,
        "Cancelled",
    )


def test_history_limit_prunes_jobs_and_records(world: World, repo: Repo, k8s_cluster: Any) -> None:
    world.create(
        manifest(
            world.namespace, repo, runPolicy="Parallel", historyLimit={"succeeded": 1, "failed": 1}
        )
    )
    done: set[str] = set()
    for n in range(3):
        job = eventually(
            lambda: next((j for j in world.jobs() if j.metadata.name not in done), None),
            30,
            "new Job",
        )
        world.finish_pod(job.metadata.name, 0, DIGEST)
        done.add(job.metadata.name)
        eventually(
            lambda name=job.metadata.name: any(
                b["jobName"] == name and b["phase"] == "Succeeded" for b in world.builds()
            ),
            60,
            "Succeeded",
        )
        if n < 2:
            repo.commit("main", {"n.txt": str(n)}, f"change {n}")
            trigger(k8s_cluster, world)
    eventually(lambda: len(world.jobs()) == 1 and len(world.builds()) == 1, 60, "pruned to one")
    assert world.jobs()[0].metadata.name == job.metadata.name


def test_serial_latest_only_never_cancels_another_rule(
    world: World, repo: Repo, k8s_cluster: Any
) -> None:
    tags = [{"source": "main", "dockerTag": "latest"}, {"source": "/^ma/", "dockerTag": "edge"}]
    world.create(
        manifest(
            world.namespace,
            repo,
            runPolicy="SerialLatestOnly",
            tags=[{**t, "autobuild": False} for t in tags],
        )
    )
    eventually(lambda: ready_condition(world), 30, "first visit")
    trigger(k8s_cluster, world, "--ref", "main")
    eventually(lambda: len(world.builds()) == 2, 30, "both rules build")
    eventually(
        lambda: sorted(b["phase"] for b in world.builds()) == ["Pending", "Pending"],
        30,
        "both released, none cancelled",
    )
    assert sorted(b["tags"][0] for b in world.builds()) == ["edge", "latest"]


def test_a_release_never_undoes_a_cancel(world: World, repo: Repo, k8s_cluster: Any) -> None:
    """Releases and cancels are conditional on the resourceVersion the decision saw."""
    import asyncio

    from autobuild.controller.kubeapi import KubeApi
    from autobuild.controller.reconcile import Controller
    from autobuild.planning.snapshot import JobWrite
    from autobuild.settings import BuildSettings

    world.create(manifest(world.namespace, repo, runPolicy="Serial"))
    (job,) = eventually(world.jobs, 30, "creation build")
    stale = job.metadata.resource_version
    result = autobuild_cli(k8s_cluster, "cancel", "app", "-n", world.namespace)
    assert result.returncode == 0, result.stderr
    eventually(build_phase(world, "Cancelled"), 30, "Cancelled")

    async def release_with_stale_version() -> int:
        from kubernetes import client as k8s_client
        from kubernetes import config

        configuration = k8s_client.Configuration()
        config.load_kube_config(str(k8s_cluster.kubeconfig), client_configuration=configuration)
        api = KubeApi(configuration)
        try:
            controller = Controller(api, BuildSettings())
            write = JobWrite(job.metadata.name, job.metadata.uid, stale)
            jobs = f"/apis/batch/v1/namespaces/{world.namespace}/jobs"
            return await controller.writes._patch_job(jobs, write, {"spec": {"suspend": False}})
        finally:
            await api.close()

    assert asyncio.run(release_with_stale_version()) == 1  # lost the race: nothing written
    assert world.jobs()[0].spec.suspend is True
    assert world.builds()[0]["phase"] == "Cancelled"
