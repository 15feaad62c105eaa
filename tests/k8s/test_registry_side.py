"""The registry side of a build: the push preflight, a registry with a private CA, digests
checked against the registry, and a Docker Hub repository the operator must not take over."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.crane import Crane
from tests.support.gitserver import Repo
from tests.support.operator_harness import (
    DIGEST,
    GROUP,
    PLURAL,
    VERSION,
    World,
    docker_config,
    manifest,
    stalled_condition,
    trigger,
)
from tests.support.operator_process import Operator, eventually
from tests.support.registry import Registry

pytestmark = pytest.mark.k8s


def test_an_existing_docker_hub_repository_is_not_taken_over(
    world: World, repo: Repo, k8s_cluster: Any, operator: Operator, tmp_path: Path
) -> None:
    """An AutomatedBuild naming an existing private Docker Hub repository as Public leaves it
    Private (VisibilityApplied=False/RepositoryNotManaged) until the push Secret's owner allows
    autobuild to manage existing repositories."""
    from tests.support.fakedockerhub import FakeDockerHub

    with contextlib.ExitStack() as stack:
        hub = stack.enter_context(FakeDockerHub({"alice": "alice-token"}, orgs={"acme": {"alice"}}))
        hub.add_repository("acme", "internal-tools", private=True, description="Internal")
        operator.stop()
        stack.callback(operator.start)
        env = {"AUTOBUILD_DOCKERHUB_URL": hub.url}
        with_hub = Operator(
            k8s_cluster.kubeconfig, tmp_path / "hub.log", operator.registry, env=env
        )
        stack.callback(with_hub.stop)
        with_hub.start()
        world.push_secret(docker_config("https://index.docker.io/v1/", "alice", "alice-token"))
        # No rule builds on creation: nothing is pushed, only the settings are applied.
        rules = [{"source": "main", "dockerTag": "latest", "autobuild": False, "buildCache": False}]
        body = manifest(world.namespace, repo, name="internal-tools", tags=rules)
        body["spec"]["image"].update(registry="docker.io", pushSecret="regcred")
        body["spec"]["image"]["shortDescription"] = "Now public"
        world.create(body)

        def visibility() -> dict[str, Any] | None:
            conditions = world.status("internal-tools").get("conditions") or []
            found = next((c for c in conditions if c["type"] == "VisibilityApplied"), None)
            return found if found is not None and found["reason"] != "Applying" else None

        left = eventually(visibility, 60, "VisibilityApplied")
        assert (left["status"], left["reason"]) == ("False", "RepositoryNotManaged")
        stored = hub.repositories[("acme", "internal-tools")]
        assert (stored["is_private"], stored["description"]) == (True, "Internal")
        assert [m for m, path, _ in hub.calls if path != "/v2/auth/token"] == ["GET"]
        world.core.patch_namespaced_secret(
            "regcred",
            world.namespace,
            {"metadata": {"annotations": {"autobuild.dev/manage-existing-repos": "true"}}},
        )
        eventually(
            lambda: (v := visibility()) and v["status"] == "True", 60, "applied once allowed"
        )
        assert hub.repositories[("acme", "internal-tools")]["is_private"] is False


def registry_manifest(world: World, repo: Repo, registry: Registry, **spec: Any) -> dict[str, Any]:
    body = manifest(world.namespace, repo, **spec)
    body["spec"]["image"]["registry"] = registry.host
    body["spec"]["image"]["pushSecret"] = "regcred"
    return body


def test_push_preflight_refuses_credentials_that_cannot_push(
    world: World, repo: Repo, registry: Registry
) -> None:
    world.push_secret(docker_config(registry.host, "pusher", "wrong"))
    world.create(registry_manifest(world, repo, registry))
    stalled = eventually(lambda: stalled_condition(world), 60, "Stalled")
    assert stalled["reason"] == "PushUnauthorized"
    assert registry.host in stalled["message"]
    assert "wrong" not in json.dumps(world.status())
    assert world.jobs() == []
    visibility = next(c for c in world.status()["conditions"] if c["type"] == "VisibilityApplied")
    assert visibility["reason"] == "VisibilityUnsupported"
    world.core.patch_namespaced_secret(
        "regcred",
        world.namespace,
        {
            "stringData": {
                ".dockerconfigjson": docker_config(registry.host, "pusher", "right-password")
            }
        },
    )
    eventually(world.jobs, 90, "the build once the Secret can push")


@pytest.fixture(scope="module")
def tls_registry() -> Iterator[Registry]:
    """A real registry with a self-signed certificate (HTTPS) whose one user may push; not
    in AUTOBUILD_INSECURE_REGISTRIES: only its CA (``ca_pem``) makes it trusted."""
    with Registry(users={"pusher": "right-password"}, tls=True) as running:
        yield running


def test_a_private_ca_registry_builds_only_with_its_ca_secret(
    world: World, repo: Repo, tls_registry: Registry
) -> None:
    world.push_secret(docker_config(tls_registry.host, "pusher", "right-password"))
    world.create(registry_manifest(world, repo, tls_registry))
    stalled = eventually(lambda: stalled_condition(world), 60, "Stalled")
    assert stalled["reason"] == "RegistryCertificateUntrusted"
    assert (
        f"registry {tls_registry.host} presented a TLS certificate that is not trusted"
        in (stalled["message"])
    )
    assert "spec.image.caSecret" in stalled["message"]
    assert world.jobs() == []
    world.core.create_namespaced_secret(
        world.namespace,
        {
            "metadata": {"name": "registry-ca"},
            "stringData": {"ca.crt": tls_registry.ca_pem.decode()},
        },
    )
    world.custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        world.namespace,
        PLURAL,
        "app",
        {"spec": {"image": {"caSecret": "registry-ca"}}},
    )
    (job,) = eventually(world.jobs, 90, "the build once the CA is trusted")
    pod = job.spec.template.spec
    assert (
        f"--registry-certificate={tls_registry.host}=/kaniko/registry-ca/ca.crt"
        in pod.containers[0].args
    )
    assert not [a for a in pod.containers[0].args if tls_registry.host in a and "insecure" in a]
    (ca_volume,) = [v for v in pod.volumes if v.name == "registry-ca"]
    assert ca_volume.secret.secret_name == "registry-ca"
    assert "PushUnauthorized" not in json.dumps(world.status())
    # The preflight passed against the real registry: it started (and cancelled) an upload.
    assert "POST /v2/acme/app/blobs/uploads/" in tls_registry.log_text()
    eventually(lambda: stalled_condition(world) is None, 60, "no longer Stalled")


def test_digests_are_checked_against_the_registry(
    world: World, repo: Repo, registry: Registry, k8s_cluster: Any, tmp_path: Path
) -> None:
    crane = Crane(tmp_path, {registry.host: ("pusher", "right-password")})
    pushed = crane.push_random_image(f"{registry.host}/acme/app:latest")
    world.push_secret(docker_config(registry.host, "pusher", "right-password"))
    world.create(registry_manifest(world, repo, registry, runPolicy="Parallel"))
    (job,) = eventually(world.jobs, 60, "creation build")
    world.finish_pod(job.metadata.name, 0, pushed)  # Kaniko's digest file says what it pushed
    build = eventually(
        lambda: (b := world.builds()) and b[0]["phase"] == "Succeeded" and b[0], 60, "Succeeded"
    )
    assert build["digests"] == {"latest": pushed}
    assert build.get("reason") is None
    trigger(k8s_cluster, world)
    second = eventually(
        lambda: next((j for j in world.jobs() if j.metadata.name != job.metadata.name), None),
        30,
        "second build",
    )
    world.finish_pod(second.metadata.name, 0, DIGEST)  # not what the registry holds
    mismatch = eventually(
        lambda: (b := world.builds()) and b[0].get("reason") == "DigestMismatch" and b[0],
        60,
        "DigestMismatch",
    )
    assert mismatch["digests"] == {"latest": pushed}
    world.wait_events("DigestMismatch")
