"""Fixtures of the operator tests on the real control plane: one operator process per test
module (with a real registry on loopback beside it), a git server, a repository per test and the
:class:`~tests.support.operator_harness.World` of the test's namespace.

Build pods are pinned (AUTOBUILD_NODE_SELECTOR) to a label no node has, so they stay Pending
until a test moves them itself, the way a kubelet would: deterministic phases, digests and
failures. The one end-to-end test labels kwok's node so kwok runs the pod to completion.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.gitserver import GitServer, Repo
from tests.support.operator_harness import World
from tests.support.operator_process import Operator
from tests.support.registry import Registry


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    """A real registry on loopback whose one user may push."""
    with Registry(users={"pusher": "right-password"}) as running:
        yield running


@pytest.fixture(scope="module")
def operator(
    k8s_cluster: Any, crd: None, registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    """``autobuild run`` against the cluster, its build pods pinned to no node, pushing to
    ``registry``."""
    op = Operator(
        k8s_cluster.kubeconfig,
        tmp_path_factory.mktemp("operator") / "operator.log",
        registry.host,
    )
    op.start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    """A real smart-HTTP git server on loopback, shared by the tests of one module."""
    with GitServer(tmp_path_factory.mktemp("git")) as server:
        yield server


@pytest.fixture
def repo(git_server: GitServer, request: pytest.FixtureRequest) -> Repo:
    """A repository named after the test, with a Dockerfile on main."""
    name = request.node.name.lower().replace("_", "-")[:40].strip("-")
    created = git_server.create_repo("acme", name)
    created.commit("main", {"Dockerfile": "FROM scratch\nCOPY . /\n"}, "Initial commit")
    return created


@pytest.fixture
def world(k8s_api: Any, k8s_namespace: str, operator: Operator) -> World:
    """The test's namespace, with the module's operator running."""
    return World(k8s_api, k8s_namespace)
