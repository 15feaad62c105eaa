"""Manual triggers (the ``autobuild.dev/trigger`` annotation, ``autobuild trigger``): what
they build, and what the operator says about requests it cannot build."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.gitserver import Repo
from tests.support.operator_harness import (
    World,
    autobuild_cli,
    manifest,
    ready_condition,
    trigger,
    wait_triggers_handled,
)
from tests.support.operator_process import eventually, free_port

pytestmark = pytest.mark.k8s


def test_trigger_with_ref_and_commit_needs_no_git_host(world: World, k8s_cluster: Any) -> None:
    body = manifest(world.namespace, f"http://127.0.0.1:{free_port()}/acme/gone.git")
    body["spec"]["tags"] = [
        {"sourceType": "Tag", "source": "/^v([0-9.]+)$/", "dockerTag": "{\\1}", "autobuild": False}
    ]
    world.create(body)
    eventually(lambda: ready_condition(world), 30, "first visit")
    commit = "ab" * 20
    trigger(k8s_cluster, world, "--ref", "refs/tags/v2.5", "--commit", commit)
    (job,) = eventually(world.jobs, 30, "Job for the given commit")
    args = job.spec.template.spec.containers[0].args
    assert args[0].endswith(f"#refs/tags/v2.5#{commit}")
    assert "--destination=127.0.0.1:5000/acme/app:2.5" in args


def last_trigger(world: World) -> dict[str, Any]:
    return dict(world.status().get("lastTrigger") or {})


def test_bad_trigger_request_is_reported_and_the_next_one_still_builds(
    world: World, repo: Repo, k8s_cluster: Any
) -> None:
    world.create(manifest(world.namespace, repo))
    eventually(world.jobs, 30, "creation build")
    wait_triggers_handled(world)
    value = json.dumps([{"id": "20261129T000000.000000Z-bad", "ref": "refs/heads/a b"}])
    k8s_cluster.kubectl(
        "annotate", "-n", world.namespace, "ab/app", f"autobuild.dev/trigger={value}", "--overwrite"
    )
    handled = eventually(
        lambda: (t := last_trigger(world)).get("reason") == "InvalidTrigger" and t,
        30,
        "InvalidTrigger",
    )
    assert "not a safe git ref name" in handled["message"]
    world.wait_events("InvalidTrigger")
    trigger(k8s_cluster, world)
    eventually(lambda: len(world.jobs()) == 2, 30, "a later trigger builds")


def test_cli_refuses_triggers_that_would_build_nothing(
    world: World, repo: Repo, k8s_cluster: Any
) -> None:
    world.create(manifest(world.namespace, repo, tags=[{"source": "/^rel/", "dockerTag": "x"}]))
    eventually(lambda: ready_condition(world), 30, "first visit")
    result = autobuild_cli(k8s_cluster, "trigger", "app", "-n", world.namespace)
    assert result.returncode == 1
    assert "--ref" in result.stderr
    result = autobuild_cli(
        k8s_cluster, "trigger", "app", "-n", world.namespace, "--commit", "ab" * 20
    )
    assert result.returncode == 1
    assert "--commit needs --ref" in result.stderr
    assert "autobuild.dev/trigger" not in (world.get()["metadata"].get("annotations") or {})


def test_quick_triggers_all_build(world: World, repo: Repo, k8s_cluster: Any) -> None:
    """Two triggers in a row, without waiting: each is a request of its own."""
    world.create(manifest(world.namespace, repo, runPolicy="Parallel"))
    eventually(world.jobs, 30, "creation build")
    wait_triggers_handled(world)
    for _ in range(2):
        result = autobuild_cli(k8s_cluster, "trigger", "app", "-n", world.namespace)
        assert result.returncode == 0, result.stderr
    eventually(lambda: len(world.jobs()) == 3, 30, "one build per trigger")
    assert sorted(b["trigger"] for b in world.builds()) == ["Create", "Manual", "Manual"]
