"""The operator-facing calls: spec.image + push Secret + settings, end to end on real servers."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

from autobuild.api.conditions import Reason
from autobuild.api.models import AutomatedBuild, AutomatedBuildSpec
from autobuild.registry.dockerconfig import DecodedSecret, decode_secret
from autobuild.registry.operations import apply_image_settings, preflight, verify_build
from autobuild.settings import BuildSettings
from tests.support.crane import Crane
from tests.support.fakedockerhub import FakeDockerHub
from tests.support.registry import Registry


def _spec(registry: str, visibility: str = "Public", **image: Any) -> AutomatedBuildSpec:
    return AutomatedBuild.model_validate(
        {
            "apiVersion": "autobuild.dev/v1alpha1",
            "kind": "AutomatedBuild",
            "metadata": {"name": "app", "namespace": "ci"},
            "spec": {
                "source": {"repo": "github.com/alice/app"},
                "image": {
                    "registry": registry,
                    "namespace": "alice",
                    "name": "app",
                    "visibility": visibility,
                    "shortDescription": "The app",
                    "pushSecret": "regcred",
                    **image,
                },
            },
        }
    ).spec


def _secret(key: str, user: str, password: str) -> DecodedSecret:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    config = json.dumps({"auths": {key: {"auth": auth}}}).encode()
    secret = {
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(config).decode()},
    }
    return decode_secret(secret, "regcred")


def test_preflight_from_the_secret(basic_registry: Registry) -> None:
    spec = _spec(basic_registry.host)
    settings = BuildSettings(insecure_registries=(basic_registry.host,))
    good = _secret(f"http://{basic_registry.host}/", "alice", "alice-pw")
    assert asyncio.run(preflight(spec.image, good, settings)).ok
    wrong = _secret(basic_registry.host, "alice", "guess")
    result = asyncio.run(preflight(spec.image, wrong, settings))
    assert (result.ok, result.reason) == (False, Reason.PUSH_UNAUTHORIZED)
    missing = asyncio.run(preflight(spec.image, None, settings))
    assert (missing.ok, missing.reason) == (False, Reason.PUSH_SECRET_INVALID)
    assert "'regcred' not found" in missing.message
    other_host = _secret("ghcr.io", "alice", "alice-pw")
    result = asyncio.run(preflight(spec.image, other_host, settings))
    assert (result.ok, result.reason) == (False, Reason.PUSH_SECRET_INVALID)


def test_verify_build_reads_the_pushed_tags(basic_registry: Registry, tmp_path: Path) -> None:
    crane = Crane(tmp_path, {basic_registry.host: ("alice", "alice-pw")})
    digest = crane.push_random_image(f"{basic_registry.host}/alice/app:1.0")
    crane.tag(f"{basic_registry.host}/alice/app:1.0", "stable")
    spec = _spec(basic_registry.host)
    settings = BuildSettings(insecure_registries=(basic_registry.host,))
    secret = _secret(basic_registry.host, "alice", "alice-pw")
    result = asyncio.run(verify_build(spec.image, ["1.0", "stable"], digest, secret, settings))
    assert result.ok
    assert result.as_status() == {"1.0": digest, "stable": digest}
    wrong = asyncio.run(verify_build(spec.image, ["1.0"], "sha256:" + "0" * 64, secret, settings))
    assert (wrong.ok, wrong.reason) == (False, Reason.DIGEST_MISMATCH)


def test_private_image_and_its_build_cache_are_created_private_on_docker_hub() -> None:
    with FakeDockerHub({"alice": "alice-token"}) as hub:
        spec = _spec("docker.io", "Private")
        secret = _secret("https://index.docker.io/v1/", "alice", "alice-token")
        settings = BuildSettings(dockerhub_url=hub.url)
        result = asyncio.run(apply_image_settings(spec, secret, settings))
        assert result.image.ok, result.image.message
        assert result.cache is not None
        assert result.cache.ok, result.cache.message
        assert hub.repositories[("alice", "app")]["is_private"] is True
        cache = hub.repositories[("alice", "app-buildcache")]
        assert (cache["is_private"], cache["description"]) == (
            True,
            "Build cache of alice/app (autobuild)",
        )
        status = result.as_status()
        assert status["visibility"] == "Private"
        assert status["cache"] == {
            "name": "docker.io/alice/app-buildcache",
            "kind": "DockerHub",
            "visibility": "Private",
            "description": "Build cache of alice/app (autobuild)",
            "applied": ["created the repository (Private)"],
            "created": True,
        }
        assert "alice-token" not in json.dumps(status)


def test_no_build_cache_means_no_cache_repository() -> None:
    with FakeDockerHub({"alice": "alice-token"}) as hub:
        spec = _spec("docker.io")
        spec = spec.model_copy(
            update={"tags": [rule.model_copy(update={"build_cache": False}) for rule in spec.tags]}
        )
        secret = _secret("docker.io", "alice", "alice-token")
        result = asyncio.run(
            apply_image_settings(spec, secret, BuildSettings(dockerhub_url=hub.url))
        )
        assert result.image.ok
        assert result.cache is None
        assert list(hub.repositories) == [("alice", "app")]


def test_an_existing_repository_is_changed_only_when_created_by_autobuild_or_allowed() -> None:
    with FakeDockerHub({"alice": "alice-token"}) as hub:
        hub.add_repository("alice", "app", private=True, description="Theirs")
        spec = _spec("docker.io", "Public")
        spec = spec.model_copy(
            update={"tags": [rule.model_copy(update={"build_cache": False}) for rule in spec.tags]}
        )
        secret = _secret("docker.io", "alice", "alice-token")
        settings = BuildSettings(dockerhub_url=hub.url)
        left = asyncio.run(apply_image_settings(spec, secret, settings))
        assert left.image.reason == Reason.REPOSITORY_NOT_MANAGED
        assert hub.repositories[("alice", "app")]["is_private"] is True
        # Recorded in status as created by autobuild (an earlier apply made it): managed.
        mine = asyncio.run(
            apply_image_settings(spec, secret, settings, created={"docker.io/alice/app"})
        )
        assert (mine.image.ok, mine.image.reason) == (True, "")
        assert mine.image.created
        assert hub.repositories[("alice", "app")]["is_private"] is False
