"""Jobs and Pods written by someone else, on the real control plane: whoever can create Jobs or
Pods in some watched namespace and knows an AutomatedBuild's uid (it is on the object, its Jobs
and its Events) must not change that object's status, wedge its reconcile, or make the
operator delete its Jobs. The operator runs with the shipped RBAC (manifests/base/rbac.yaml).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.support.gitserver import GitServer, Repo
from tests.support.operator_harness import (
    DIGEST,
    World,
    autobuild_cli,
    build_phase,
    manifest,
    service_account_kubeconfig,
    terminated_pod_status,
)
from tests.support.operator_process import BUILDER_LABEL, Operator, eventually

pytestmark = pytest.mark.k8s

FORGED_DIGEST = "sha256:" + "f" * 64
UID_LABEL = "autobuild.dev/uid"


@pytest.fixture(scope="module")
def operator(
    k8s_cluster: Any, crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    where = tmp_path_factory.mktemp("hostile-operator")
    with service_account_kubeconfig(k8s_cluster, where) as kubeconfig:
        op = Operator(kubeconfig, where / "operator.log")
        op.start()
        try:
            yield op
        finally:
            op.stop()
    # RBAC denials read 'User "system:serviceaccount:..." cannot VERB resource ...'.
    assert not re.search(r'serviceaccount:[^"]*\\?" cannot ', op.log.read_text())


@pytest.fixture
def repo(git_server: GitServer, request: pytest.FixtureRequest) -> Repo:
    name = request.node.name.lower().replace("_", "-")[5:40].strip("-")
    created = git_server.create_repo("acme", name)
    created.commit("main", {"Dockerfile": "FROM scratch\nCOPY . /\n"}, "Initial commit")
    return created


@pytest.fixture
def attacker(k8s_api: Any) -> Iterator[World]:
    """Another namespace, where someone may create Jobs and Pods (and nothing else of ours)."""
    core = client.CoreV1Api(k8s_api)
    name = f"t-attacker-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield World(k8s_api, name)
    finally:
        core.delete_namespace(name)


def forged_labels(uid: str, **more: str) -> dict[str, str]:
    """The labels of a build Job of the AutomatedBuild ``uid`` (planning/job.py)."""
    return {
        UID_LABEL: uid,
        "autobuild.dev/automatedbuild": "app",
        "autobuild.dev/rule": "0",
        "autobuild.dev/trigger": "Push",
        "autobuild.dev/build-id": "forged",
        **more,
    }


def forged_job(name: str, labels: dict[str, str]) -> dict[str, Any]:
    """A Job that looks like a build (labels, annotations), whose Pod never gets a node: the
    test plays kubelet for it."""
    return {
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {
                "autobuild.dev/source-ref": "refs/heads/main",
                "autobuild.dev/commit": "f" * 40,
                "autobuild.dev/tags": "latest",
            },
        },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "restartPolicy": "Never",
                    "nodeSelector": {BUILDER_LABEL[0]: "nowhere"},
                    "containers": [{"name": "kaniko", "image": "kaniko"}],
                },
            },
        },
    }


def forged_pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "nodeSelector": {BUILDER_LABEL[0]: "nowhere"},
            "containers": [{"name": "kaniko", "image": "kaniko"}],
        },
    }


def terminated(core: Any, namespace: str, pod: str, message: str) -> None:
    """Play kubelet: the Pod's kaniko container ended with ``message`` (a digest)."""
    status = terminated_pod_status(0, message)
    core.patch_namespaced_pod_status(pod, namespace, {"status": status})


def skipped(operator: Operator, resource: str, reason: str) -> float:
    key = ("autobuild_skipped_records_total", (("reason", reason), ("resource", resource)))
    return operator.metrics().get(key, 0.0)


def trigger_and_wait(world: World, k8s_cluster: Any, count: int) -> None:
    """A manual build: proof that the object still reconciles, and that everything the
    operator saw before it has been decided on."""
    result = autobuild_cli(k8s_cluster, "trigger", "app", "-n", world.namespace)
    assert result.returncode == 0, result.stderr
    eventually(lambda: len(world.builds()) >= count, 60, f"{count} builds in status")


def test_a_forged_succeeded_job_and_pod_in_another_namespace_change_nothing_and_stay(
    world: World, attacker: World, repo: Repo, operator: Operator, k8s_cluster: Any
) -> None:
    world.create(manifest(world.namespace, repo, historyLimit={"succeeded": 1, "failed": 1}))
    (job,) = eventually(world.jobs, 30, "the creation build's Job")
    eventually(lambda: world.jobs()[0].spec.suspend is False, 30, "release")
    world.finish_pod(job.metadata.name, 0, DIGEST)
    eventually(build_phase(world, "Succeeded"), 60, "Succeeded")
    uid = world.get()["metadata"]["uid"]
    before = {
        "unowned_jobs": skipped(operator, "jobs", "unowned"),
        "unowned_pods": skipped(operator, "pods", "unowned"),
    }

    # In the attacker's namespace: a newer "build" of the object that succeeded with another
    # digest (history limit 1 would push the real one out), and a Pod posing as the real
    # Job's Pod with that digest.
    attacker.batch.create_namespaced_job(
        attacker.namespace, forged_job("app-forged", forged_labels(uid))
    )
    pod_labels = {UID_LABEL: uid, "job-name": job.metadata.name}
    attacker.core.create_namespaced_pod(attacker.namespace, forged_pod("posing", pod_labels))
    terminated(attacker.core, attacker.namespace, "posing", FORGED_DIGEST)
    (forged_pod_name,) = eventually(
        lambda: [p.metadata.name for p in attacker.pods("app-forged")], 30, "the forged Job's Pod"
    )
    terminated(attacker.core, attacker.namespace, forged_pod_name, FORGED_DIGEST)
    eventually(
        lambda: any(
            c.type == "Complete" and c.status == "True"
            for c in attacker.batch.read_namespaced_job(
                "app-forged", attacker.namespace
            ).status.conditions
            or []
        ),
        60,
        "the forged Job Complete",
    )

    trigger_and_wait(world, k8s_cluster, 2)
    builds = world.builds()
    assert [b["jobName"] for b in builds if b["phase"] == "Succeeded"] == [job.metadata.name]
    assert all(b["id"] != "forged" for b in builds)
    assert FORGED_DIGEST not in str(world.status())
    assert next(b for b in builds if b["jobName"] == job.metadata.name)["digest"] == DIGEST
    # Nothing of the attacker's was deleted, and the real Job is still there.
    time.sleep(2)
    assert job.metadata.name in [j.metadata.name for j in world.jobs()]
    assert [j.metadata.name for j in attacker.jobs()] == ["app-forged"]
    assert "posing" in [
        p.metadata.name for p in attacker.core.list_namespaced_pod(attacker.namespace).items
    ]
    # Counted: the Job and the bare Pod have no controller chain (the forged Job's own Pod has
    # one, to a Job that is no build: it is simply never shown).
    assert skipped(operator, "jobs", "unowned") > before["unowned_jobs"]
    assert skipped(operator, "pods", "unowned") > before["unowned_pods"]


def test_a_malformed_label_on_a_forged_job_does_not_wedge_the_object(
    world: World, attacker: World, repo: Repo, k8s_cluster: Any
) -> None:
    """A rule label that is no number made every reconcile of the object raise, forever."""
    world.create(manifest(world.namespace, repo))
    eventually(world.jobs, 30, "the creation build's Job")
    eventually(lambda: world.builds(), 30, "the creation build in status")
    uid = world.get()["metadata"]["uid"]
    labels = forged_labels(uid, **{"autobuild.dev/rule": "x", "autobuild.dev/trigger": "Bogus"})
    attacker.batch.create_namespaced_job(attacker.namespace, forged_job("app-wedge", labels))
    time.sleep(1)  # the watch brings it to the operator
    trigger_and_wait(world, k8s_cluster, 2)
    assert len(world.jobs()) == 2
