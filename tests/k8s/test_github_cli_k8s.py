"""``autobuild repos --secret`` and ``autobuild dockerfile`` on the real control plane, with the
linked account's token in a Secret, GitHub played by the fake API and other hosts by the real
git server (no operator needed: the tests write the AutomatedBuild's status themselves, as the
operator would)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.support.fakegithub import FakeGitHub, FakeRepo
from tests.support.gitserver import GitServer, Repo

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "autobuild.dev", "v1alpha1", "automatedbuilds"
TOKEN = "ghp_k8sT0kenValue0123456789abcdefABCDEFGH"
GIT_TOKEN = "gitea0k8sT0kenValue0123456789abcdefABCDEF"
GIT_USERNAME = "builder"
OLD_DOCKERFILE = b"FROM scratch\r\nCOPY old /\r\n"
NEW_DOCKERFILE = "FROM alpine:3.20\n# caf\u00e9 \u2615\nRUN true\n".encode()


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub(prefix="/api/v3") as server:
        server.add_user("octo", token=TOKEN)
        yield server


@pytest.fixture
def repo(fake: FakeGitHub) -> FakeRepo:
    return fake.add_repo("octo/app", private=True, description="The app")


@pytest.fixture
def linked(k8s_api: Any, k8s_namespace: str) -> str:
    core = client.CoreV1Api(k8s_api)
    core.create_namespaced_secret(
        k8s_namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(
                name="github-link", annotations={"autobuild.dev/git-hosts": "127.0.0.1"}
            ),
            data={"token": base64.b64encode(TOKEN.encode()).decode()},
        ),
    )
    return "github-link"


def autobuild(
    k8s_cluster: Any, fake: FakeGitHub, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(
        [sys.executable, "-m", "autobuild.cli", *args],
        env=dict(
            os.environ,
            KUBECONFIG=str(k8s_cluster.kubeconfig),
            AUTOBUILD_GITHUB_URL=fake.base_url,
            **(env or {}),
        ),
        capture_output=True,
        check=False,
        timeout=60,
    )
    for token in (TOKEN, GIT_TOKEN):
        assert token.encode() not in result.stdout + result.stderr
    return result


def create_with_builds(
    k8s_api: Any, namespace: str, source: dict[str, Any], builds: list[dict[str, Any]]
) -> None:
    api = client.CustomObjectsApi(k8s_api)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AutomatedBuild",
        "metadata": {"name": "app", "namespace": namespace},
        "spec": {
            "source": source,
            "image": {
                "namespace": "octo",
                "name": "app",
                "visibility": "Private",
                "shortDescription": "The app",
            },
            "tags": [{"source": "main", "dockerTag": "latest", "context": "/docker"}],
        },
    }
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    api.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "app", {"status": {"builds": builds}}
    )


def build(build_id: str, commit: str) -> dict[str, Any]:
    return {
        "id": build_id,
        "rule": 0,
        "sourceType": "Branch",
        "sourceRef": "main",
        "commit": commit,
        "trigger": "Push",
        "tags": ["latest"],
        "phase": "Succeeded",
    }


def test_repos_reads_the_token_from_the_secret(
    k8s_cluster: Any, k8s_namespace: str, fake: FakeGitHub, repo: FakeRepo, linked: str
) -> None:
    result = autobuild(k8s_cluster, fake, "repos", "--secret", linked, "-n", k8s_namespace)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines()[1].split()[:3] == ["octo/app", "private", "main"]

    missing = autobuild(k8s_cluster, fake, "repos", "--secret", "nope", "-n", k8s_namespace)
    assert missing.returncode == 1
    assert missing.stderr.decode().strip() == f"autobuild: Secret {k8s_namespace}/nope not found"


def test_dockerfile_is_read_at_the_builds_commit(
    k8s_cluster: Any,
    k8s_api: Any,
    k8s_namespace: str,
    crd: None,
    fake: FakeGitHub,
    repo: FakeRepo,
    linked: str,
) -> None:
    old = repo.add_commit({"docker/Dockerfile": OLD_DOCKERFILE, "Dockerfile": b"FROM root\n"})
    new = repo.add_commit({"docker/Dockerfile": NEW_DOCKERFILE})
    source = {
        "repo": "http://127.0.0.1/octo/app.git",
        "provider": "github",
        "credentialsSecret": linked,
    }
    create_with_builds(k8s_api, k8s_namespace, source, [build("b2", new), build("b1", old)])

    # The repo is plain http: the operator sends the token there only to an insecure host.
    newest = autobuild(k8s_cluster, fake, "dockerfile", "app", "-n", k8s_namespace, env=INSECURE)
    assert newest.returncode == 0, newest.stderr
    assert newest.stdout == NEW_DOCKERFILE
    assert newest.stderr.decode() == f"# octo/app: docker/Dockerfile at {new} (build b2)\n"

    older = autobuild(
        k8s_cluster, fake, "dockerfile", "app", "-n", k8s_namespace, "--build", "b1", env=INSECURE
    )
    assert older.returncode == 0, older.stderr
    assert older.stdout == OLD_DOCKERFILE
    (read,) = fake.requests_to("GET", "/contents/docker/Dockerfile")[-1:]
    assert (read.query, read.login) == ({"ref": old}, "octo")

    unknown = autobuild(k8s_cluster, fake, "dockerfile", "app", "-n", k8s_namespace, "--build", "x")
    assert unknown.returncode == 1
    assert (
        unknown.stderr.decode().strip()
        == "autobuild: AutomatedBuild app has no build 'x' in its status"
    )


@pytest.mark.parametrize(
    ("repo_url", "annotations", "refusal"),
    [
        ("https://127.0.0.1/octo/app.git", {}, "CredentialsNotAllowed"),
        ("https://127.0.0.1/octo/app.git", {"autobuild.dev/git-hosts": "ghe.acme.io"}, "lists"),
        ("http://127.0.0.1/octo/app.git", {"autobuild.dev/git-hosts": "127.0.0.1"}, "http://"),
        ("https://github.com/octo/app.git", {"autobuild.dev/git-hosts": "*"}, "serves 127.0.0.1"),
    ],
)
def test_dockerfile_from_github_sends_the_token_only_where_the_operator_would(
    k8s_cluster: Any,
    k8s_api: Any,
    k8s_namespace: str,
    crd: None,
    fake: FakeGitHub,
    repo: FakeRepo,
    repo_url: str,
    annotations: dict[str, str],
    refusal: str,
) -> None:
    """Issue 17, item 12: the GitHub path read the Secret's token and sent it to the GitHub API
    without the operator's check (the Secret's hosts, plain http, the API's host)."""
    commit = repo.add_commit({"docker/Dockerfile": NEW_DOCKERFILE})
    client.CoreV1Api(k8s_api).create_namespaced_secret(
        k8s_namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="strict-link", annotations=annotations),
            data={"token": base64.b64encode(TOKEN.encode()).decode()},
        ),
    )
    source = {"repo": repo_url, "provider": "github", "credentialsSecret": "strict-link"}
    create_with_builds(k8s_api, k8s_namespace, source, [build("b1", commit)])
    before = len(fake.requests)
    result = autobuild(k8s_cluster, fake, "dockerfile", "app", "-n", k8s_namespace)
    assert result.returncode == 1, result.stdout
    assert result.stdout == b""
    assert refusal in result.stderr.decode()
    assert fake.requests[before:] == []  # nothing, token or not, went to the GitHub API


@pytest.fixture
def git_repo(git_server: GitServer, k8s_namespace: str) -> Repo:
    """A private repository that wants its own username next to the token (as Gitea does)."""
    return git_server.create_repo(
        "acme", k8s_namespace, private_token=GIT_TOKEN, private_username=GIT_USERNAME
    )


def git_link(k8s_api: Any, namespace: str, annotations: dict[str, str]) -> str:
    """The linked account of a plain git host: a Secret with token and username."""
    client.CoreV1Api(k8s_api).create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="git-link", annotations=annotations),
            string_data={"token": GIT_TOKEN, "username": GIT_USERNAME},
        ),
    )
    return "git-link"


INSECURE = {"AUTOBUILD_INSECURE_GIT_HOSTS": "127.0.0.1"}


def test_dockerfile_is_read_over_git_from_other_hosts(
    k8s_cluster: Any,
    k8s_api: Any,
    k8s_namespace: str,
    crd: None,
    fake: FakeGitHub,
    git_repo: Repo,
    tmp_path: Path,
) -> None:
    old = git_repo.commit(
        "main", {"docker/Dockerfile": OLD_DOCKERFILE, "Dockerfile": b"FROM root\n"}, "old"
    )
    new = git_repo.commit("main", {"docker/Dockerfile": NEW_DOCKERFILE}, "new")
    linked = git_link(k8s_api, k8s_namespace, {"autobuild.dev/git-hosts": "127.0.0.1"})
    source = {"repo": git_repo.clone_url, "provider": "git", "credentialsSecret": linked}
    create_with_builds(k8s_api, k8s_namespace, source, [build("b2", new), build("b1", old)])
    args = ("dockerfile", "app", "-n", k8s_namespace)

    newest = autobuild(k8s_cluster, fake, *args, env=INSECURE)
    assert newest.returncode == 0, newest.stderr
    assert newest.stdout == NEW_DOCKERFILE
    assert newest.stderr.decode() == (
        f"# {git_repo.clone_url}: docker/Dockerfile at {new} (build b2)\n"
    )
    older = autobuild(k8s_cluster, fake, *args, "--build", "b1", env=INSECURE)
    assert older.returncode == 0, older.stderr
    assert older.stdout == OLD_DOCKERFILE  # CRLF kept
    assert older.stderr.decode() == (
        f"# {git_repo.clone_url}: docker/Dockerfile at {old} (build b1)\n"
    )
    assert fake.requests == []  # never the GitHub API

    # --token-file instead of the Secret: sent with the provider's default username, which this
    # host refuses (it wants the Secret's username).
    token_file = tmp_path / "token"
    token_file.write_text(GIT_TOKEN + "\n")
    with_file = autobuild(k8s_cluster, fake, *args, "--token-file", str(token_file), env=INSECURE)
    assert with_file.returncode == 1
    assert with_file.stderr.decode() == (
        f"autobuild: authentication failed for {git_repo.clone_url}: check the token and its "
        "access to the repository\n"
    )

    # The token is sent over plain http only to the hosts the user allows, as the operator does.
    refused = autobuild(k8s_cluster, fake, *args)
    assert refused.returncode == 1
    assert refused.stdout == b""
    assert refused.stderr.decode().startswith(
        "autobuild: AutomatedBuild app: CredentialsNotAllowed: Secret 'git-link' is not sent "
        "to 127.0.0.1 over plain http://"
    )


def test_dockerfile_over_git_needs_the_secrets_host_opt_in(
    k8s_cluster: Any,
    k8s_api: Any,
    k8s_namespace: str,
    crd: None,
    fake: FakeGitHub,
    git_repo: Repo,
) -> None:
    commit = git_repo.commit("main", {"docker/Dockerfile": NEW_DOCKERFILE}, "one")
    linked = git_link(k8s_api, k8s_namespace, {"autobuild.dev/git-hosts": "git.example.com"})
    source = {"repo": git_repo.clone_url, "provider": "git", "credentialsSecret": linked}
    create_with_builds(k8s_api, k8s_namespace, source, [build("b1", commit)])
    result = autobuild(k8s_cluster, fake, "dockerfile", "app", "-n", k8s_namespace, env=INSECURE)
    assert result.returncode == 1
    assert result.stdout == b""
    assert result.stderr.decode() == (
        "autobuild: AutomatedBuild app: CredentialsNotAllowed: Secret 'git-link' may not be sent "
        "to 127.0.0.1: its annotation autobuild.dev/git-hosts lists git.example.com, not "
        "127.0.0.1. To allow it, annotate the Secret with autobuild.dev/git-hosts: 127.0.0.1 "
        "(comma-separated host names, * for any)\n"
    )


def test_dockerfile_over_git_explains_what_is_missing(
    k8s_cluster: Any,
    k8s_api: Any,
    k8s_namespace: str,
    crd: None,
    fake: FakeGitHub,
    git_server: GitServer,
) -> None:
    public = git_server.create_repo("acme", f"{k8s_namespace}-public")
    commit = public.commit("main", {"Dockerfile": b"FROM root\n"}, "no docker/ directory")
    source = {"repo": public.clone_url, "provider": "gitlab"}  # public: no Secret needed
    create_with_builds(k8s_api, k8s_namespace, source, [build("b1", commit)])
    result = autobuild(k8s_cluster, fake, "dockerfile", "app", "-n", k8s_namespace)
    assert result.returncode == 1
    assert result.stderr.decode() == (
        f"autobuild: docker/Dockerfile at commit {commit} in {public.clone_url}: no such file\n"
    )
