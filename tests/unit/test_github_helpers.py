"""The pure GitHub helpers: commit statuses, hook URL and Secret, manifests, settings."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from factories import COMMIT, automated_build
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from autobuild.api.models import BuildPhase, BuildRecord, BuildRule, SourceSpec, Trigger
from autobuild.cli.render import load_automated_builds
from autobuild.planning.github import (
    CommitState,
    commit_state,
    commit_status,
    format_duration,
    hook_secret_manifest,
    hook_secret_name,
    hook_url,
    status_context,
    status_description,
    target_url,
)
from autobuild.planning.planner import PushEvent, plan_builds
from autobuild.settings import GitHubSettings
from autobuild.sources.github import (
    GitHubError,
    Repository,
    dockerfile_path,
    manifest_for,
    new_hook_secret,
    repository_full_name,
)
from autobuild.yamlio import dump


def test_every_phase_has_a_commit_state() -> None:
    states = {phase: commit_state(phase) for phase in BuildPhase}
    assert states == {
        BuildPhase.PENDING: CommitState.PENDING,
        BuildPhase.QUEUED: CommitState.PENDING,
        BuildPhase.RUNNING: CommitState.PENDING,
        BuildPhase.SUCCEEDED: CommitState.SUCCESS,
        BuildPhase.FAILED: CommitState.FAILURE,
        BuildPhase.TIMED_OUT: CommitState.ERROR,
        BuildPhase.CANCELLED: CommitState.ERROR,
    }


def test_status_context_names_image_and_first_tag() -> None:
    spec = automated_build().spec
    assert (
        status_context(spec.image, ["latest", "1.0"])
        == "autobuild/acme/dockertext-cavityflow:latest"
    )
    other = automated_build(
        image={**spec.image.model_dump(by_alias=True), "registry": "registry.example:5000"}
    ).spec.image
    assert (
        status_context(other, ["v1"])
        == "autobuild/registry.example:5000/acme/dockertext-cavityflow:v1"
    )
    assert status_context(spec.image, []) == "autobuild/acme/dockertext-cavityflow"


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (45, "45s"), (125, "2m 5s"), (3603, "1h 0m 3s"), (-3, "0s")]
)
def test_format_duration(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text


def test_status_descriptions() -> None:
    assert status_description(BuildPhase.QUEUED, 12) == "Build queued"
    assert status_description(BuildPhase.RUNNING, 30) == "Building for 30s"
    assert status_description(BuildPhase.SUCCEEDED, 125) == "Build succeeded in 2m 5s"
    assert (
        status_description(BuildPhase.FAILED, 40, "PushDenied")
        == "Build failed after 40s: PushDenied"
    )
    assert (
        status_description(BuildPhase.CANCELLED, None, "Cancelled") == "Build cancelled: Cancelled"
    )
    assert status_description(BuildPhase.SUCCEEDED, 5, "ignored") == "Build succeeded in 5s"


@given(
    phase=st.sampled_from(list(BuildPhase)),
    duration=st.one_of(st.none(), st.integers(min_value=0, max_value=10**9)),
    reason=st.one_of(st.none(), st.text()),
)
def test_status_description_fits_githubs_limit(
    phase: BuildPhase, duration: int | None, reason: str | None
) -> None:
    assert 0 < len(status_description(phase, duration, reason)) <= 140


def test_target_url_from_the_template() -> None:
    template = "https://dash.example/{namespace}/{name}/builds/{build}?commit={commit}"
    assert target_url("", namespace="ci", name="app", build="b1", commit=COMMIT) is None
    assert (
        target_url(template, namespace="ci", name="app", build="a b/c", commit=COMMIT)
        == f"https://dash.example/ci/app/builds/a%20b%2Fc?commit={COMMIT}"
    )


def test_commit_status_of_a_build_record() -> None:
    ab = automated_build()
    record = BuildRecord(
        id="b-7",
        rule=0,
        source_type="Branch",
        source_ref="main",
        commit=COMMIT,
        trigger=Trigger.PUSH,
        tags=["latest", "main"],
        phase=BuildPhase.FAILED,
        start_time=datetime(2026, 1, 1, tzinfo=UTC),
        duration_seconds=61,
        reason="BuildFailed",
    )
    status = commit_status(ab.spec.image, "ci", "cavityflow", record, "https://d/{name}/{build}")
    assert status.state == CommitState.FAILURE
    assert status.context == "autobuild/acme/dockertext-cavityflow:latest"
    assert status.description == "Build failed after 1m 1s: BuildFailed"
    assert status.target_url == "https://d/cavityflow/b-7"


def test_hook_url_names_the_automated_build() -> None:
    assert (
        hook_url("https://autobuild.example.com/", "ci", "app")
        == "https://autobuild.example.com/hooks/github?automatedbuild=ci/app"
    )
    assert hook_url("https://a.example/base", "ns", "x.y").startswith(
        "https://a.example/base/hooks/github?"
    )


@pytest.mark.parametrize(
    ("repo", "full_name"),
    [
        ("github.com/acme/app", "acme/app"),
        ("https://github.com/acme/app.git", "acme/app"),
        ("https://ghe.example:8443/team/tool/", "team/tool"),
    ],
)
def test_repository_full_name(repo: str, full_name: str) -> None:
    assert repository_full_name(SourceSpec(repo=repo)) == full_name


def test_repository_full_name_needs_owner_and_name_only() -> None:
    with pytest.raises(GitHubError, match="not a GitHub OWNER/NAME"):
        repository_full_name(SourceSpec(repo="gitlab.example/group/sub/app"))


@pytest.mark.parametrize(
    ("context", "dockerfile", "path"),
    [
        ("/", "Dockerfile", "Dockerfile"),
        ("/docker", "Dockerfile.prod", "docker/Dockerfile.prod"),
        ("app/", "build/Dockerfile", "app/build/Dockerfile"),
        ("./app", "./Dockerfile", "app/Dockerfile"),
    ],
)
def test_dockerfile_path_joins_context_and_dockerfile(
    context: str, dockerfile: str, path: str
) -> None:
    rule = BuildRule(source="main", context=context, dockerfile=dockerfile)
    assert dockerfile_path(rule) == path


def test_hook_secret_manifest_is_owned_and_labelled() -> None:
    secret = new_hook_secret()
    assert len(secret) == 64
    assert secret != new_hook_secret()
    manifest = hook_secret_manifest("ci", "app", "uid-1", secret)
    meta = manifest["metadata"]
    assert (meta["name"], meta["namespace"]) == ("app-github-hook", "ci")
    assert meta["labels"]["autobuild.dev/uid"] == "uid-1"
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "autobuild.dev/v1alpha1",
            "kind": "AutomatedBuild",
            "name": "app",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": False,
        }
    ]
    assert manifest["stringData"] == {"secret": secret}
    assert secret not in str(meta)


def test_hook_secret_names_of_long_names_stay_valid_and_distinct() -> None:
    long_a = "a" * 250
    long_b = "a" * 249 + "b"
    names = {hook_secret_name(long_a), hook_secret_name(long_b)}
    assert len(names) == 2
    assert all(len(name) <= 253 and name.endswith("-github-hook") for name in names)


REPO = Repository(
    full_name="Octo-Org/My_App",
    clone_url="https://github.com/Octo-Org/My_App.git",
    html_url="https://github.com/Octo-Org/My_App",
    private=True,
    default_branch="trunk",
    description="Solves\n  cavity flows " + "x" * 120,
    admin=True,
)


def test_manifest_for_a_github_com_repository_renders_builds() -> None:
    document = manifest_for(REPO, credentials_secret="github-link", namespace="ci")
    spec = document["spec"]
    assert document["metadata"] == {"name": "my-app", "namespace": "ci"}
    assert spec["source"] == {
        "repo": "github.com/Octo-Org/My_App",
        "credentialsSecret": "github-link",
    }
    image = spec["image"]
    assert (image["namespace"], image["name"], image["visibility"]) == (
        "octo-org",
        "my_app",
        "Private",
    )
    assert image["shortDescription"].startswith("Solves cavity flows xx")
    assert len(image["shortDescription"]) == 100

    (parsed,) = load_automated_builds(dump(document), "new")
    tag_build = plan_builds(
        parsed.spec, PushEvent.parse("refs/tags/v1.2.3", COMMIT, "", Trigger.PUSH)
    )
    assert [b.tags for b in tag_build.builds] == [("1.2.3",)]
    branch = plan_builds(parsed.spec, PushEvent.parse("refs/heads/trunk", COMMIT, "", Trigger.PUSH))
    assert [b.tags for b in branch.builds] == [("latest",)]


def test_manifest_for_enterprise_names_the_provider_and_takes_overrides() -> None:
    enterprise = Repository(
        **{
            **REPO.__dict__,
            "clone_url": "https://ghe.example/Octo-Org/My_App.git",
            "private": False,
            "description": "",
        }
    )
    document = manifest_for(
        enterprise,
        credentials_secret="ghe",
        image_namespace="team",
        image_name="tool",
        registry="registry.example",
        private=True,
    )
    spec = document["spec"]
    assert spec["source"]["provider"] == "github"
    assert spec["source"]["repo"] == "https://ghe.example/Octo-Org/My_App.git"
    assert spec["image"] == {
        "registry": "registry.example",
        "namespace": "team",
        "name": "tool",
        "visibility": "Private",
        "shortDescription": "Octo-Org/My_App",
    }
    assert document["metadata"] == {"name": "tool"}


def test_manifest_for_refuses_an_invalid_image_name() -> None:
    with pytest.raises(ValidationError):
        manifest_for(REPO, credentials_secret="s", image_name="Not Valid")


def test_github_settings_from_env() -> None:
    assert GitHubSettings.from_env({}) == GitHubSettings("https://api.github.com", "", "")
    settings = GitHubSettings.from_env(
        {
            "AUTOBUILD_GITHUB_URL": "https://ghe.example/api/v3/",
            "AUTOBUILD_PUBLIC_URL": "https://autobuild.example.com/",
            "AUTOBUILD_BUILD_URL_TEMPLATE": "https://d/{namespace}/{name}/{build}/{commit}",
            "AUTOBUILD_UNHOOK_TIMEOUT": "45",
        }
    )
    assert settings.github_url == "https://ghe.example/api/v3"
    assert settings.public_url == "https://autobuild.example.com"
    assert settings.unhook_timeout == 45


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("AUTOBUILD_GITHUB_URL", "api.github.com", "http:// or https://"),
        ("AUTOBUILD_PUBLIC_URL", "https://user:pw@example.com", "credentials"),
        ("AUTOBUILD_BUILD_URL_TEMPLATE", "https://d/{id}", "unknown placeholder"),
        ("AUTOBUILD_BUILD_URL_TEMPLATE", "https://d/{", "Single '{'"),
        ("AUTOBUILD_BUILD_URL_TEMPLATE", "/{name}", "http:// or https://"),
        ("AUTOBUILD_UNHOOK_TIMEOUT", "5m", "whole seconds"),
    ],
)
def test_github_settings_refuse_bad_values(variable: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GitHubSettings.from_env({variable: value})
