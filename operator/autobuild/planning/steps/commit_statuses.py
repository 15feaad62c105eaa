"""Commit statuses: each build's state posted on its commit through the linked account
(queued, then how it ended), recorded in ``builds[].commitStatus``. The linked token goes to
the provider's API only for a repository on the host that API serves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from autobuild.api.models import BuildRecord
from autobuild.planning import hooks
from autobuild.planning.providers import HostingProvider
from autobuild.planning.snapshot import EventNote
from autobuild.planning.steps.access import Access
from autobuild.planning.steps.base import Contribution, World

OWNS: Final = frozenset({"builds[].commitStatus"})


@dataclass(kw_only=True)
class CommitStatuses(Contribution):
    """The records (newest first) with their statuses, the calls to make, and the provider
    token (None: no call may go to the provider's API for this object)."""

    records: tuple[BuildRecord, ...] = ()
    requests: tuple[hooks.GitHubRequest, ...] = ()
    token: str | None = field(default=None, repr=False)


def run(
    world: World, access: Access, provider: HostingProvider, records: Sequence[BuildRecord]
) -> CommitStatuses:
    """Post the statuses ``records`` have not had posted yet."""
    automated_build = access.automated_build
    if automated_build is None:
        return CommitStatuses(records=tuple(records))
    repository = provider.repository(automated_build) if access.password else None
    token = access.password if repository is not None else None
    out, calls, notes, wait = provider.commit_statuses(
        automated_build,
        repository,
        token,
        records,
        world.previous_builds,
        world.snapshot.github,
        world.snapshot.now,
    )
    return CommitStatuses(
        records=tuple(out),
        requests=tuple(calls),
        token=token,
        events=tuple(EventNote(n.type, n.reason, n.message) for n in notes),
        requeue_after=wait,
    )


__all__ = ["OWNS", "CommitStatuses", "run"]
