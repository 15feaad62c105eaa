"""What users see of builds from kubectl and the CLI: ``kubectl get`` columns and
``autobuild logs``."""

from __future__ import annotations

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
from tests.support.operator_process import BUILDER_LABEL, eventually

pytestmark = pytest.mark.k8s


def test_kubectl_get_columns(world: World, repo: Repo, k8s_cluster: Any) -> None:
    world.create(manifest(world.namespace, repo))
    (job,) = eventually(world.jobs, 30, "Job")
    world.finish_pod(job.metadata.name, 0, DIGEST)
    eventually(build_phase(world, "Succeeded"), 60, "Succeeded")
    for name in ("autobuilds", "ab", "automatedbuilds", "autobuild"):
        out = k8s_cluster.kubectl("get", name, "-n", world.namespace).stdout
        assert out.split("\n")[0].split() == [
            "NAME",
            "REPO",
            "IMAGE",
            "VISIBILITY",
            "PHASE",
            "COMMIT",
            "READY",
            "AGE",
        ]
        assert "Succeeded" in out
    wide = k8s_cluster.kubectl("get", "ab", "-n", world.namespace, "-o", "wide").stdout
    assert DIGEST in wide
    assert "latest" in wide


def test_logs_explains_what_it_cannot_show(world: World, repo: Repo, k8s_cluster: Any) -> None:
    world.create(manifest(world.namespace, repo, tags=[{"source": "main", "autobuild": False}]))
    eventually(lambda: ready_condition(world), 30, "first visit")
    result = autobuild_cli(k8s_cluster, "logs", "app", "-n", world.namespace)
    assert (result.returncode, result.stderr.strip()) == (
        1,
        "autobuild: AutomatedBuild app has no builds yet",
    )
    trigger(k8s_cluster, world)
    (job,) = eventually(world.jobs, 30, "manual build")
    eventually(lambda: world.pods(job.metadata.name), 30, "its pod")
    result = autobuild_cli(k8s_cluster, "logs", "app", "-n", world.namespace)
    assert result.returncode == 1
    assert f"build Job {job.metadata.name} has not started yet (Pending)" in result.stderr
    result = autobuild_cli(k8s_cluster, "logs", "app", "-n", world.namespace, "--build", "nope")
    assert (result.returncode, result.stderr.strip()) == (1, "autobuild: no build 'nope'")
    result = autobuild_cli(k8s_cluster, "logs", "missing", "-n", world.namespace)
    assert "AutomatedBuild " + world.namespace + "/missing not found" in result.stderr


def test_logs_passes_on_the_kubelets_answer(world: World, repo: Repo, k8s_cluster: Any) -> None:
    """On kwok's node the build really starts; kwok serves no kubelet log endpoint, so the API
    server's error reaches the user as a message, not a traceback."""
    nodes = world.core.list_node().items
    node = next(n.metadata.name for n in nodes if "kwok" in n.metadata.name)
    label = "=".join(BUILDER_LABEL)
    k8s_cluster.kubectl("label", "node", node, label, "--overwrite")
    try:
        world.create(manifest(world.namespace, repo))
        (job,) = eventually(world.jobs, 30, "Job")
        eventually(
            lambda: any(p.spec.node_name for p in world.pods(job.metadata.name)), 30, "scheduled"
        )
        eventually(
            lambda: any(
                c.state.running or c.state.terminated
                for p in world.pods(job.metadata.name)
                for c in p.status.container_statuses or []
            ),
            30,
            "started by kwok",
        )
        result = autobuild_cli(k8s_cluster, "logs", "app", "-n", world.namespace)
        assert result.returncode == 1
        assert f"cannot read the log of build Job {job.metadata.name}" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        k8s_cluster.kubectl("label", "node", node, BUILDER_LABEL[0] + "-")
