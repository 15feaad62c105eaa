"""Pushes reaching the operator: a signed GitHub webhook delivery, the Docker Hub-style
trigger URL, and polling when no webhook announces a push."""

from __future__ import annotations

import json
import time

import pytest

from tests.support import webhook_payloads as hooks
from tests.support.gitserver import Repo
from tests.support.operator_harness import (
    World,
    create_tag_builds,
    hook_secret,
    manifest,
    ready_condition,
)
from tests.support.operator_process import Operator, eventually

pytestmark = pytest.mark.k8s


def test_a_signed_push_builds_once_and_two_tags_at_one_commit_build_twice(
    world: World, repo: Repo, operator: Operator
) -> None:
    secret = create_tag_builds(world, repo)
    assert world.status()["webhookPath"] == "/hooks/github"  # shown by kubectl describe
    commit = repo.commit("main", {"v.txt": "1"}, "Release 1.4.2")
    # The tags exist: the payload's commit time is older than the object, so a push builds only
    # while it is the ref's head (docs/webhooks.md, Replays).
    repo.tag("v1.4.2", commit)
    repo.tag("v1.4", commit)
    host, _, path = repo.clone_url.removeprefix("http://").partition("/")
    full_name = path.removesuffix(".git")

    def push(ref: str, signed_with: bytes | None, delivery: str = "") -> tuple[int, str]:
        payload = hooks.encode(
            hooks.github_push(ref, commit, message="Release 1.4.2", full_name=full_name, host=host)
        )
        headers = hooks.github_headers("push", payload, signed_with, delivery)
        return operator.deliver("/hooks/github", payload, headers)

    assert push("refs/tags/v1.4.2", b"wrong")[0] == 401
    assert push("refs/tags/v1.4.2", None)[0] == 401
    time.sleep(1)
    assert world.jobs() == []  # nothing built for an unverified delivery
    assert push("refs/tags/v1.4.2", secret, "delivery-1")[0] == 202
    assert push("refs/tags/v1.4.2", secret, "delivery-1")[0] == 202  # a redelivery
    assert push("refs/tags/v1.4.2", secret, "delivery-2")[0] == 202  # the same push again
    assert push("refs/tags/v1.4", secret, "delivery-3")[0] == 202  # another tag, same commit
    eventually(lambda: len(world.jobs()) == 2, 30, "one Job per tag")
    time.sleep(2)
    assert len(world.jobs()) == 2
    destinations = sorted(
        a
        for j in world.jobs()
        for a in j.spec.template.spec.containers[0].args
        if a.startswith("--destination=")
    )
    assert destinations == [
        "--destination=127.0.0.1:5000/acme/app:1.4",
        "--destination=127.0.0.1:5000/acme/app:1.4.2",
    ]
    args = world.jobs()[0].spec.template.spec.containers[0].args
    assert "--build-arg=COMMIT_MSG=Release 1.4.2" in args
    eventually(
        lambda: sorted(b["trigger"] for b in world.builds()) == ["Push", "Push"], 30, "recorded"
    )
    unknown = hooks.encode(hooks.github_push("refs/heads/main", commit, full_name="acme/other"))
    status, _ = operator.deliver(
        "/hooks/github", unknown, hooks.github_headers("push", unknown, secret)
    )
    assert status == 401  # was 404: unknown and not verified answer alike (issue 17)


def test_the_trigger_url_builds_the_asked_branch(
    world: World, repo: Repo, operator: Operator
) -> None:
    token = hook_secret(world, "trigger", "trigger-token", "t0ken-for-the-url").decode()
    body = manifest(world.namespace, repo, tags=[{"source": "main", "autobuild": False}])
    body["spec"]["triggerSecret"] = "trigger"
    world.create(body)
    eventually(lambda: ready_condition(world), 30, "first visit")
    request = json.dumps({"source_type": "Branch", "source_name": "main"}).encode()
    headers = {"Content-Type": "application/json"}
    path = f"/hooks/trigger/{world.namespace}/app"
    # A wrong token was 401: now the same 404 as an unknown object (issue 17).
    assert operator.deliver(f"{path}/wrong-token", request, headers)[0] == 404
    assert operator.deliver(f"/hooks/trigger/{world.namespace}/nope/x", request, headers)[0] == 404
    status, _ = operator.deliver(f"{path}/{token}", request, headers)
    assert status == 202
    (job,) = eventually(world.jobs, 30, "the triggered build")
    head = repo.heads()["refs/heads/main"]
    assert job.spec.template.spec.containers[0].args[0].endswith(f"#refs/heads/main#{head}")
    eventually(lambda: [b["trigger"] for b in world.builds()] == ["TriggerURL"], 30, "recorded")


def test_polling_builds_a_push_no_webhook_announced(
    world: World, repo: Repo, operator: Operator
) -> None:
    """pollInterval (1m at least): polls start from the heads read on creation, so a push
    before the first poll builds too. The first poll comes within one interval, the next one
    interval later: up to two intervals and a rescan."""
    body = manifest(world.namespace, repo)
    body["spec"]["source"]["pollInterval"] = "1m"
    world.create(body)
    (first,) = eventually(world.jobs, 30, "creation build")
    moved = repo.commit("main", {"p.txt": "1"}, "pushed, no webhook")
    polls = [line for line in operator.log.read_text().splitlines() if world.namespace in line]
    job = eventually(
        lambda: next((j for j in world.jobs() if j.metadata.name != first.metadata.name), None),
        180,
        f"a build found by polling; operator log: {polls[-5:]}",
    )
    assert job.spec.template.spec.containers[0].args[0].endswith(f"#refs/heads/main#{moved}")
    eventually(lambda: "Poll" in [b["trigger"] for b in world.builds()], 30, "recorded as Poll")
