"""Visibility and short description on Docker Hub, through the real client, on the fake Hub."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from autobuild.api.conditions import Reason
from autobuild.registry.dockerconfig import Credentials
from autobuild.registry.repository import RepositorySettingsResult, apply_repository_settings
from tests.support.fakedockerhub import FakeDockerHub
from tests.support.registry import Registry

ALICE = Credentials("alice", "alice-token")


@pytest.fixture
def hub() -> Iterator[FakeDockerHub]:
    with FakeDockerHub(
        {"alice": "alice-token", "eve": "eve-token"}, orgs={"acme": {"alice"}}
    ) as fake:
        yield fake


def _apply(
    hub: FakeDockerHub,
    repository: str,
    visibility: str,
    description: str,
    credentials: Credentials | None = ALICE,
    registry: str = "docker.io",
    **options: bool,
) -> RepositorySettingsResult:
    return asyncio.run(
        apply_repository_settings(
            registry,
            repository,
            visibility,
            description,
            credentials,
            dockerhub_url=hub.url,
            **options,  # type: ignore[arg-type]
        )
    )


def test_a_missing_repository_is_created_with_visibility_and_description(
    hub: FakeDockerHub,
) -> None:
    result = _apply(hub, "acme/app", "Private", "Cavity flow solver")
    assert result == RepositorySettingsResult(
        "docker.io/acme/app",
        "DockerHub",
        ok=True,
        visibility="Private",
        description="Cavity flow solver",
        applied=("created the repository (Private)",),
        created=True,
    )
    stored = hub.repositories[("acme", "app")]
    assert (stored["is_private"], stored["description"]) == (True, "Cavity flow solver")
    assert result.as_status() == {
        "name": "docker.io/acme/app",
        "kind": "DockerHub",
        "visibility": "Private",
        "description": "Cavity flow solver",
        "applied": ["created the repository (Private)"],
        "created": True,
    }


def test_an_unchanged_repository_gets_no_write(hub: FakeDockerHub) -> None:
    hub.add_repository("acme", "app", private=False, description="Same")
    result = _apply(hub, "acme/app", "Public", "Same", registry="index.docker.io")
    assert (result.ok, result.applied) == (True, ())
    assert [method for method, _, _ in hub.calls] == ["POST", "GET"]  # login, read


def test_visibility_and_description_changes_are_applied_and_nothing_else_touched(
    hub: FakeDockerHub,
) -> None:
    hub.add_repository("acme", "app", private=False, description="Old")
    hub.add_repository("acme", "other", private=False, description="Not ours")
    # An existing repository: changed because the push Secret allows managing existing ones.
    result = _apply(hub, "acme/app", "Private", "New", manage_existing=True)
    assert result.ok
    assert result.applied == ("set visibility Private", "set the short description")
    assert hub.repositories[("acme", "app")]["is_private"] is True
    assert hub.repositories[("acme", "app")]["description"] == "New"
    assert hub.repositories[("acme", "other")]["description"] == "Not ours"
    assert hub.repositories[("acme", "other")]["is_private"] is False
    touched = [path for _, path, _ in hub.calls if path != "/v2/auth/token"]
    assert touched == [
        "/v2/namespaces/acme/repositories/app",
        "/v2/repositories/acme/app/privacy",
        "/v2/repositories/acme/app/",
    ]


def test_an_existing_private_repository_is_never_made_public(hub: FakeDockerHub) -> None:
    # The attack: an AutomatedBuild naming an existing private repository of the push Secret's
    # account with visibility Public flipped it to Public.
    hub.add_repository("acme", "internal-tools", private=True, description="Internal")
    result = _apply(hub, "acme/internal-tools", "Public", "Now public")
    assert (result.ok, result.reason) == (True, Reason.REPOSITORY_NOT_MANAGED)
    assert "existed before autobuild (it is Private)" in result.message
    assert "autobuild.dev/manage-existing-repos" in result.message
    stored = hub.repositories[("acme", "internal-tools")]
    assert (stored["is_private"], stored["description"]) == (True, "Internal")
    assert [method for method, _, _ in hub.calls] == ["POST", "GET"]  # login, read: no write
    assert (result.visibility, result.description, result.created) == (None, None, False)
    # One that autobuild created (status says so) is still brought to the spec.
    again = _apply(hub, "acme/internal-tools", "Public", "Now public", created=True)
    assert again.applied == ("set visibility Public", "set the short description")
    assert again.created


def test_wrong_credentials_are_repository_unauthorized_without_the_secret(
    hub: FakeDockerHub,
) -> None:
    result = _apply(hub, "acme/app", "Public", "x", Credentials("alice", "wrong-token"))
    assert (result.ok, result.reason) == (False, Reason.REPOSITORY_UNAUTHORIZED)
    assert "incorrect username or password" in result.message
    assert "wrong-token" not in result.message
    assert hub.repositories == {}


def test_a_namespace_the_account_may_not_write_is_refused(hub: FakeDockerHub) -> None:
    result = _apply(hub, "acme/app", "Public", "x", Credentials("eve", "eve-token"))
    assert (result.ok, result.reason) == (False, Reason.REPOSITORY_UNAUTHORIZED)
    assert "POST /v2/namespaces/acme/repositories: HTTP 403: permission denied" in result.message


def test_rate_limit_is_reported_with_the_wait(hub: FakeDockerHub) -> None:
    hub.exhaust_rate_limit()
    result = _apply(hub, "acme/app", "Public", "x")
    assert (result.ok, result.reason) == (False, Reason.RATE_LIMITED)
    assert result.retry_after is not None
    assert 0 < result.retry_after <= 60


def test_unreachable_hub_is_a_transient_reason() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        result = asyncio.run(
            apply_repository_settings(
                "docker.io", "acme/app", "Public", "x", ALICE, dockerhub_url=url
            )
        )
    assert (result.ok, result.reason) == (False, Reason.REGISTRY_UNREACHABLE)


def test_missing_credentials_are_unauthorized(hub: FakeDockerHub) -> None:
    result = _apply(hub, "acme/app", "Public", "x", None)
    assert (result.ok, result.reason) == (False, Reason.REPOSITORY_UNAUTHORIZED)
    assert hub.calls == []


def test_a_plain_registry_says_visibility_is_unsupported(basic_registry: Registry) -> None:
    result = asyncio.run(
        apply_repository_settings(
            basic_registry.host,
            "alice/app",
            "Private",
            "x",
            Credentials("alice", "alice-pw"),
            insecure_registries=[basic_registry.host],
        )
    )
    assert result.ok
    assert (result.kind, result.reason) == ("Registry", Reason.VISIBILITY_UNSUPPORTED)
    assert result.visibility is None
    assert basic_registry.host in result.message
