"""Repository settings: the registry repository gets spec.image's visibility and short
description (Docker Hub and registries that have the notion); the VisibilityApplied
condition says how that went."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from autobuild.api.conditions import ConditionType
from autobuild.api.models import RepositoryStatus
from autobuild.planning import registry_gate
from autobuild.planning.registry_gate import RegistryRequest
from autobuild.planning.steps.access import Access
from autobuild.planning.steps.base import Contribution, World, push_secret_version

OWNS: Final = frozenset({"repository", ConditionType.VISIBILITY_APPLIED.value})


@dataclass(kw_only=True)
class Repository(Contribution):
    """status.repository, and the settings call to make if one is due."""

    repository: RepositoryStatus | None = None
    request: RegistryRequest | None = None


def run(world: World, access: Access) -> Repository:
    """Apply the spec's repository settings (never with a refused push Secret)."""
    previous = world.previous.repository
    automated_build = access.automated_build
    if automated_build is None or access.push_refused is not None:
        return Repository(repository=previous)
    snapshot = world.snapshot
    outcome = registry_gate.repository_settings(
        registry_gate.image_fingerprint(automated_build, push_secret_version(snapshot)),
        previous,
        snapshot.registry,
        snapshot.now,
    )
    return Repository(
        repository=outcome.repository or previous,
        request=outcome.request,
        requeue_after=outcome.requeue_after,
    )


__all__ = ["OWNS", "Repository", "run"]
