"""Docker Hub's build trigger URL: what a trigger body asks for, and the refs that then build.

Docker Hub accepted these JSON bodies on ``POST .../trigger/{token}/``:

- ``{"build": true}``: every rule, like the Trigger button — which, like Docker Hub's, builds
  the rules with an exact source name (a ``/regex/`` rule names no ref to build);
- ``{"source_type": "Branch", "source_name": "staging"}`` / ``{"source_type": "Tag",
  "source_name": "v1.1"}``: that branch or tag, by every rule it matches;
- ``{"docker_tag": "latest"}``: the refs whose matching rules render that image tag.

An empty body counts as ``{"build": true}``. ``source_*`` wins over ``docker_tag``, which wins
over ``build`` (scripts sent ``{"build": true, "docker_tag": "latest"}``). The receiver only
parses the body; the operator resolves the heads (``git ls-remote``) and calls
:func:`trigger_events`, so the HTTP answer never waits on the git host.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from autobuild.api import checks
from autobuild.api.models import AutomatedBuildSpec, SourceType, Trigger
from autobuild.planning.planner import PushEvent
from autobuild.planning.rules import match_rule, render_tags

__all__ = ["TriggerPlan", "TriggerScope", "TriggerURLRequest", "trigger_events"]

_IMAGE_TAG: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_PREFIX: Final = {SourceType.BRANCH: "refs/heads/", SourceType.TAG: "refs/tags/"}
_USAGE: Final = (
    'expected {"build": true}, {"source_type": "Branch"|"Tag", "source_name": NAME} '
    'or {"docker_tag": TAG}'
)


class TriggerScope(StrEnum):
    """Which rules a trigger builds."""

    ALL = "All"
    SOURCE = "Source"
    DOCKER_TAG = "DockerTag"


@dataclass(frozen=True)
class TriggerURLRequest:
    """A parsed trigger body. Build it with :meth:`parse`."""

    scope: TriggerScope
    source_type: SourceType | None = None
    source_name: str = ""
    docker_tag: str = ""

    @classmethod
    def parse(cls, payload: Any) -> TriggerURLRequest:
        """Read a decoded trigger body (``None`` for an empty one); raises checks.InputError."""
        if payload is None:
            return cls(TriggerScope.ALL)
        if not isinstance(payload, dict):
            raise checks.InputError("body", _USAGE)
        if "source_type" in payload or "source_name" in payload:
            return cls._source(payload.get("source_type"), payload.get("source_name"))
        if "docker_tag" in payload:
            tag = payload["docker_tag"]
            if not isinstance(tag, str) or not _IMAGE_TAG.fullmatch(tag):
                raise checks.InputError(
                    "docker_tag", "must be an image tag ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})"
                )
            return cls(TriggerScope.DOCKER_TAG, docker_tag=tag)
        if payload.get("build") is True or not payload:
            return cls(TriggerScope.ALL)
        raise checks.InputError("body", _USAGE)

    @classmethod
    def _source(cls, source_type: Any, source_name: Any) -> TriggerURLRequest:
        kinds = {kind.value.lower(): kind for kind in SourceType}
        kind = kinds.get(source_type.lower()) if isinstance(source_type, str) else None
        if kind is None:
            raise checks.InputError("source_type", 'must be "Branch" or "Tag"')
        if not isinstance(source_name, str):
            raise checks.InputError("source_name", "must be a branch or tag name")
        return cls(TriggerScope.SOURCE, kind, checks.check_git_ref_name(source_name, "source_name"))


@dataclass(frozen=True)
class TriggerPlan:
    """The push events a trigger becomes, and notes on what it could not build."""

    events: tuple[PushEvent, ...]
    notes: tuple[str, ...] = ()


def _refs_for(
    spec: AutomatedBuildSpec, request: TriggerURLRequest, heads: Mapping[str, str]
) -> list[str]:
    """The refs a trigger names, in rule (or ls-remote) order; may repeat."""
    if request.source_type is not None:  # scope SOURCE
        return [_PREFIX[request.source_type] + request.source_name]
    if request.scope is TriggerScope.ALL:
        return [
            _PREFIX[rule.source_type] + rule.source
            for rule in spec.tags
            if rule.source_regex is None
        ]
    refs: list[str] = []
    for ref in heads:
        for kind, prefix in _PREFIX.items():
            if not ref.startswith(prefix):
                continue
            name = ref[len(prefix) :]
            for rule in spec.tags:
                match = match_rule(rule, kind, name)
                if match is not None and request.docker_tag in render_tags(rule.docker_tag, match):
                    refs.append(ref)
                    break
    return refs


def trigger_events(
    spec: AutomatedBuildSpec, request: TriggerURLRequest, heads: Mapping[str, str]
) -> TriggerPlan:
    """The push events (trigger ``TriggerURL``) a trigger asks for, at the current ``heads``.

    ``heads`` maps ``refs/heads/*`` and ``refs/tags/*`` to commits, as ``git ls-remote``
    reports them. A ref the repository does not have builds nothing and gets a note.
    :func:`autobuild.planning.planner.plan_builds` then picks the rules per event.
    """
    events: list[PushEvent] = []
    notes: list[str] = []
    for ref in dict.fromkeys(_refs_for(spec, request, heads)):
        commit = heads.get(ref)
        if commit is None:
            notes.append(f"{ref} does not exist in the repository: nothing to build")
            continue
        try:
            events.append(PushEvent.parse(ref, commit, trigger=Trigger.TRIGGER_URL))
        except checks.InputError as exc:
            notes.append(f"{ref[:200]} cannot build: {exc}")
    if not events and not notes:
        if request.scope is TriggerScope.DOCKER_TAG:
            notes.append(f"no rule renders image tag {request.docker_tag!r} for any ref")
        else:
            notes.append("no build rule names a branch or tag to build")
    return TriggerPlan(tuple(events), tuple(notes))
