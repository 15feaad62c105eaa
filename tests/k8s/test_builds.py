"""A build from creation to its end: the Kaniko Job the operator creates, the phases it
records, and the ways a build fails (a failing pod, a timeout, no node, no pod)."""

from __future__ import annotations

import json

import pytest

from tests.support.gitserver import Repo
from tests.support.operator_harness import DIGEST, World, build_phase, manifest
from tests.support.operator_process import Operator, eventually

pytestmark = pytest.mark.k8s


def test_create_builds_main_with_exact_kaniko_args_and_records_success(
    world: World, repo: Repo, operator: Operator
) -> None:
    head = repo.heads()["refs/heads/main"]
    succeeded = ("autobuild_build_transitions_total", (("phase", "Succeeded"),))
    timed = ("autobuild_build_duration_seconds_count", (("phase", "Succeeded"),))
    before = operator.metrics()
    world.create(manifest(world.namespace, repo))
    (job,) = eventually(world.jobs, 30, "the creation build's Job")
    args = job.spec.template.spec.containers[0].args
    assert (
        args[0]
        == f"--context=git://{repo.clone_url.removeprefix('http://')}#refs/heads/main#{head}"
    )
    assert "--destination=127.0.0.1:5000/acme/app:latest" in args
    assert f"--build-arg=SOURCE_COMMIT={head}" in args
    assert job.metadata.owner_references[0].kind == "AutomatedBuild"
    assert job.spec.backoff_limit == 0
    env = {e.name: e.value for e in job.spec.template.spec.containers[0].env}
    assert env["GIT_PULL_METHOD"] == "http"
    eventually(lambda: not job.spec.suspend or world.jobs()[0].spec.suspend is False, 30, "release")
    world.run_pod(job.metadata.name)
    eventually(build_phase(world, "Running"), 30, "Running")
    world.finish_pod(job.metadata.name, 0, DIGEST)
    eventually(build_phase(world, "Succeeded"), 60, "Succeeded")
    status = world.status()
    latest = status["latestBuild"]
    assert (latest["digest"], latest["shortCommit"], latest["tags"]) == (DIGEST, head[:7], "latest")
    assert status["observedGeneration"] == 1
    assert status["image"] == "127.0.0.1:5000/acme/app"
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "BuildSucceeded")
    world.wait_events("BuildStarted", "BuildSucceeded")
    # The operator counted the build (builds of earlier tests in the module may count too).
    after = eventually(
        lambda: (found := operator.metrics())[succeeded] > before[succeeded] and found,
        30,
        "the Succeeded build in /metrics",
    )
    assert after[timed] > before[timed]
    assert after[("autobuild_builds", (("phase", "Succeeded"),))] >= 1
    assert after[("autobuild_reconcile_total", (("result", "success"),))] > 0
    assert ("autobuild_reconcile_errors_total", ()) in after
    healthy = {key[1]: v for key, v in after.items() if key[0] == "autobuild_informer_healthy"}
    assert healthy == {
        (("resource", name),): 1.0 for name in ("automatedbuilds", "secrets", "jobs", "pods")
    }


def test_failing_pod_is_classified_and_its_log_never_reaches_status_or_events(
    world: World, repo: Repo
) -> None:
    world.push_secret(
        json.dumps({"auths": {"127.0.0.1:5000": {"auth": "dTpzZWNyZXQtcHVzaC1wYXNzd29yZA=="}}})
    )
    body = manifest(world.namespace, repo)
    body["spec"]["image"]["pushSecret"] = "regcred"
    world.create(body)
    (job,) = eventually(world.jobs, 30, "Job")
    # Kaniko's log tail, as FallbackToLogsOnError puts it in the termination message.
    tail = (
        "error checking push permissions -- UNAUTHORIZED: dTpzZWNyZXQtcHVzaC1wYXNzd29yZA== refused"
    )
    world.finish_pod(job.metadata.name, 1, tail)
    eventually(build_phase(world, "Failed"), 60, "Failed")
    build = world.builds()[0]
    assert build["reason"] == "PushUnauthorized"
    assert "pushSecret" in build["message"]
    ready = next(c for c in world.status()["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "BuildFailed")
    events = world.wait_events("BuildFailed")
    written = json.dumps(world.status()) + " ".join(e.message for e in events)
    assert "dTpzZWNyZXQtcHVzaC1wYXNzd29yZA==" not in written
    assert "UNAUTHORIZED" not in written


def test_timeout_is_timed_out(world: World, repo: Repo) -> None:
    world.create(manifest(world.namespace, repo, timeout="1m"))
    (job,) = eventually(world.jobs, 30, "Job")
    assert job.spec.active_deadline_seconds == 60
    # Shorten the deadline as the Job controller allows, rather than wait a minute.
    eventually(lambda: world.jobs()[0].spec.suspend is False, 30, "release")
    world.batch.patch_namespaced_job(
        job.metadata.name, world.namespace, {"spec": {"activeDeadlineSeconds": 1}}
    )
    eventually(build_phase(world, "TimedOut"), 60, "TimedOut")
    assert world.builds()[0]["reason"] == "DeadlineExceeded"


def test_a_build_that_cannot_be_scheduled_says_so(world: World, repo: Repo) -> None:
    """Build pods of this module need a node label no node has: the scheduler's verdict shows
    in status long before the build's deadline."""
    world.create(manifest(world.namespace, repo))
    eventually(world.jobs, 30, "Job")
    build = eventually(
        lambda: (b := world.builds()) and b[0].get("reason") == "Unschedulable" and b[0],
        60,
        "Unschedulable",
    )
    assert build["phase"] == "Pending"
    assert "node" in build["message"]


def test_a_build_whose_pod_cannot_be_created_says_so(world: World, repo: Repo) -> None:
    """A quota that allows Jobs but no Pods: the Job controller cannot create the build's Pod,
    and status says so within a minute, not at the build's deadline."""
    world.core.create_namespaced_resource_quota(
        world.namespace, {"metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}}
    )
    eventually(
        lambda: world.core.read_namespaced_resource_quota("no-pods", world.namespace).status.hard,
        30,
        "quota in force",
    )
    world.create(manifest(world.namespace, repo))
    eventually(world.jobs, 30, "Job")
    build = eventually(
        lambda: (b := world.builds()) and b[0].get("reason") == "PodNotCreated" and b[0],
        90,
        "PodNotCreated",
    )
    assert build["phase"] == "Pending"
    assert "ResourceQuota" in build["message"]
