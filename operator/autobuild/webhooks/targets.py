"""What the receiver looks up: the AutomatedBuilds a delivery may build (no I/O).

Its own module so that the controller's store, which implements :class:`TargetIndex`, needs no
import of the aiohttp application in :mod:`autobuild.webhooks.receiver`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from autobuild.api.models import Provider

__all__ = ["HookTarget", "TargetIndex"]


@dataclass(frozen=True)
class HookTarget:
    """An AutomatedBuild a delivery for its repository may build.

    ``secret`` is the ``secret`` key of ``spec.source.webhookSecret``; None when the object
    names no webhook secret or the Secret or key is missing (then nothing verifies for it).
    """

    namespace: str
    name: str
    provider: Provider
    secret: bytes | None = field(default=None, repr=False)


class TargetIndex(Protocol):
    """What the receiver reads: the operator's in-memory store. Lookups must not block, and
    must not grow memory for names that exist nowhere (they come from the internet)."""

    def targets(self, repo_key: str) -> Sequence[HookTarget]:
        """The AutomatedBuilds whose ``spec.source.repo`` has this :func:`repo_key`."""

    def target(self, namespace: str, name: str) -> HookTarget | None:
        """One AutomatedBuild as a hook target (``?automatedbuild=NS/NAME``), or None."""

    def trigger_token(self, namespace: str, name: str) -> bytes | None:
        """The ``trigger-token`` of ``spec.triggerSecret``, or None (unknown object, no field,
        missing Secret or key)."""
