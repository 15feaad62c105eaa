"""What one decision reads and what it returns: the snapshot of an AutomatedBuild's world
(taken by the controller from memory) and the :class:`Decision` (the writes act performs).

Plain data, no behaviour beyond derived counts: the steps (``planning/steps``) read a
:class:`Snapshot`; ``planning/decide.py`` folds them into a :class:`Decision`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

from pydantic import ValidationError

from autobuild.api.models import AutomatedBuildStatus
from autobuild.planning import hooks
from autobuild.planning import status as tracking
from autobuild.planning.planner import PushEvent
from autobuild.planning.registry_gate import RegistryRequest, RegistryResult

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class SecretView:
    """What the operator keeps of a referenced Secret."""

    type: str
    annotations: Mapping[str, str]
    data: Mapping[str, str] = field(repr=False)
    version: str = ""
    # uids of the AutomatedBuilds that are its controller (ownerReferences): whether the
    # operator created it for one of them (the generated hook secret).
    owners: tuple[str, ...] = ()


@dataclass(frozen=True)
class HeadsRequest:
    """Ask the git host for the repository's heads (``git ls-remote``): the one read of the
    reconcile that is not from watched state."""

    generation: int
    request_id: str
    url: str
    username: str
    password: str | None = field(repr=False)
    credentials_version: str = ""

    @property
    def id(self) -> str:
        """One heads read per object at a time: a newer request is asked once the one running
        has answered (its answer says which request it was for)."""
        return "heads"


@dataclass(frozen=True)
class HeadsResult:
    """The answer to a :class:`HeadsRequest`: heads, or why they could not be read."""

    generation: int
    request_id: str
    at: datetime
    heads: Mapping[str, str] | None = None
    problem: tracking.Problem | None = None
    credentials_version: str = ""


@dataclass(frozen=True)
class Snapshot:
    """Everything the decision reads, taken from memory at one moment."""

    body: Obj
    jobs: Sequence[Obj]
    pods: Sequence[Obj]
    secrets: Mapping[str, SecretView | None]
    now: datetime
    heads: HeadsResult | None = None
    pushes: Sequence[PushEvent] = ()
    registry: Mapping[str, RegistryResult] = field(default_factory=dict)
    # What the head of a failed build's log said (job name -> reason and message, or None).
    logs: Mapping[str, tuple[str, str] | None] = field(default_factory=dict)
    # Answers of GitHub calls (webhook, commit statuses) by request id.
    github: Mapping[str, hooks.GitHubResult] = field(default_factory=dict)
    # Pushes queued for the object so far, the pending ones included: pending push i is
    # number push_count - len(pushes) + 1 + i (a head check covers pushes up to a number).
    push_count: int = 0


@dataclass(frozen=True)
class JobWrite:
    """A write to an existing Job, conditional on the version the decision saw."""

    name: str
    uid: str
    resource_version: str


@dataclass(frozen=True)
class LogRead:
    """Read the head of a failed build's log: its tail (the termination message) only had
    Kaniko's usage text in it."""

    job_name: str
    pod_name: str

    @property
    def id(self) -> str:
        """The failed build's Job: its log head is read once."""
        return f"log:{self.job_name}"


@dataclass(frozen=True)
class EventNote:
    """A Kubernetes Event to post about the AutomatedBuild."""

    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    """The writes of one reconcile, in the order act performs them (status last)."""

    create: tuple[dict[str, Any], ...] = ()
    release: tuple[JobWrite, ...] = ()
    cancel: tuple[JobWrite, ...] = ()
    delete: tuple[JobWrite, ...] = ()
    status: dict[str, Any] | None = None
    events: tuple[EventNote, ...] = ()
    resolve: HeadsRequest | None = None
    registry: tuple[RegistryRequest, ...] = ()
    read_logs: tuple[LogRead, ...] = ()
    pushes_done: int = 0
    requeue_after: float | None = None
    github: tuple[hooks.GitHubRequest, ...] = ()
    # The new metadata.finalizers (None: unchanged), written before status.
    finalizers: tuple[str, ...] | None = None
    # Create the Secret that keeps a generated webhook secret (its name; act makes the secret).
    hook_secret: str | None = None
    # GitHub answers to drop from memory (by request id).
    github_forget: tuple[str, ...] = ()
    # Events about the pushes this decision takes (refused replays): posted once they are
    # taken, whether or not status changes.
    push_events: tuple[EventNote, ...] = ()

    @property
    def writes(self) -> int:
        """How many API writes acting on it takes (Events included)."""
        jobs = len(self.create) + len(self.release) + len(self.cancel) + len(self.delete)
        others = (self.finalizers is not None) + (self.hook_secret is not None)
        events = len(self.events) + len(self.push_events)
        return jobs + others + (self.status is not None) + events


# What a decision asks to be done beside its Kubernetes writes, each with its ``id``.
Effect: TypeAlias = hooks.GitHubRequest | RegistryRequest | HeadsRequest | LogRead


def previous_status(body: Obj) -> AutomatedBuildStatus:
    """The status as last written (empty if absent or unreadable)."""
    try:
        return AutomatedBuildStatus.model_validate(body.get("status") or {})
    except ValidationError:
        return AutomatedBuildStatus()


__all__ = [
    "Decision",
    "Effect",
    "EventNote",
    "HeadsRequest",
    "HeadsResult",
    "JobWrite",
    "LogRead",
    "Obj",
    "SecretView",
    "Snapshot",
    "previous_status",
]
