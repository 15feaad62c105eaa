"""Push preflight: no Kaniko Job before the push Secret is known to be able to push. While it
is not, the new Jobs wait, and with them the pushes and the build request that asked for them
(their Events and ``lastTrigger`` come once the Jobs can be created)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from autobuild.api.conditions import Reason
from autobuild.planning import registry_gate
from autobuild.planning import status as tracking
from autobuild.planning.registry_gate import RegistryRequest
from autobuild.planning.steps.access import Access
from autobuild.planning.steps.base import Contribution, Gate, World, push_secret_version
from autobuild.planning.steps.jobs import Jobs

# Gates only: the refusal it finds is the pass's problem (PROBLEM_CHAIN), no field of its own.
OWNS: Final = frozenset[str]()
_WAIT: Final = frozenset({Gate.CREATE, Gate.TRIGGER})


@dataclass(kw_only=True)
class Preflight(Contribution):
    """The check to run, if one is due."""

    request: RegistryRequest | None = None

    @property
    def created(self) -> bool:
        """Whether the new Jobs may be created this pass."""
        return Gate.CREATE not in self.closes


def run(world: World, access: Access, jobs: Jobs, problem: tracking.Problem | None) -> Preflight:
    """Whether the new ``jobs`` may be created; ``problem`` is the pass's so far (a stalled
    object creates nothing and asks no registry)."""
    automated_build = access.automated_build
    if automated_build is None or not jobs.new:
        return Preflight()
    if problem is not None and problem.stalled:
        return Preflight(closes=frozenset({Gate.CREATE}))
    snapshot = world.snapshot
    gate = registry_gate.push_preflight(
        automated_build, push_secret_version(snapshot), snapshot.registry, snapshot.now
    )
    if gate.proceed:
        return Preflight()
    refusal = gate.refusal
    return Preflight(
        request=gate.request,
        problem=None if refusal is None else tracking.Problem(Reason(refusal[0]), refusal[1]),
        closes=_WAIT | {Gate.STATUS} if gate.request is not None else _WAIT,
        requeue_after=gate.requeue_after,
    )


__all__ = ["OWNS", "Preflight", "run"]
