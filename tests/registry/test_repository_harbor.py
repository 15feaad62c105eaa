"""Visibility and short description on Harbor, through the real client, on the fake Harbor."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from autobuild.api.conditions import Reason
from autobuild.registry.dockerconfig import Credentials
from autobuild.registry.repository import RepositorySettingsResult, apply_repository_settings
from tests.support.fakeharbor import FakeHarbor

ALICE = Credentials("alice", "alice-pw")


@pytest.fixture
def harbor() -> Iterator[FakeHarbor]:
    roles = {"team": {"alice": "projectAdmin"}, "shared": {"alice": "developer"}}
    with FakeHarbor({"alice": "alice-pw", "admin": "admin-pw"}, roles) as fake:
        yield fake


def _apply(
    harbor: FakeHarbor,
    repository: str,
    visibility: str,
    description: str,
    credentials: Credentials = ALICE,
    also_owned: tuple[str, ...] = (),
    manage_existing: bool = False,
) -> RepositorySettingsResult:
    return asyncio.run(
        apply_repository_settings(
            harbor.host,
            repository,
            visibility,
            description,
            credentials,
            insecure_registries=[harbor.host],
            also_owned=also_owned,
            manage_existing=manage_existing,
        )
    )


def test_a_missing_project_is_created_with_the_visibility_and_the_description_waits(
    harbor: FakeHarbor,
) -> None:
    result = _apply(harbor, "newproj/app", "Private", "Solver")
    assert result.ok
    assert (result.kind, result.reason) == ("Harbor", Reason.REPOSITORY_PENDING)
    assert result.applied == ("created the project (Private)",)
    assert (result.visibility, result.description) == ("Private", None)
    assert harbor.projects["newproj"].public is False


def test_description_is_set_when_the_repository_exists(harbor: FakeHarbor) -> None:
    harbor.add_project("team", public=True, repositories={"app": "old"})
    # Existing before autobuild: changed because the push Secret allows it.
    result = _apply(harbor, "team/app", "Public", "Solver", manage_existing=True)
    assert (result.ok, result.reason) == (True, "")
    assert result.applied == ("set the short description",)
    assert harbor.projects["team"].repositories["app"]["description"] == "Solver"
    again = _apply(harbor, "team/app", "Public", "Solver")
    assert (again.ok, again.applied) == (True, ())


def test_nested_repository_names_are_encoded_twice(harbor: FakeHarbor) -> None:
    harbor.add_project("team", public=True, repositories={"sub/app": ""})
    result = _apply(harbor, "team/sub/app", "Public", "Nested", manage_existing=True)
    assert result.ok, result.message
    assert harbor.projects["team"].repositories["sub/app"]["description"] == "Nested"
    assert any("/repositories/sub%252Fapp" in path for _, path, _ in harbor.calls)


def test_project_visibility_changes_when_it_holds_only_our_repositories(
    harbor: FakeHarbor,
) -> None:
    harbor.add_project("team", public=True, repositories={"app": "x", "app-buildcache": ""})
    result = _apply(
        harbor,
        "team/app",
        "Private",
        "x",
        also_owned=("team/app-buildcache",),
        manage_existing=True,
    )
    assert (result.ok, result.applied) == (True, ("set the project's visibility Private",))
    assert harbor.projects["team"].public is False


def test_project_visibility_is_never_changed_for_other_repositories(harbor: FakeHarbor) -> None:
    harbor.add_project("shared", public=True, repositories={"app": "x", "theirs": "y"})
    result = _apply(harbor, "shared/app", "Private", "x")
    assert (result.ok, result.reason) == (False, Reason.VISIBILITY_CONFLICT)
    assert "shared/theirs" in result.message
    assert harbor.projects["shared"].public is True
    assert [method for method, _, _ in harbor.calls if method != "GET"] == []


def test_wrong_credentials_are_repository_unauthorized(harbor: FakeHarbor) -> None:
    harbor.add_project("team", public=False, repositories={"app": "x"})
    result = _apply(harbor, "team/app", "Private", "x", Credentials("alice", "nope"))
    assert (result.ok, result.reason) == (False, Reason.REPOSITORY_UNAUTHORIZED)
    assert "nope" not in result.message


def test_a_role_without_project_rights_is_refused(harbor: FakeHarbor) -> None:
    harbor.add_project("shared", public=True, repositories={"app": "x"})
    result = _apply(harbor, "shared/app", "Private", "x", manage_existing=True)
    assert (result.ok, result.reason) == (False, Reason.REPOSITORY_UNAUTHORIZED)
    assert "PUT /api/v2.0/projects/shared: HTTP 403" in result.message


def test_all_pages_of_a_large_project_are_read(harbor: FakeHarbor) -> None:
    repositories = {f"r{index:03}": "" for index in range(150)}
    harbor.add_project("team", public=True, repositories={**repositories, "app": "x"})
    result = _apply(harbor, "team/app", "Private", "x")
    assert (result.ok, result.reason) == (False, Reason.VISIBILITY_CONFLICT)
    pages = [path for _, path, _ in harbor.calls if "/repositories?page=" in path]
    assert [path.split("page=")[1].split("&")[0] for path in pages] == ["1", "2"]


def test_an_existing_project_and_repository_are_left_as_they_are(harbor: FakeHarbor) -> None:
    harbor.add_project("team", public=False, repositories={"app": "theirs"})
    result = _apply(harbor, "team/app", "Public", "ours")
    assert (result.ok, result.reason) == (True, Reason.REPOSITORY_NOT_MANAGED)
    assert "existed before autobuild (it is Private)" in result.message
    assert harbor.projects["team"].public is False
    assert harbor.projects["team"].repositories["app"]["description"] == "theirs"
    assert [method for method, _, _ in harbor.calls if method != "GET"] == []


def test_a_repository_missing_before_the_first_push_is_ours(harbor: FakeHarbor) -> None:
    harbor.add_project("team", public=True, repositories={})
    result = _apply(harbor, "team/app", "Public", "ours")
    assert (result.reason, result.created) == (Reason.REPOSITORY_PENDING, True)
