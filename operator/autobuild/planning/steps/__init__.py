"""The steps of a decision, one per concern, folded in order (fluxcd/source-controller's
sub-reconcilers, cert-manager's policy chain for precedence).

Each step is pure: it reads the :class:`~autobuild.planning.steps.base.World` and the typed
outcomes of earlier steps, and returns only what it owns — its status fields and condition
types (``OWNS``), its effects, Events, a problem, the gates it closes and a requeue. Which
earlier outcomes a step reads is written once, in :data:`STEPS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from autobuild.api.conditions import ConditionType
from autobuild.planning import status as tracking
from autobuild.planning.snapshot import EventNote
from autobuild.planning.steps import (
    access,
    commit_statuses,
    digests,
    failure_logs,
    history,
    jobs,
    preflight,
    pushes,
    repository,
    source,
    webhook,
)
from autobuild.planning.steps.access import Access
from autobuild.planning.steps.base import Contribution, Gate, World
from autobuild.planning.steps.commit_statuses import CommitStatuses
from autobuild.planning.steps.digests import Digests
from autobuild.planning.steps.failure_logs import FailureLogs
from autobuild.planning.steps.history import History
from autobuild.planning.steps.jobs import Jobs, Queue
from autobuild.planning.steps.preflight import Preflight
from autobuild.planning.steps.pushes import Pushes, PushesTaken
from autobuild.planning.steps.repository import Repository
from autobuild.planning.steps.source import Source
from autobuild.planning.steps.webhook import Webhook


class Done:
    """The outcomes of the steps run so far. A step reads only those of the steps before it
    (:data:`STEPS` passes them): a later step's is not there yet."""

    access: Access
    source: Source
    pushes: Pushes
    jobs: Jobs
    preflight: Preflight
    queue: Queue
    taken: PushesTaken
    history: History
    failure_logs: FailureLogs
    digests: Digests
    repository: Repository
    commit_statuses: CommitStatuses
    webhook: Webhook

    def __init__(self) -> None:
        # What the steps so far closed, and the soonest look again they asked for.
        self.gates: frozenset[Gate] = frozenset()
        self.requeue: float | None = None
        # The Events of the steps so far, by step, in step order.
        self.events: list[tuple[str, tuple[EventNote, ...]]] = []

    def problem(self) -> tracking.Problem | None:
        """The pass's problem: the first one found along :data:`PROBLEM_CHAIN`."""
        for name in PROBLEM_CHAIN:
            outcome: Contribution | None = getattr(self, name, None)
            if outcome is not None and outcome.problem is not None:
                return outcome.problem
        return None

    def closed(self, gate: Gate) -> bool:
        """Whether a step closed ``gate``."""
        return gate in self.gates

    def add(self, name: str, outcome: Contribution) -> None:
        """Record a step's outcome."""
        setattr(self, name, outcome)
        if outcome.events:
            self.events.append((name, outcome.events))
        if outcome.closes:
            self.gates |= outcome.closes
        asked = outcome.requeue_after
        if asked is not None and (self.requeue is None or asked < self.requeue):
            self.requeue = asked


@dataclass(frozen=True)
class Step:
    """One concern: the outcome it fills in :class:`Done`, what of status it owns, its run."""

    name: str
    owns: frozenset[str]
    run: Callable[[World, Done], Contribution]


# Which step's problem is the object's when several have one, first wins. Access problems
# (the spec, its Secrets, the credential policy) stop everything after them; a push Secret
# the registry refuses outranks a repository that did not answer (that one is retried by
# itself, the refusal needs the user).
PROBLEM_CHAIN: Final = ("access", "preflight", "source")
# Summarized from the owned conditions and the pass's problem (kstatus), not owned by a step.
SUMMARIZED: Final = frozenset(
    {ConditionType.READY.value, ConditionType.RECONCILING.value, ConditionType.STALLED.value}
)
STEPS: Final = (
    Step("access", access.OWNS, lambda w, d: access.run(w)),
    Step("source", source.OWNS, lambda w, d: source.run(w, d.access)),
    Step("pushes", frozenset(), lambda w, d: pushes.screen(w, d.access, d.problem())),
    Step(
        "jobs",
        frozenset(),
        lambda w, d: jobs.plan(w, d.access, d.source.builds + d.pushes.builds),
    ),
    Step(
        "preflight",
        preflight.OWNS,
        lambda w, d: preflight.run(w, d.access, d.jobs, d.problem()),
    ),
    Step("queue", jobs.OWNS, lambda w, d: jobs.queue(w, d.access, d.jobs, d.preflight.created)),
    Step(
        "taken",
        pushes.OWNS,
        lambda w, d: pushes.record(
            w, d.access, d.pushes, d.preflight.created, [j.body for j in d.queue.jobs]
        ),
    ),
    Step("history", history.OWNS, lambda w, d: history.run(d.access, d.queue)),
    Step(
        "failure_logs",
        failure_logs.OWNS,
        # Newest first, as status.builds lists them.
        lambda w, d: failure_logs.run(w, [j.record for j in reversed(d.history.kept)], d.jobs.pods),
    ),
    Step("digests", digests.OWNS, lambda w, d: digests.run(w, d.access, d.failure_logs.records)),
    Step("repository", repository.OWNS, lambda w, d: repository.run(w, d.access)),
    Step(
        "commit_statuses",
        commit_statuses.OWNS,
        lambda w, d: commit_statuses.run(w, d.access, w.provider, d.digests.records),
    ),
    Step(
        "webhook",
        webhook.OWNS,
        lambda w, d: webhook.run(w, d.access, w.provider, d.commit_statuses.token),
    ),
)


def fold(world: World) -> Done:
    """Run every step in order, each on the outcomes of those before it."""
    done = Done()
    for step in STEPS:
        done.add(step.name, step.run(world, done))
    return done


__all__ = [
    "PROBLEM_CHAIN",
    "STEPS",
    "SUMMARIZED",
    "Contribution",
    "Done",
    "Gate",
    "Step",
    "World",
    "fold",
]
