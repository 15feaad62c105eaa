"""``autobuild repos`` and ``autobuild new`` as users run them, against the fake GitHub API.

The token comes from ``--token-file`` here, so no cluster is needed; reading it from a Secret
and ``autobuild dockerfile`` (which reads an AutomatedBuild's status) are tested on the real
control plane in tests/k8s/test_github_cli.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from autobuild.cli.render import load_automated_builds
from tests.support.fakegithub import FakeGitHub

TOKEN = "ghp_cl1T0kenValue0123456789abcdefABCDEFGH"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub(prefix="/api/v3") as server:
        server.add_user("octo", token=TOKEN)
        server.add_repo(
            "octo/Cavity-Flow",
            private=True,
            description="Cavity\nflow solver",
            default_branch="trunk",
        )
        server.add_repo("octo/lib")
        server.add_repo("acme/shared", writers={"octo"})
        server.add_repo("acme/hidden", private=True)
        yield server


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("token") / "token"
    path.write_text(TOKEN + "\n")
    return path


def autobuild(fake: FakeGitHub, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, AUTOBUILD_GITHUB_URL=fake.base_url)
    result = subprocess.run(
        [sys.executable, "-m", "autobuild.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert TOKEN not in result.stdout + result.stderr
    return result


def test_repos_lists_what_the_account_can_build(fake: FakeGitHub, token_file: Path) -> None:
    result = autobuild(fake, "repos", "--token-file", str(token_file))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "REPOSITORY         VISIBILITY   DEFAULT BRANCH   WEBHOOK",
        "acme/shared        public       main             manual (no admin rights)",
        "octo/Cavity-Flow   private      trunk            automatic",
        "octo/lib           public       main             automatic",
    ]


def test_repos_with_a_refused_token(fake: FakeGitHub, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_text("ghp_revoked")
    result = autobuild(fake, "repos", "--token-file", str(bad))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "autobuild: cannot list the repositories: the token was refused (expired or revoked?)"
    )


def test_repos_needs_a_token_source(fake: FakeGitHub) -> None:
    result = autobuild(fake, "repos")
    assert result.returncode == 1
    assert "--secret NAME" in result.stderr


def test_github_url_flag_wins_and_is_checked(fake: FakeGitHub, token_file: Path) -> None:
    result = autobuild(fake, "repos", "--token-file", str(token_file), "--github-url", "ftp://x")
    assert (result.returncode, result.stderr.strip()) == (
        1,
        "autobuild: --github-url: expected an http:// or https:// URL, got 'ftp://x'",
    )


def test_new_prints_a_manifest_the_api_accepts(fake: FakeGitHub, token_file: Path) -> None:
    result = autobuild(
        fake,
        "new",
        "octo/Cavity-Flow",
        "--secret",
        "github-link",
        "-n",
        "ci",
        "--token-file",
        str(token_file),
    )
    assert result.returncode == 0, result.stderr
    document = yaml.safe_load(result.stdout)
    (parsed,) = load_automated_builds(result.stdout, "stdout")
    assert (parsed.metadata.name, parsed.metadata.namespace) == ("cavity-flow", "ci")
    source = document["spec"]["source"]
    assert source == {
        "repo": "http://127.0.0.1/octo/Cavity-Flow.git",  # Enterprise: the clone URL
        "credentialsSecret": "github-link",
        "provider": "github",
    }
    assert document["spec"]["image"] == {
        "namespace": "octo",
        "name": "cavity-flow",
        "visibility": "Private",
        "shortDescription": "Cavity flow solver",
    }
    assert [(r.source, r.docker_tag) for r in parsed.spec.tags] == [
        ("trunk", "latest"),
        ("/^v?([0-9.]+)$/", "{\\1}"),
    ]


def test_new_for_a_repository_it_cannot_see(fake: FakeGitHub, token_file: Path) -> None:
    result = autobuild(fake, "new", "acme/hidden", "--token-file", str(token_file))
    assert result.returncode == 1
    assert "cannot read repository acme/hidden: not found" in result.stderr
    assert result.stdout == ""


def test_new_with_an_invalid_image_name(fake: FakeGitHub, token_file: Path) -> None:
    result = autobuild(
        fake, "new", "octo/lib", "--name", "Bad Name", "--token-file", str(token_file)
    )
    assert result.returncode == 1
    assert "spec.image.name" in result.stderr
