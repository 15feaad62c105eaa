"""``autobuild repos --secret`` and ``autobuild dockerfile`` on the real control plane, with the
linked account's token in a Secret and GitHub played by the fake API (no operator needed: the
tests write the AutomatedBuild's status themselves, as the operator would)."""

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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.fakegithub import FakeGitHub, FakeRepo

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "autobuild.dev", "v1alpha1", "automatedbuilds"
TOKEN = "ghp_k8sT0kenValue0123456789abcdefABCDEFGH"
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


def autobuild(k8s_cluster: Any, fake: FakeGitHub, *args: str) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(
        [sys.executable, "-m", "autobuild.cli", *args],
        env=dict(
            os.environ, KUBECONFIG=str(k8s_cluster.kubeconfig), AUTOBUILD_GITHUB_URL=fake.base_url
        ),
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert TOKEN.encode() not in result.stdout + result.stderr
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

    newest = autobuild(k8s_cluster, fake, "dockerfile", "app", "-n", k8s_namespace)
    assert newest.returncode == 0, newest.stderr
    assert newest.stdout == NEW_DOCKERFILE
    assert newest.stderr.decode() == f"# octo/app: docker/Dockerfile at {new} (build b2)\n"

    older = autobuild(k8s_cluster, fake, "dockerfile", "app", "-n", k8s_namespace, "--build", "b1")
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


def test_dockerfile_explains_it_is_github_only(
    k8s_cluster: Any, k8s_api: Any, k8s_namespace: str, crd: None, fake: FakeGitHub
) -> None:
    source = {"repo": "https://git.example/acme/app"}
    create_with_builds(k8s_api, k8s_namespace, source, [build("b1", "a" * 40)])
    result = autobuild(k8s_cluster, fake, "dockerfile", "app", "-n", k8s_namespace)
    assert result.returncode == 1
    assert "supports GitHub repositories only for now" in result.stderr.decode()
    assert fake.requests == []
