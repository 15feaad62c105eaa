"""Hostile git hosts against the operator on the real control plane (issue 17, items 7 and 9).

An AutomatedBuild's author chooses its repository URL: a server that advertises a million refs
must give ``SourceTooLarge`` and leave the operator up and small, and an allowed host that
redirects must never pass the linked token on (neither the operator's git nor a Kaniko Job).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.hostilegit import ManyRefsServer, RecordingGitServer, RedirectServer
from tests.support.operator_harness import World, manifest
from tests.support.operator_process import Operator, eventually

pytestmark = pytest.mark.k8s

TOKEN = "linked-t0ken-never-elsewhere"
MIB = 1024 * 1024


def _rss(pid: int) -> int:
    """Resident bytes of a process (``VmRSS``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(child) for child in text]
    return found


@pytest.fixture(scope="module")
def hostile_operator(
    k8s_cluster: Any, crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    op = Operator(k8s_cluster.kubeconfig, tmp_path_factory.mktemp("hostile") / "operator.log")
    op.start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture
def world(k8s_api: Any, k8s_namespace: str, hostile_operator: Operator) -> World:
    return World(k8s_api, k8s_namespace)


def _ready(world: World, name: str = "app") -> dict[str, Any] | None:
    conditions = world.status(name).get("conditions", [])
    return next((c for c in conditions if c["type"] == "Ready"), None)


def test_a_million_refs_gives_source_too_large_and_the_operator_stays_up(
    world: World, hostile_operator: Operator
) -> None:
    proc = hostile_operator.proc
    assert proc is not None
    before = _rss(proc.pid)
    peak = {"operator": before, "git": 0}
    with ManyRefsServer(1_000_000) as server:
        # Three objects on the server, as the review's crash loop had one retried forever.
        for name in ("app", "app-2", "app-3"):
            world.create(manifest(world.namespace, f"{server.url}/acme/{name}.git", name=name))

        def too_large() -> bool:
            peak["operator"] = max(peak["operator"], _rss(proc.pid))
            for child in _children(proc.pid):
                with contextlib.suppress(OSError, AssertionError):  # git ended meanwhile
                    peak["git"] = max(peak["git"], _rss(child))
            ready = [_ready(world, name) for name in ("app", "app-2", "app-3")]
            return all(c is not None and c["reason"] == "SourceTooLarge" for c in ready)

        eventually(too_large, 120, "SourceTooLarge on every object")
        assert server.requests, "the operator never asked the server"
    ready = _ready(world)
    assert ready is not None
    assert ready["status"] == "False"
    assert "20,000" in ready["message"]
    assert world.jobs() == []
    assert proc.poll() is None  # no crash, no restart: the same process answers
    # Today's code read the 62 MB listing whole: 492 MiB in the operator (and 327 MiB in git).
    assert peak["operator"] - before < 64 * MIB, peak
    assert peak["git"] < 64 * MIB, peak
    print(
        f"operator RSS {before / MIB:.0f} MiB, peak {peak['operator'] / MIB:.0f} MiB; "
        f"git peak seen {peak['git'] / MIB:.0f} MiB"
    )


def test_a_redirecting_git_host_never_receives_the_token(
    world: World, hostile_operator: Operator, k8s_cluster: Any
) -> None:
    """The allowed host (127.0.0.1) redirects to another host (127.0.0.2): no git of the
    operator follows, and no build that carries the token starts (Kaniko's go-git would)."""
    with (
        RecordingGitServer(host="127.0.0.2") as other,
        RedirectServer(other.url) as allowed,
    ):
        world.core.create_namespaced_secret(
            world.namespace,
            {
                "metadata": {
                    "name": "link",
                    "annotations": {"autobuild.dev/git-hosts": "127.0.0.1"},
                },
                "stringData": {"token": TOKEN},
            },
        )
        body = manifest(world.namespace, f"{allowed.url}/acme/app.git")
        body["spec"]["source"]["credentialsSecret"] = "link"
        # A regex rule: the creation build needs no heads, so the trigger below is next.
        body["spec"]["tags"] = [
            {"sourceType": "Tag", "source": "/^v([0-9.]+)$/", "dockerTag": "{\\1}"}
        ]
        world.create(body)
        ready = eventually(
            lambda: (c := _ready(world)) and c["status"] == "False" and c, 60, "not Ready"
        )
        assert ready["reason"] == "SourceUnreachable"
        assert "redirects (HTTP 302)" in ready["message"]
        # A build that needs no heads (a commit given): the one path to a Job without a
        # source check, so the operator asks the URL just before creating it.
        commit = "ab" * 20
        request = [{"id": "20260101T000000.000000Z-x", "ref": "refs/tags/v2.5", "commit": commit}]
        world.custom.patch_namespaced_custom_object(
            "autobuild.dev",
            "v1alpha1",
            world.namespace,
            "automatedbuilds",
            "app",
            {"metadata": {"annotations": {"autobuild.dev/trigger": json.dumps(request)}}},
        )

        def refused() -> list[str]:
            events = world.core.list_namespaced_event(world.namespace).items
            return [
                e.message
                for e in events
                if e.reason == "SourceUnreachable" and "not started" in (e.message or "")
            ]

        (note,) = eventually(refused, 60, "the build refused")
        assert "redirects (HTTP 302)" in note
        time.sleep(2)  # a Job would have been created by now
        assert world.jobs() == []
        assert allowed.requests, "the operator never asked the allowed host"
        assert other.requests == []  # the token, and anything else, never reached it
    assert TOKEN not in json.dumps(world.get())
