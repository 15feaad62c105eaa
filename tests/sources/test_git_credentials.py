"""The git credentials of a rendered Job really work: ls-remote and clone on the loopback server.

The Job's env is resolved against a Secret as the kubelet does (``value`` or ``secretKeyRef``),
then sent as Kaniko sends it (go-git ``BasicAuth{Username, Password}``); the operator's own
``ls_remote`` gets its username from ``credentials.git_username``. The server checks the
password and, when a repository is configured with one, the username too.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path

import pytest

from autobuild.api.models import AutomatedBuild, Provider
from autobuild.planning.credentials import git_username
from autobuild.planning.job import render_job
from autobuild.planning.planner import PushEvent, plan_builds
from autobuild.settings import BuildSettings
from autobuild.sources.git import SourceUnreachable, ls_remote
from tests.support.gitserver import GitServer, Repo, git_env

TOKEN = "glpat-S3cretTokenValue0123456789"


def _automated_build(repo: Repo, provider: Provider) -> AutomatedBuild:
    return AutomatedBuild.model_validate(
        {
            "apiVersion": "autobuild.dev/v1alpha1",
            "kind": "AutomatedBuild",
            "metadata": {"name": "app", "namespace": "ci", "uid": str(uuid.uuid4())},
            "spec": {
                "source": {
                    "repo": repo.clone_url,
                    "provider": provider.value,
                    "credentialsSecret": "linked-account",
                },
                "image": {
                    "namespace": "acme",
                    "name": "app",
                    "visibility": "Private",
                    "shortDescription": "x",
                },
            },
        }
    )


def _job_env(ab: AutomatedBuild, commit: str, secret: Mapping[str, str]) -> dict[str, str]:
    """The Kaniko container's env as the kubelet sets it from the Job and the Secret."""
    (build,) = plan_builds(ab.spec, PushEvent.parse("main", commit)).builds
    job = render_job(ab, build, BuildSettings(), secret_keys=set(secret))
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env: dict[str, str] = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "linked-account"
            env[item["name"]] = secret[ref["key"]]
    return env


def _kaniko_basic_auth(env: Mapping[str, str]) -> tuple[str, str]:
    """Kaniko's git auth: GIT_TOKEN wins and becomes the username with an empty password."""
    if env.get("GIT_TOKEN"):
        return env["GIT_TOKEN"], ""
    return env.get("GIT_USERNAME", ""), env.get("GIT_PASSWORD", "")


def _clone(url: str, username: str, password: str, into: Path) -> subprocess.CompletedProcess[str]:
    """``git clone`` sending exactly ``Authorization: Basic username:password``, as go-git does."""
    header = "Authorization: Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    env = git_env(
        into.parent,
        {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.extraHeader",
            "GIT_CONFIG_VALUE_0": header,
            "GIT_ASKPASS": "/bin/false",
        },
    )
    return subprocess.run(
        ["git", "-c", "credential.helper=", "clone", "-q", url, str(into)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _head(work: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"],
        cwd=work,
        env=git_env(work.parent),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.mark.parametrize(
    ("provider", "secret", "server_username"),
    [
        (Provider.GITHUB, {"token": TOKEN}, "x-access-token"),
        (Provider.GIT, {"token": TOKEN}, "x-access-token"),
        (Provider.GITLAB, {"token": TOKEN}, "oauth2"),
        (Provider.BITBUCKET, {"token": TOKEN}, "x-token-auth"),
        (Provider.GIT, {"token": TOKEN, "username": "gitea-bot"}, "gitea-bot"),
        (Provider.GITHUB, {"token": TOKEN, "username": "octocat"}, "octocat"),
    ],
)
def test_the_job_and_ls_remote_send_the_credentials_the_host_wants(
    git_server: GitServer,
    tmp_path: Path,
    provider: Provider,
    secret: dict[str, str],
    server_username: str,
) -> None:
    repo = git_server.create_repo(
        "acme",
        f"r{uuid.uuid4().hex[:10]}",
        private_token=TOKEN,
        private_username=server_username,
    )
    commit = repo.commit("main", {"Dockerfile": "FROM scratch\n"}, "first")
    ab = _automated_build(repo, provider)

    env = _job_env(ab, commit, secret)
    username, password = _kaniko_basic_auth(env)
    assert (username, password) == (server_username, TOKEN)
    cloned = _clone(repo.clone_url, username, password, tmp_path / "work")
    assert cloned.returncode == 0, cloned.stderr
    assert _head(tmp_path / "work") == commit

    operator_username = git_username(ab.spec.provider, secret)
    assert operator_username == username
    refs = asyncio.run(ls_remote(repo.clone_url, token=secret["token"], username=operator_username))
    assert refs == {"refs/heads/main": commit}


def test_the_server_refuses_a_wrong_username(git_server: GitServer, tmp_path: Path) -> None:
    """Without this the tests above could not tell a right username from any username."""
    repo = git_server.create_repo(
        "acme", f"r{uuid.uuid4().hex[:10]}", private_token=TOKEN, private_username="gitea-bot"
    )
    repo.commit("main", {"Dockerfile": "FROM scratch\n"}, "first")
    ab = _automated_build(repo, Provider.GIT)
    username, password = _kaniko_basic_auth(
        _job_env(ab, repo.heads()["refs/heads/main"], {"token": TOKEN})
    )
    assert username == "x-access-token"  # no username key: the provider's default

    refused = _clone(repo.clone_url, username, password, tmp_path / "work")
    assert refused.returncode != 0
    assert "could not read Username" in refused.stderr  # 401: git wanted other credentials
    with pytest.raises(SourceUnreachable) as info:
        asyncio.run(ls_remote(repo.clone_url, token=TOKEN, username=username))
    assert info.value.reason == "AuthenticationFailed"
    # The right username with a wrong token fails as well.
    with pytest.raises(SourceUnreachable):
        asyncio.run(ls_remote(repo.clone_url, token=TOKEN + "x", username="gitea-bot"))


def test_token_as_username_with_an_empty_password_is_refused(
    git_server: GitServer, tmp_path: Path
) -> None:
    """What ``GIT_TOKEN`` made Kaniko send; hosts that check the password refuse it."""
    repo = git_server.create_repo("acme", f"r{uuid.uuid4().hex[:10]}", private_token=TOKEN)
    repo.commit("main", {"Dockerfile": "FROM scratch\n"}, "first")
    refused = _clone(repo.clone_url, *_kaniko_basic_auth({"GIT_TOKEN": TOKEN}), tmp_path / "w")
    assert refused.returncode != 0
