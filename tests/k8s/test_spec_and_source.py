"""Validation (by the API server's CRD schema, and by the operator where the schema cannot
judge) and the source conditions: an unreachable repository, one that answers later."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from tests.support.gitserver import GitServer, Repo
from tests.support.operator_harness import World, manifest, ready_condition
from tests.support.operator_process import eventually, free_port

pytestmark = pytest.mark.k8s


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"image": {"visibility": "Secret"}}, "spec.image.visibility"),
        ({"image": {"shortDescription": "x" * 101}}, "spec.image.shortDescription"),
        (
            {"tags": [{"source": "main", "dockerfile": "../../etc/passwd"}]},
            "must not escape the repository",
        ),
        ({"tags": [{"source": "main", "dockerfile": "/etc/passwd"}]}, "must be relative"),
        ({"tags": [{"source": "main#x"}]}, "spec.tags[0].source"),
        ({"tags": [{"source": "main", "dockerTag": "{\\1}"}]}, "need a /regex/ source"),
        ({"source": {"repo": "--upload-pack=touch /tmp/pwned"}}, "spec.source.repo"),
        ({"timeout": "10s"}, "must be between 1m and 24h"),
        ({"buildArgs": {"SOURCE_COMMIT": "x"}}, "cannot be overridden"),
    ],
)
def test_invalid_spec_rejected_by_the_api_server(
    world: World, repo: Repo, change: dict[str, Any], words: str
) -> None:
    body = manifest(world.namespace, repo)
    for key, value in change.items():
        if isinstance(value, dict) and key in body["spec"]:
            body["spec"][key].update(value)
        else:
            body["spec"][key] = value
    with pytest.raises(client.ApiException) as caught:
        world.create(body)
    assert caught.value.status == 422
    assert words in json.loads(caught.value.body)["message"]


def test_spec_the_crd_cannot_judge_is_stalled(world: World, repo: Repo) -> None:
    body = manifest(world.namespace, repo, tags=[{"source": "/^v(?=1)/", "dockerTag": "x"}])
    world.create(body)

    def reason() -> str | None:
        conditions = {c["type"]: c for c in world.status().get("conditions") or []}
        stalled = conditions.get("Stalled", {})
        return stalled.get("message") if stalled.get("status") == "True" else None

    assert "spec.tags[0].source" in eventually(reason, 30, "Stalled InvalidSpec")


def test_unreachable_source_is_not_ready_but_not_stalled(world: World) -> None:
    body = manifest(world.namespace, f"http://127.0.0.1:{free_port()}/acme/gone.git")
    world.create(body)
    ready = eventually(
        lambda: (c := ready_condition(world)) and c["status"] == "False" and c, 30, "not Ready"
    )
    assert ready["reason"] == "SourceUnreachable"
    stalled = next(c for c in world.status()["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "False"


def test_source_reachability_is_checked_and_recovers(world: World, git_server: GitServer) -> None:
    """Even with nothing to build, a spec change checks that the repository answers."""
    url = f"{git_server.url}/acme/not-yet-{world.namespace}.git"
    world.create(manifest(world.namespace, url, tags=[{"source": "main", "autobuild": False}]))
    ready = eventually(
        lambda: (c := ready_condition(world)) and c["status"] == "False" and c, 30, "not Ready"
    )
    assert ready["reason"] == "SourceUnreachable"
    assert "not found" in ready["message"]
    created = git_server.create_repo("acme", f"not-yet-{world.namespace}")
    created.commit("main", {"Dockerfile": "FROM scratch\n"}, "init")
    ready = eventually(
        lambda: (c := ready_condition(world)) and c["status"] == "True" and c,
        60,
        "Ready after the repo appeared",
    )
    assert world.jobs() == []
