"""The build planner: a push (or a manual trigger) and an AutomatedBuild spec -> builds to run."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from autobuild.api import checks
from autobuild.api.models import AutomatedBuildSpec, BuildRule, SourceType, Trigger
from autobuild.planning.rules import match_rule, render_tags

_ZERO_COMMIT = re.compile(r"^0+$")
# Triggers that a person asked for: they build rules whose autobuild switch is off, too.
_EXPLICIT_TRIGGERS = frozenset({Trigger.CREATE, Trigger.MANUAL, Trigger.TRIGGER_URL})
# The only place that knows how git spells branches and tags.
REF_PREFIXES: Final = {SourceType.BRANCH: "refs/heads/", SourceType.TAG: "refs/tags/"}
# Longer delivery ids are kept as a hash of this many hex digits (status stays small).
_DELIVERY_ID_MAX: Final = 64


def full_ref(source_type: SourceType, name: str) -> str:
    """The full git ref of a branch or tag name: ``refs/heads/main``, ``refs/tags/v1``."""
    return REF_PREFIXES[source_type] + name


def split_ref(ref: str) -> tuple[SourceType, str]:
    """Split ``refs/heads/X`` / ``refs/tags/X`` / a bare branch name, without checking X.

    Raises InputError for other ``refs/*`` (pull requests, notes, ...). Use :func:`parse_ref`
    for refs that come from users or the network.
    """
    for source_type, prefix in REF_PREFIXES.items():
        if ref.startswith(prefix):
            return source_type, ref[len(prefix) :]
    if ref.startswith("refs/"):
        raise checks.InputError("ref", f"{ref!r}: only refs/heads/* and refs/tags/* build")
    return SourceType.BRANCH, ref


def parse_ref(ref: str) -> tuple[SourceType, str]:
    """:func:`split_ref`, and refuse names that are unsafe or not valid git ref names."""
    source_type, name = split_ref(ref)
    return source_type, checks.check_git_ref_name(name, "ref")


def exact_rule_ref(rule: BuildRule) -> str | None:
    """The full ref an exact-name rule builds; None for a ``/regex/`` rule."""
    if rule.is_regex_source(rule.source):
        return None
    return full_ref(rule.source_type, rule.source)


def buildable_ref(spec: AutomatedBuildSpec, ref: str) -> bool:
    """Whether a build rule of ``spec`` matches ``ref`` (``refs/heads/X`` or ``refs/tags/X``):
    the refs worth keeping of a repository's heads (polls, triggers and creation build only
    those)."""
    for source_type, prefix in REF_PREFIXES.items():
        if ref.startswith(prefix):
            name = ref[len(prefix) :]
            return any(match_rule(rule, source_type, name) is not None for rule in spec.tags)
    return False


def check_commit(commit: str) -> str:
    """Return ``commit`` if it is a full commit id, else raise InputError."""
    if not re.fullmatch(checks.COMMIT, commit):
        raise checks.InputError(
            "commit", f"{commit!r} is not a full commit id (40 or 64 lowercase hex digits)"
        )
    return commit


def delivery_key(provider: str, delivery_id: str) -> str:
    """How a webhook delivery is named in :attr:`PushEvent.delivery` and status:
    ``provider:id``, a long id as a hash of it (a redelivery carries the same id)."""
    if len(delivery_id) > _DELIVERY_ID_MAX:
        digest = hashlib.sha256(delivery_id.encode("utf-8", "replace")).hexdigest()
        delivery_id = "sha256-" + digest[: _DELIVERY_ID_MAX - len("sha256-")]
    return f"{provider}:{delivery_id}"


@dataclass(frozen=True)
class PushEvent:
    """A ref that moved to a commit, and what reported it. Build it with :meth:`parse`."""

    source_type: SourceType
    name: str
    commit: str
    message: str = ""
    trigger: Trigger = Trigger.PUSH
    trigger_id: str = ""
    # Who made the commit ("Name <email>"), when the channel knows it (webhooks do, polls do not).
    author: str = ""
    # The webhook delivery that reported it (:func:`delivery_key`; "github:" when it had no
    # id), "" for polls and triggers: a delivery may be a replay (planning/replay.py).
    # Neither this nor the commit time is part of equality: the same push, however reported.
    delivery: str = field(default="", compare=False)
    # When the commit was made, as the delivery says (None: it does not say).
    commit_time: datetime | None = field(default=None, compare=False)

    @classmethod
    def parse(
        cls,
        ref: str,
        commit: str,
        message: str = "",
        trigger: Trigger = Trigger.PUSH,
        trigger_id: str = "",
        author: str = "",
        *,
        delivery: str = "",
        commit_time: datetime | None = None,
    ) -> PushEvent:
        """Validate a ref (``refs/heads/X``, ``refs/tags/X`` or a bare branch name) and commit."""
        source_type, name = parse_ref(ref)
        return cls(
            source_type,
            name,
            check_commit(commit),
            message,
            trigger,
            trigger_id,
            author,
            delivery,
            commit_time,
        )

    @property
    def git_ref(self) -> str:
        """The full git ref, e.g. ``refs/heads/main``."""
        return full_ref(self.source_type, self.name)

    @property
    def is_deletion(self) -> bool:
        """A push that deleted the ref carries the all-zero commit."""
        return bool(_ZERO_COMMIT.match(self.commit))


@dataclass(frozen=True)
class PlannedBuild:
    """One build to run: a rule, the ref and commit it builds, and the image tags it pushes."""

    rule_index: int
    rule: BuildRule
    event: PushEvent
    tags: tuple[str, ...]


@dataclass(frozen=True)
class BuildPlan:
    """The builds a push causes, and notes that explain what did not build."""

    builds: tuple[PlannedBuild, ...]
    notes: tuple[str, ...] = field(default=())


def plan_builds(spec: AutomatedBuildSpec, event: PushEvent) -> BuildPlan:
    """Decide, with Docker Hub's semantics, which rules build for ``event``.

    - a deleted ref builds nothing;
    - pushes and polls build only with ``autoBuildOnPush`` on, and only rules with ``autobuild``;
    - manual and API triggers build every matching rule;
    - every matching rule builds (several rules may match one push).
    """
    if event.is_deletion:
        return BuildPlan((), (f"{event.git_ref} was deleted: nothing to build",))
    explicit = event.trigger in _EXPLICIT_TRIGGERS
    if not explicit and not spec.auto_build_on_push:
        return BuildPlan((), ("autoBuildOnPush is false: pushes do not build",))
    builds: list[PlannedBuild] = []
    notes: list[str] = []
    for index, rule in enumerate(spec.tags):
        match = match_rule(rule, event.source_type, event.name)
        if match is None:
            continue
        if not explicit and not rule.autobuild:
            notes.append(f"rule {index} ({rule.source}) matches but its autobuild is false")
            continue
        tags = render_tags(rule.docker_tag, match)
        if not tags:
            notes.append(f"rule {index} ({rule.source}) matches but its dockerTag renders empty")
            continue
        builds.append(PlannedBuild(index, rule, event, tags))
    if not builds and not notes:
        notes.append(f"no build rule matches {event.source_type.value} {event.name!r}")
    return BuildPlan(tuple(builds), tuple(notes))
