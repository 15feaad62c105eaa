"""Secrets and credentials: a missing Secret, a linked token for a private repository, the
host opt-in of git credentials, Secrets used only for what they are bound to, no secret in
the state the operator keeps on the object."""

from __future__ import annotations

import json

import pytest

from tests.support.gitserver import GitServer, Repo
from tests.support.operator_harness import (
    DEFAULT_REGISTRY_AUTH,
    World,
    docker_config,
    manifest,
    ready_condition,
    stalled_condition,
)
from tests.support.operator_process import eventually
from tests.support.registry import Registry

pytestmark = pytest.mark.k8s


def test_missing_secret_is_stalled_then_recovers(world: World, repo: Repo) -> None:
    body = manifest(world.namespace, repo)
    body["spec"]["image"]["pushSecret"] = "regcred"
    world.create(body)
    condition = eventually(lambda: stalled_condition(world), 30, "Stalled")
    assert condition["reason"] == "SecretNotFound"
    # Retrying is the operator's business: no finalizer or kopf state lands in the object.
    metadata = world.get()["metadata"]
    assert not metadata.get("finalizers")
    assert not [k for k in metadata.get("annotations") or {} if "kopf" in k or "last-handled" in k]
    assert "spec.image.pushSecret" in condition["message"]
    assert world.jobs() == []
    world.push_secret(DEFAULT_REGISTRY_AUTH)
    eventually(world.jobs, 60, "build after the Secret appeared")


def test_state_annotations_hold_no_secret(world: World, repo: Repo) -> None:
    world.core.create_namespaced_secret(
        world.namespace,
        {
            "metadata": {"name": "link", "annotations": {"autobuild.dev/git-hosts": "127.0.0.1"}},
            "stringData": {"token": "s3cr3t-token-value"},
        },
    )
    body = manifest(world.namespace, repo)
    body["spec"]["source"]["credentialsSecret"] = "link"
    world.create(body)
    eventually(world.jobs, 30, "Job")
    dumped = json.dumps(world.get()) + json.dumps([j.to_dict() for j in world.jobs()], default=str)
    assert "s3cr3t-token-value" not in dumped


def test_private_repo_heads_resolve_with_the_linked_token(
    world: World, git_server: GitServer
) -> None:
    private = git_server.create_repo(
        "acme", f"private-{world.namespace}", private_token="linked-t0ken"
    )
    head = private.commit("main", {"Dockerfile": "FROM scratch\n"}, "init")
    world.core.create_namespaced_secret(
        world.namespace,
        {
            "metadata": {"name": "link", "annotations": {"autobuild.dev/git-hosts": "127.0.0.1"}},
            "stringData": {"token": "wrong-token"},
        },
    )
    body = manifest(world.namespace, private)
    body["spec"]["source"]["credentialsSecret"] = "link"
    world.create(body)
    ready = eventually(
        lambda: (c := ready_condition(world)) and c["status"] == "False" and c, 30, "not Ready"
    )
    assert ready["reason"] == "SourceUnreachable"
    assert "authentication failed" in ready["message"]
    assert "wrong-token" not in json.dumps(world.get())
    world.core.patch_namespaced_secret(
        "link", world.namespace, {"stringData": {"token": "linked-t0ken"}}
    )
    (job,) = eventually(world.jobs, 60, "the creation build once the token is right")
    container = job.spec.template.spec.containers[0]
    assert container.args[0].endswith(f"#refs/heads/main#{head}")
    env = {e.name: e for e in container.env}
    assert "GIT_TOKEN" not in env
    assert env["GIT_USERNAME"].value == "x-access-token"
    assert env["GIT_PASSWORD"].value is None
    assert env["GIT_PASSWORD"].value_from.secret_key_ref.name == "link"
    assert env["GIT_PASSWORD"].value_from.secret_key_ref.key == "token"


def test_credentials_go_only_to_the_hosts_their_secret_names(
    world: World, git_server: GitServer
) -> None:
    """No confused deputy: a Secret must opt in to the host, and a token never travels over
    plain http to a host that is not in AUTOBUILD_INSECURE_GIT_HOSTS."""
    private = git_server.create_repo("acme", f"deputy-{world.namespace}", private_token="t0ken-x")
    private.commit("main", {"Dockerfile": "FROM scratch\n"}, "init")
    world.core.create_namespaced_secret(
        world.namespace, {"metadata": {"name": "link"}, "stringData": {"token": "t0ken-x"}}
    )
    body = manifest(world.namespace, private)
    body["spec"]["source"]["credentialsSecret"] = "link"
    world.create(body)
    stalled = eventually(lambda: stalled_condition(world), 30, "Stalled")
    assert stalled["reason"] == "CredentialsNotAllowed"
    assert "autobuild.dev/git-hosts" in stalled["message"]
    assert world.jobs() == []
    # Allowed for another name of the same server, which is not an insecure host: still refused.
    world.core.patch_namespaced_secret(
        "link",
        world.namespace,
        {"metadata": {"annotations": {"autobuild.dev/git-hosts": "localhost"}}},
    )
    other = manifest(
        world.namespace, private.clone_url.replace("127.0.0.1", "localhost"), name="other"
    )
    other["spec"]["source"]["credentialsSecret"] = "link"
    world.create(other)
    refused = eventually(
        lambda: (
            (
                c := next(
                    (
                        c
                        for c in world.status("other").get("conditions") or []
                        if c["type"] == "Ready"
                    ),
                    None,
                )
            )
            and c["reason"] == "CredentialsNotAllowed"
            and c
        ),
        30,
        "refused over plain http",
    )
    assert "AUTOBUILD_INSECURE_GIT_HOSTS" in refused["message"]
    world.core.patch_namespaced_secret(
        "link",
        world.namespace,
        {"metadata": {"annotations": {"autobuild.dev/git-hosts": "127.0.0.1,localhost"}}},
    )
    (job,) = eventually(world.jobs, 60, "the build once the Secret opts in")
    assert job.metadata.labels["autobuild.dev/automatedbuild"] == "app"


def test_secrets_bound_to_repositories_and_images_are_used_for_nothing_else(
    world: World, repo: Repo, registry: Registry
) -> None:
    """A linked token bound to acme's other repository, and a push Secret bound to another
    image: both refused (Stalled, no Job); widened by their owner, the build starts."""
    world.core.create_namespaced_secret(
        world.namespace,
        {
            "metadata": {
                "name": "link",
                "annotations": {
                    "autobuild.dev/git-hosts": "127.0.0.1",
                    "autobuild.dev/git-repos": "127.0.0.1/acme/billing",
                },
            },
            "stringData": {"token": "org-t0ken"},
        },
    )
    body = manifest(world.namespace, repo)
    body["spec"]["source"]["credentialsSecret"] = "link"
    world.create(body)
    stalled = eventually(lambda: stalled_condition(world), 30, "Stalled")
    assert stalled["reason"] == "CredentialsNotAllowed"
    assert "autobuild.dev/git-repos" in stalled["message"]
    assert world.jobs() == []
    world.core.patch_namespaced_secret(
        "link",
        world.namespace,
        {"metadata": {"annotations": {"autobuild.dev/git-repos": "127.0.0.1/acme/*"}}},
    )
    eventually(world.jobs, 60, "the build once the token is bound to acme's repositories")
    # The push Secret: bound to another image of the same registry.
    world.core.create_namespaced_secret(
        world.namespace,
        {
            "metadata": {
                "name": "regcred",
                "annotations": {"autobuild.dev/image-repos": f"{registry.host}/acme/web"},
            },
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {
                ".dockerconfigjson": docker_config(registry.host, "pusher", "right-password")
            },
        },
    )
    pushing = manifest(world.namespace, repo, name="pushing")
    pushing["spec"]["image"].update(registry=registry.host, pushSecret="regcred")
    world.create(pushing)
    refused = eventually(lambda: stalled_condition(world, "pushing"), 60, "Stalled")
    assert refused["reason"] == "CredentialsNotAllowed"
    assert f"{registry.host}/acme/pushing" in refused["message"]
    assert "autobuild.dev/image-repos" in refused["message"]
    assert [j for j in world.jobs() if "pushing" in j.metadata.name] == []
    world.core.patch_namespaced_secret(
        "regcred",
        world.namespace,
        {"metadata": {"annotations": {"autobuild.dev/image-repos": f"{registry.host}/acme/*"}}},
    )
    eventually(
        lambda: [
            j
            for j in world.jobs()
            if j.metadata.labels.get("autobuild.dev/automatedbuild") == "pushing"
        ],
        90,
        "the build once the push Secret covers the image",
    )
