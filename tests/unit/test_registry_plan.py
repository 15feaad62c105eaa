"""The pure repository-settings plans (Docker Hub and Harbor) and the Docker Hub URL setting."""

from __future__ import annotations

import pytest

from autobuild.api.conditions import Reason
from autobuild.registry.api import error_message, retry_after_seconds
from autobuild.registry.plan import (
    CreateProject,
    CreateRepository,
    Desired,
    HarborProject,
    Observed,
    SetDescription,
    SetPrivacy,
    SetProjectVisibility,
    describe,
    plan_docker_hub,
    plan_harbor,
)
from autobuild.settings import DEFAULT_DOCKERHUB_URL, BuildSettings

PRIVATE = Desired(private=True, description="Solver")


def test_docker_hub_plan() -> None:
    assert plan_docker_hub(PRIVATE, None) == (CreateRepository(True, "Solver"),)
    assert plan_docker_hub(PRIVATE, Observed(True, "Solver")) == ()
    assert plan_docker_hub(PRIVATE, Observed(False, "Solver")) == (SetPrivacy(True),)
    assert plan_docker_hub(PRIVATE, Observed(True, "")) == (SetDescription("Solver"),)
    assert plan_docker_hub(PRIVATE, Observed(False, "old")) == (
        SetPrivacy(True),
        SetDescription("Solver"),
    )


def test_harbor_plan_missing_project_creates_it_and_waits_for_the_repository() -> None:
    plan = plan_harbor(PRIVATE, "team", None, None, ["team/app"])
    assert plan.steps == (CreateProject(public=False),)
    assert plan.reason == Reason.REPOSITORY_PENDING


def test_harbor_plan_changes_visibility_only_for_a_project_of_our_own() -> None:
    ours = HarborProject(public=True, repositories=("team/app", "team/app/buildcache"))
    plan = plan_harbor(
        PRIVATE, "team", ours, Observed(False, "Solver"), ["team/app", "team/app/buildcache"]
    )
    assert (plan.steps, plan.reason) == ((SetProjectVisibility(public=False),), "")
    shared = HarborProject(
        public=True, repositories=("team/app", "team/a", "team/b", "team/c", "team/d")
    )
    plan = plan_harbor(PRIVATE, "team", shared, Observed(False, "old"), ["team/app"])
    assert plan.steps == (SetDescription("Solver"),)
    assert plan.reason == Reason.VISIBILITY_CONFLICT
    assert "team/a, team/b, team/c and more" in plan.message


def test_step_texts() -> None:
    assert describe(CreateRepository(False, "x")) == "created the repository (Public)"
    assert describe(SetProjectVisibility(True)) == "set the project's visibility Public"


def test_retry_after_and_error_messages() -> None:
    assert retry_after_seconds({"Retry-After": "30"}, now=0) == 30
    assert retry_after_seconds({"X-Retry-After": "1060"}, now=1000) == 60
    assert retry_after_seconds({}, now=0) is None
    assert error_message({"message": "permission denied", "errinfo": {}}, 403) == (
        "HTTP 403: permission denied"
    )
    assert error_message({"errors": [{"code": "NOT_FOUND", "message": "gone"}]}, 404) == (
        "HTTP 404: gone"
    )
    assert error_message(None, 400) == "HTTP 400"


def test_dockerhub_url_setting() -> None:
    assert BuildSettings.from_env({}).dockerhub_url == DEFAULT_DOCKERHUB_URL
    custom = BuildSettings.from_env({"AUTOBUILD_DOCKERHUB_URL": "http://127.0.0.1:9/"})
    assert custom.dockerhub_url == "http://127.0.0.1:9"
    with pytest.raises(ValueError, match="AUTOBUILD_DOCKERHUB_URL"):
        BuildSettings.from_env({"AUTOBUILD_DOCKERHUB_URL": "hub.docker.com"})


def test_status_says_which_repositories_autobuild_created() -> None:
    from autobuild.planning.registry_gate import created_repositories

    repository = {
        "name": "docker.io/acme/app",
        "created": True,
        "cache": {"name": "docker.io/acme/app-buildcache"},
    }
    assert created_repositories({"status": {"repository": repository}}) == {"docker.io/acme/app"}
    assert created_repositories({"status": {}}) == frozenset()
    assert created_repositories({"status": {"repository": {"created": "nonsense"}}}) == set()
