"""Docker Hub build-rule semantics: which rules match a ref, and the image tags they produce."""

from __future__ import annotations

import re
from dataclasses import dataclass

from autobuild.api.models import BuildRule, SourceType

_TAG_PLACEHOLDER = re.compile(r"\{(sourceref|\\[1-9])\}")
_NOT_TAG_CHAR = re.compile(r"[^A-Za-z0-9_.-]")
_MAX_TAG_LENGTH = 128


@dataclass(frozen=True)
class RuleMatch:
    """A rule that matched a ref: the whole ref name and the regex groups ('' if unmatched)."""

    source_ref: str
    groups: tuple[str, ...] = ()


def match_rule(rule: BuildRule, source_type: SourceType, name: str) -> RuleMatch | None:
    """Match one rule against a branch or tag name.

    Exact sources compare the whole name; ``/regex/`` sources are searched anywhere in the
    name (Docker Hub's ``/[0-9.]+$/`` matches ``release-1.2``) unless the regex anchors itself.
    """
    if rule.source_type != source_type:
        return None
    regex = rule.source_regex
    if regex is None:
        return RuleMatch(source_ref=name) if rule.source == name else None
    groups = regex.search(name)
    if groups is None:
        return None
    return RuleMatch(source_ref=name, groups=groups)


def sanitize_tag(text: str) -> str | None:
    """Make ``text`` a valid image tag: other characters become '-'; None if nothing is left."""
    tag = _NOT_TAG_CHAR.sub("-", text).lstrip(".-")[:_MAX_TAG_LENGTH]
    return tag or None


def render_tags(template: str, match: RuleMatch) -> tuple[str, ...]:
    """Render a comma-separated dockerTag template into distinct, valid image tags, in order."""

    def substitute(found: re.Match[str]) -> str:
        key = found.group(1)
        if key == "sourceref":
            return match.source_ref
        index = int(key[1:])
        return match.groups[index - 1] if index <= len(match.groups) else ""

    tags: list[str] = []
    for item in template.split(","):
        tag = sanitize_tag(_TAG_PLACEHOLDER.sub(substitute, item.strip()))
        if tag is not None and tag not in tags:
            tags.append(tag)
    return tuple(tags)
