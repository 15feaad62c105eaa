"""Linked GitHub accounts end to end on the real control plane: the operator registers the push
webhook on a fake GitHub (checked with PyGithub in tests/sources), GitHub's delivery to that
hook builds, every build posts commit statuses, and deletion removes the hook and the finalizer.

The operator runs as a real process with a real token of its ServiceAccount, bound by the
shipped RBAC plus the github-hooks component only, so these tests also prove that RBAC.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import webhook_payloads as payloads
from tests.support.fakegithub import FakeGitHub, FakeRepo
from tests.support.gitserver import GitServer, Repo
from tests.support.operator_harness import (
    DIGEST,
    ROOT,
    World,
    build_phase,
    manifest,
    service_account_kubeconfig,
)
from tests.support.operator_process import Operator, eventually, free_port

pytestmark = pytest.mark.k8s

TOKEN = "ghp_linkedtoken0123456789"
FINALIZER = "autobuild.dev/github-hook"
UNHOOK_TIMEOUT = 6


@pytest.fixture(scope="module")
def github() -> Iterator[FakeGitHub]:
    """A GitHub Enterprise-style API (``/api/v3``) on the loopback host the git server uses."""
    with FakeGitHub(prefix="/api/v3") as fake:
        fake.add_user("octocat", token=TOKEN)
        yield fake


@pytest.fixture(scope="module")
def hooks_operator(
    k8s_cluster: Any,
    crd: None,
    github: FakeGitHub,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Operator]:
    where = tmp_path_factory.mktemp("github-operator")
    component = ROOT / "manifests" / "components" / "github-hooks" / "rbac.yaml"
    port = free_port()
    settings = {
        "AUTOBUILD_GITHUB_URL": github.base_url,
        "AUTOBUILD_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "AUTOBUILD_BUILD_URL_TEMPLATE": "https://dash.example.com/{namespace}/{name}/{build}",
        "AUTOBUILD_UNHOOK_TIMEOUT": str(UNHOOK_TIMEOUT),
    }
    with service_account_kubeconfig(k8s_cluster, where, component) as kubeconfig:
        op = Operator(kubeconfig, where / "operator.log", env=settings, webhook_port=port)
        op.start()
        try:
            yield op
        finally:
            op.stop()
    # RBAC denials read 'User "system:serviceaccount:..." cannot VERB resource ...'.
    assert not re.search(r'serviceaccount:[^"]*\\?" cannot ', op.log.read_text())


@pytest.fixture
def world(k8s_api: Any, k8s_namespace: str, hooks_operator: Operator) -> Iterator[World]:
    found = World(k8s_api, k8s_namespace)
    yield found
    # Nothing of ours may hold the namespace's deletion: every object must be deletable.
    for item in found.custom.list_namespaced_custom_object(
        "autobuild.dev", "v1alpha1", k8s_namespace, "automatedbuilds"
    )["items"]:
        found.custom.delete_namespaced_custom_object(
            "autobuild.dev", "v1alpha1", k8s_namespace, "automatedbuilds", item["metadata"]["name"]
        )
    eventually(lambda: not objects(found), 60, "AutomatedBuilds deleted")


def objects(world: World) -> list[Any]:
    found: list[Any] = world.custom.list_namespaced_custom_object(
        "autobuild.dev", "v1alpha1", world.namespace, "automatedbuilds"
    )["items"]
    return found


@pytest.fixture
def linked(
    world: World, git_server: GitServer, github: FakeGitHub, request: pytest.FixtureRequest
) -> tuple[Repo, FakeRepo]:
    """A repository on the git server, the same repository on the fake GitHub (admin rights
    for the linked account), and the linked account's Secret."""
    name = request.node.name.lower().replace("_", "-")[5:40].strip("-")
    repo = git_server.create_repo("acme", name)
    commit = repo.commit("main", {"Dockerfile": "FROM scratch\nCOPY . /\n"}, "Initial commit")
    on_github = github.add_repo(f"acme/{name}", admins={"octocat"})
    on_github.commits[commit] = {}
    world.core.create_namespaced_secret(
        world.namespace,
        {
            "metadata": {
                "name": "github-link",
                "annotations": {"autobuild.dev/git-hosts": "127.0.0.1"},
            },
            "stringData": {"token": TOKEN},
        },
    )
    return repo, on_github


def linked_manifest(world: World, repo: Repo) -> dict[str, Any]:
    body = manifest(world.namespace, repo)
    body["spec"]["source"].update(provider="github", credentialsSecret="github-link")
    return body


def webhook_ready(world: World) -> dict[str, Any] | None:
    return next(
        (c for c in world.status().get("conditions", []) if c["type"] == "WebhookReady"), None
    )


def states(on_github: FakeRepo, commit: str) -> list[str]:
    return [s["state"] for s in on_github.statuses if s["sha"] == commit]


def test_a_linked_repository_gets_its_hook_builds_on_push_and_loses_the_hook_on_delete(
    world: World,
    linked: tuple[Repo, FakeRepo],
    github: FakeGitHub,
    hooks_operator: Operator,
) -> None:
    repo, on_github = linked
    first = repo.heads()["refs/heads/main"]
    world.create(linked_manifest(world, repo))
    # Registered: one hook, at this object's URL, with the secret the operator keeps.
    webhook = eventually(lambda: world.status().get("webhook", {}).get("id"), 60, "hook id")
    (hook,) = on_github.hooks.values()
    assert hook["id"] == webhook
    url = f"http://127.0.0.1:{hooks_operator.webhook_port}/hooks/github"
    assert hook["config"]["url"] == f"{url}?automatedbuild={world.namespace}/app"
    assert hook["events"] == ["push"]
    ready = webhook_ready(world)
    assert ready is not None
    assert ready["status"] == "True"
    assert world.get()["metadata"]["finalizers"] == [FINALIZER]
    secret = world.core.read_namespaced_secret("app-github-hook", world.namespace)
    (owner,) = secret.metadata.owner_references
    assert (owner.kind, owner.name) == ("AutomatedBuild", "app")
    hook_secret = on_github.hook_secrets[webhook]
    assert len(hook_secret) == 64
    assert hook_secret not in str(world.get())
    world.wait_events("WebhookRegistered")

    # The creation build posts pending, then success, on its commit.
    (job,) = eventually(world.jobs, 30, "creation build")
    eventually(lambda: states(on_github, first) == ["pending"], 60, "pending status")
    world.finish_pod(job.metadata.name, 0, DIGEST)
    eventually(build_phase(world, "Succeeded"), 60, "Succeeded")
    eventually(lambda: states(on_github, first) == ["pending", "success"], 60, "success status")
    success = on_github.statuses[-1]
    assert success["context"] == "autobuild/127.0.0.1:5000/acme/app:latest"
    assert success["description"].startswith("Build succeeded in ")
    assert success["target_url"].startswith(f"https://dash.example.com/{world.namespace}/app/")
    eventually(lambda: world.builds()[0].get("commitStatus") == "success", 30, "recorded")

    # GitHub's delivery to the registered hook, signed with the operator's secret, builds.
    second = repo.commit("main", {"b.txt": "2"}, "Second")
    on_github.commits[second] = {}
    host, _, path = repo.clone_url.removeprefix("http://").partition("/")
    body = payloads.encode(
        payloads.github_push(
            "refs/heads/main", second, full_name=path.removesuffix(".git"), host=host
        )
    )
    hook_path = f"/hooks/github?automatedbuild={world.namespace}/app"
    wrong = payloads.github_headers("push", body, b"not-the-secret")
    assert hooks_operator.deliver(hook_path, body, wrong)[0] == 401
    signed = payloads.github_headers("push", body, hook_secret.encode())
    assert hooks_operator.deliver(hook_path, body, signed)[0] == 202
    eventually(lambda: len(world.jobs()) == 2, 30, "the pushed commit's build")
    eventually(lambda: states(on_github, second) == ["pending"], 60, "its pending status")

    # Deleted: exactly that hook goes, then the finalizer, then the object.
    on_github.add_hook(999, "https://elsewhere.example.com/hook")  # not ours: stays
    world.custom.delete_namespaced_custom_object(
        "autobuild.dev", "v1alpha1", world.namespace, "automatedbuilds", "app"
    )
    eventually(lambda: not objects(world), 60, "the object gone")
    assert list(on_github.hooks) == [999]
    world.wait_events("WebhookRemoved")
    calls = hooks_operator.metrics()
    for kind, at_least in (("hook", 1), ("status", 3), ("unhook", 1)):
        labels = (("kind", kind), ("outcome", "ok"))
        assert calls[("autobuild_github_calls_total", labels)] >= at_least


def test_a_github_that_stays_away_never_blocks_deletion(
    world: World, linked: tuple[Repo, FakeRepo], github: FakeGitHub
) -> None:
    repo, on_github = linked
    world.create(linked_manifest(world, repo))
    hook_id = eventually(lambda: world.status().get("webhook", {}).get("id"), 60, "hook id")
    # From now on GitHub answers every request about this hook with a 502.
    github.fail_next("server-error", count=10_000, path_suffix=f"/hooks/{hook_id}")
    try:
        world.custom.delete_namespaced_custom_object(
            "autobuild.dev", "v1alpha1", world.namespace, "automatedbuilds", "app"
        )
        # Retried for AUTOBUILD_UNHOOK_TIMEOUT, then released with an Event naming the hook.
        eventually(lambda: not objects(world), 60 + UNHOOK_TIMEOUT, "the object gone")
    finally:
        github.fail_next("server-error", count=0, clear=True)
    (event,) = [
        e for e in world.wait_events("WebhookNotRemoved") if e.reason == "WebhookNotRemoved"
    ]
    assert "remove it in the repository's settings" in event.message
    assert len(on_github.hooks) == 1  # left in place, and said so


def test_without_admin_rights_the_condition_says_so_and_builds_still_run(
    world: World, linked: tuple[Repo, FakeRepo]
) -> None:
    repo, on_github = linked
    on_github.roles["octocat"] = "write"  # may post statuses, may not manage hooks
    world.create(linked_manifest(world, repo))

    def refused() -> bool:
        ready = webhook_ready(world)
        return ready is not None and ready["reason"] == "WebhookForbidden"

    eventually(refused, 60, "WebhookForbidden")
    assert FINALIZER not in (world.get()["metadata"].get("finalizers") or [])
    assert on_github.hooks == {}
    eventually(world.jobs, 30, "the creation build all the same")
    eventually(
        lambda: states(on_github, repo.heads()["refs/heads/main"]) == ["pending"],
        60,
        "pending status",
    )


def test_a_rate_limited_registration_waits_for_the_reset(
    world: World, linked: tuple[Repo, FakeRepo], github: FakeGitHub
) -> None:
    repo, on_github = linked
    # Only the registration's first call (reading the repository): the statuses go on.
    github.fail_next("primary", count=1, wait=3600, path_suffix=f"/repos/{on_github.full_name}")
    world.create(linked_manifest(world, repo))

    def limited() -> dict[str, Any] | None:
        ready = webhook_ready(world)
        return ready if ready is not None and ready["reason"] == "RateLimited" else None

    ready = eventually(limited, 60, "RateLimited")
    assert ready["status"] == "False"
    # The finalizer stays: a registration that may still come needs its removal.
    assert world.get()["metadata"]["finalizers"] == [FINALIZER]
    assert on_github.hooks == {}


def test_kubectl_describe_shows_the_registered_hook(
    world: World, linked: tuple[Repo, FakeRepo], k8s_cluster: Any
) -> None:
    repo, _ = linked
    world.create(linked_manifest(world, repo))
    eventually(lambda: world.status().get("webhook", {}).get("id"), 60, "hook id")
    shown = subprocess.run(
        [
            k8s_cluster.kubectl_path,
            "--kubeconfig",
            str(k8s_cluster.kubeconfig),
            "-n",
            world.namespace,
            "describe",
            "automatedbuild",
            "app",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "WebhookReady" in shown
    assert "Webhook:" in shown


def test_the_hook_goes_even_when_its_token_went_first(
    world: World, linked: tuple[Repo, FakeRepo]
) -> None:
    """`kubectl delete -f` of the Secret and the object together, or a whole namespace."""
    repo, on_github = linked
    world.create(linked_manifest(world, repo))
    eventually(lambda: world.status().get("webhook", {}).get("id"), 60, "hook id")
    world.core.delete_namespaced_secret("github-link", world.namespace)
    world.custom.delete_namespaced_custom_object(
        "autobuild.dev", "v1alpha1", world.namespace, "automatedbuilds", "app"
    )
    eventually(lambda: not objects(world), 60, "the object gone")
    assert on_github.hooks == {}
