"""Replays after a restart (issue 17, item 6), black-box on the real control plane: a captured
signed push of an old commit, sent again once the operator restarted and its Job was pruned,
builds nothing; a redelivery builds nothing; a new push still builds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.support import webhook_payloads as hooks
from tests.support.gitserver import GitServer, Repo
from tests.support.operator_harness import DIGEST, World, build_phase, hook_secret, manifest
from tests.support.operator_process import Operator, eventually

pytestmark = pytest.mark.k8s


@pytest.fixture(scope="module")
def operator(
    k8s_cluster: Any, crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    """This module's own operator: its tests restart it."""
    op = Operator(k8s_cluster.kubeconfig, tmp_path_factory.mktemp("replay") / "operator.log")
    op.start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture
def repo(git_server: GitServer, request: pytest.FixtureRequest) -> Repo:
    name = request.node.name.lower().replace("_", "-")[5:45].strip("-")
    created = git_server.create_repo("acme", name)
    created.commit("main", {"Dockerfile": "FROM scratch\nCOPY . /\n"}, "Initial commit")
    return created


class Pushes:
    """Signed GitHub push deliveries of one repository's main branch, as GitHub sends them."""

    def __init__(self, operator: Operator, repo: Repo, secret: bytes) -> None:
        self.operator = operator
        self.secret = secret
        self.host, _, path = repo.clone_url.removeprefix("http://").partition("/")
        self.full_name = path.removesuffix(".git")

    def body(self, commit: str) -> bytes:
        """The body GitHub would send right after ``commit`` was pushed (its time: now)."""
        payload = hooks.github_push(
            "refs/heads/main", commit, full_name=self.full_name, host=self.host
        )
        payload["head_commit"]["timestamp"] = datetime.now(UTC).isoformat(timespec="seconds")
        payload["commits"] = [payload["head_commit"]]
        return hooks.encode(payload)

    def send(self, body: bytes, delivery: str) -> int:
        headers = hooks.github_headers("push", body, self.secret, delivery)
        status, _ = self.operator.deliver("/hooks/github", body, headers)
        return status


def commits_built(world: World) -> list[str]:
    return [j.metadata.annotations["autobuild.dev/commit"] for j in world.jobs()]


def finish_build_of(world: World, commit: str) -> None:
    job = eventually(
        lambda: next(
            (j for j in world.jobs() if j.metadata.annotations["autobuild.dev/commit"] == commit),
            None,
        ),
        30,
        f"the build of {commit[:7]}",
    )
    world.finish_pod(job.metadata.name, 0, DIGEST)
    eventually(
        lambda: any(
            b["jobName"] == job.metadata.name and b["phase"] == "Succeeded" for b in world.builds()
        ),
        60,
        f"{commit[:7]} Succeeded",
    )


def stale_pushes(world: World) -> list[Any]:
    return [
        e
        for e in world.core.list_namespaced_event(world.namespace).items
        if e.involved_object.kind == "AutomatedBuild" and e.reason == "StalePush"
    ]


def test_a_captured_push_replayed_after_a_restart_and_pruning_builds_nothing(
    world: World, repo: Repo, operator: Operator
) -> None:
    secret = hook_secret(world)
    body = manifest(world.namespace, repo, historyLimit={"succeeded": 1, "failed": 1})
    body["spec"]["source"]["webhookSecret"] = "hook"
    world.create(body)
    eventually(build_phase(world, "Pending"), 30, "the creation build")
    finish_build_of(world, repo.heads()["refs/heads/main"])
    pushes = Pushes(operator, repo, secret)

    old = repo.commit("main", {"app.txt": "old code"}, "Old code")
    captured = pushes.body(old)  # what someone on the path keeps
    assert pushes.send(captured, "delivery-old") == 202
    finish_build_of(world, old)
    new = repo.commit("main", {"app.txt": "new code"}, "New code")
    assert pushes.send(pushes.body(new), "delivery-new") == 202
    finish_build_of(world, new)
    eventually(lambda: commits_built(world) == [new], 60, "historyLimit prunes the old Jobs")
    eventually(lambda: [b["commit"] for b in world.builds()] == [new], 30, "status caught up")

    operator.stop()
    operator.start()  # nothing in memory now: no delivery ids, no Jobs of the old commit
    assert pushes.send(captured, "delivery-old") == 202  # a redelivery
    assert pushes.send(captured, "forged-delivery-id") == 202  # the id is not signed
    assert pushes.send(captured, "forged-delivery-id-2") == 202
    eventually(
        lambda: stale_pushes(world) or old in commits_built(world),
        30,
        "the replay refused (or built)",
    )
    time.sleep(2)  # anything still queued would be created by now
    assert commits_built(world) == [new], "the replayed push built the old commit again"
    assert [b["commit"] for b in world.builds()] == [new]
    (event,) = stale_pushes(world)[:1]
    assert event.type == "Warning"
    assert f"refs/heads/main@{old[:7]}" in event.message
    assert f"head is {new[:7]}" in event.message

    # The restarted operator still builds a new push at once.
    newest = repo.commit("main", {"app.txt": "newest code"}, "Newest code")
    assert pushes.send(pushes.body(newest), "delivery-newest") == 202
    eventually(lambda: newest in commits_built(world), 30, "the new push's build")
    assert old not in commits_built(world)
