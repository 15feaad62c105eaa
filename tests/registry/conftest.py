"""Fixtures for the registry tests: real ``docker-registry`` processes on 127.0.0.1.

``basic_registry``: htpasswd Basic auth, users alice and bob (both may push: htpasswd has no
authorization). ``token_registry``: token auth like Docker Hub; alice may push and pull under
``alice/*``, bob may only pull there. Both are module-scoped and removed afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from autobuild.registry.dockerconfig import Credentials
from tests.support.registry import Registry, TokenRegistry
from tests.support.tokenserver import TokenServer

USERS = {"alice": "alice-pw", "bob": "bob-pw"}


@pytest.fixture(scope="session")
def creds() -> Callable[[str], Credentials]:
    """The right credentials of a test user (alice or bob)."""
    return lambda user: Credentials(user, USERS[user])


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry with htpasswd Basic auth."""
    with Registry(users=USERS, workdir=tmp_path_factory.mktemp("basic")) as registry:
        yield registry


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenRegistry]:
    """A registry with token auth; bob may only pull alice's repositories."""
    grants = {"alice": {"alice/*": ["pull", "push"]}, "bob": {"alice/*": ["pull"]}}
    with (
        TokenServer(users=USERS, grants=grants) as tokens,
        Registry(token=tokens, workdir=tmp_path_factory.mktemp("token")) as registry,
    ):
        yield TokenRegistry(registry, tokens)
