"""Digests: each succeeded build's tags are read back from the registry and compared with the
digest Kaniko pushed; a mismatch is a Warning Event and the record's reason. A build is
reported Succeeded once its digests are checked (one status write, not two)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from autobuild.api.models import BuildRecord
from autobuild.planning import registry_gate
from autobuild.planning.registry_gate import RegistryRequest
from autobuild.planning.snapshot import EventNote
from autobuild.planning.steps.access import Access
from autobuild.planning.steps.base import Contribution, Gate, World

OWNS: Final = frozenset(
    {"builds[Succeeded].digests", "builds[Succeeded].reason", "builds[Succeeded].message"}
)


@dataclass(kw_only=True)
class Digests(Contribution):
    """The records (newest first) with their checked digests, and the checks to run."""

    records: tuple[BuildRecord, ...] = ()
    requests: tuple[RegistryRequest, ...] = ()


def run(world: World, access: Access, records: Sequence[BuildRecord]) -> Digests:
    """Check the digests of succeeded ``records`` not checked yet (never with a push Secret
    bound to other repositories: the checks would send its credentials)."""
    out, verify, mismatches = registry_gate.digest_checks(
        records, world.previous_builds, world.snapshot.registry
    )
    requests = () if access.push_refused is not None else tuple(verify)
    return Digests(
        records=tuple(out),
        requests=requests,
        events=tuple(EventNote("Warning", reason, message) for reason, message in mismatches),
        closes=frozenset({Gate.STATUS}) if requests else frozenset(),
    )


__all__ = ["OWNS", "Digests", "run"]
