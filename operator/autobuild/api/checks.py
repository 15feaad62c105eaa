"""Input checks shared by the API models, the planner and the CLI.

The patterns are written in the common subset of Python's ``re`` and RE2 (Go), because the same
strings are emitted into the CRD, where the API server evaluates them.
"""

from __future__ import annotations

import functools
import re
from typing import Final

from pydantic import ValidationError

from autobuild.api.regex import Regex, RegexError

# A Kubernetes object name (DNS-1123 subdomain): Secrets referenced by the spec.
DNS1123_SUBDOMAIN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

# host/owner/name or an http(s) URL; no user info ('@'), no '#', no whitespace, no leading '-'.
REPO: Final = (
    r"^(https?://)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?(/[A-Za-z0-9._~-]+)+/?$"
)

# A registry host with an optional port.
REGISTRY: Final = r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$"

# OCI distribution path components (lowercase); the namespace may hold several.
_COMPONENT: Final = r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*"
IMAGE_NAMESPACE: Final = rf"^{_COMPONENT}(/{_COMPONENT})*$"
IMAGE_NAME: Final = rf"^{_COMPONENT}$"

# Characters git forbids in ref names, plus '#' (Kaniko's git context separator) and whitespace.
_REF_FORBIDDEN: Final = r"\s#~^:?*\[\\\x00-\x1f\x7f"
GIT_REF_NAME: Final = rf"^[^-/{_REF_FORBIDDEN}][^{_REF_FORBIDDEN}]*$"

# A rule's source: an exact branch/tag name, or a regex between slashes.
RULE_SOURCE: Final = rf"^(/.+/|[^-/{_REF_FORBIDDEN}][^{_REF_FORBIDDEN}]*)$"

# A Docker tag template: literal tag characters, commas, spaces and {sourceref} / {\1}..{\9}.
DOCKER_TAG_TEMPLATE: Final = r"^[A-Za-z0-9_.,{}\\ -]+$"

# A path inside the repository: no control characters, no backslashes.
REPO_PATH: Final = r"^[^\\\x00-\x1f\x7f]*$"

# Build-arg names as Docker accepts them.
BUILD_ARG_NAME: Final = r"^[A-Za-z_][A-Za-z0-9_]*$"

# Go-style durations restricted to whole hours, minutes and seconds: 90s, 5m, 1h30m.
DURATION: Final = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$"

# A full git object name: SHA-1 (40 hex) or SHA-256 (64 hex).
COMMIT: Final = r"^([0-9a-f]{40}|[0-9a-f]{64})$"

VALID_IMAGE_TAG: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_LOOKAROUND_OR_BACKREF = re.compile(r"\(\?(=|!|<=|<!|>|P=)|\\[1-9]")


class InputError(ValueError):
    """Bad user input; the message names the offending field (models add the path themselves)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


def check_git_ref_name(name: str, field: str) -> str:
    """Return ``name`` if it is a safe git branch or tag name, else raise InputError."""
    if not name:
        raise InputError(field, "must not be empty")
    if not re.fullmatch(GIT_REF_NAME, name):
        raise InputError(
            field,
            f"{name!r} is not a safe git ref name (no whitespace, control characters, '#', "
            "'~^:?*[\\', and no leading '-' or '/')",
        )
    if ".." in name or "@{" in name or "//" in name:
        raise InputError(field, f"{name!r} is not a valid git ref name ('..', '@{{' or '//')")
    if name.endswith(("/", ".", ".lock")):
        raise InputError(field, f"{name!r} is not a valid git ref name (bad ending)")
    return name


def check_repo_path(path: str, field: str, *, allow_leading_slash: bool) -> str:
    """Return ``path`` if it stays inside the repository, else raise InputError."""
    if not re.fullmatch(REPO_PATH, path):
        raise InputError(field, f"{path!r} contains a backslash or a control character")
    if path.startswith("/") and not allow_leading_slash:
        raise InputError(field, f"{path!r} must be relative (no leading '/')")
    if ".." in path.split("/"):
        raise InputError(field, f"{path!r} escapes the repository ('..' is not allowed)")
    return path


@functools.lru_cache(maxsize=1024)
def compile_source_regex(source: str, field: str) -> Regex:
    """Compile a rule's ``/regex/`` source with RE2, or raise InputError naming ``field``."""
    body = source[1:-1]
    if _LOOKAROUND_OR_BACKREF.search(body):
        raise InputError(
            field,
            f"{source!r}: lookarounds, atomic groups and backreferences are not supported "
            "(regexes use the RE2 syntax that the API server also checks)",
        )
    try:
        pattern = Regex(body)
    except RegexError as exc:
        raise InputError(
            field, f"{source!r} is not a valid regular expression (RE2 syntax): {exc}"
        ) from None
    if pattern.groups > 9:
        raise InputError(field, f"{source!r} has {pattern.groups} groups; at most 9 are allowed")
    return pattern


def check_tag_template(template: str, field: str, groups: int) -> str:
    """Check the placeholders of a dockerTag template against the rule's regex group count."""
    for placeholder in _PLACEHOLDER.findall(template):
        if placeholder == "sourceref":
            continue
        match = re.fullmatch(r"\\([1-9])", placeholder)
        if match is None:
            raise InputError(
                field,
                f"unknown placeholder {{{placeholder}}}; use {{sourceref}} or {{\\1}}..{{\\9}}",
            )
        if int(match.group(1)) > groups:
            raise InputError(
                field,
                f"{{{placeholder}}} refers to group {match.group(1)}, but the source has "
                f"{groups} capture group(s)",
            )
    if "{" in _PLACEHOLDER.sub("", template) or "}" in _PLACEHOLDER.sub("", template):
        raise InputError(field, f"{template!r} has an unbalanced '{{' or '}}'")
    return template


def parse_duration(text: str, field: str) -> int:
    """Parse a duration such as ``1h30m`` or ``90s`` into whole seconds."""
    match = re.fullmatch(DURATION, text)
    if not text or match is None:
        raise InputError(field, f"{text!r} is not a duration like 90s, 5m or 1h30m")
    hours, minutes, seconds = (int(g[:-1]) if g else 0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


# What each pattern means, in words, for error messages.
_PATTERN_HINTS: Final = {
    DNS1123_SUBDOMAIN: "must be a Kubernetes object name (lowercase letters, digits, '-', '.')",
    REPO: "must be host/owner/name or an http(s):// URL, without credentials, '#', whitespace "
    "or a leading '-'",
    REGISTRY: "must be a registry host name with an optional :port",
    IMAGE_NAMESPACE: "must be lowercase path components ([a-z0-9] separated by '.', '_', '-')",
    IMAGE_NAME: "must be one lowercase path component ([a-z0-9] separated by '.', '_', '-')",
    RULE_SOURCE: "must be a branch or tag name without whitespace, control characters, '#', "
    "'~^:?*[\\' or a leading '-', or a /regex/",
    DOCKER_TAG_TEMPLATE: "may only hold tag characters [A-Za-z0-9_.-], commas, spaces and "
    "{sourceref} or {\\1}..{\\9}",
    REPO_PATH: "must not contain backslashes or control characters",
    DURATION: "must be a duration such as 90s, 5m or 1h30m",
}


def describe_validation_error(exc: ValidationError, prefix: str = "") -> list[str]:
    """One line per problem, each naming the field by its path, e.g. ``spec.tags[0].source``."""
    lines = []
    for error in exc.errors():
        path = prefix
        for part in error["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        message = error["msg"].removeprefix("Value error, ")
        pattern = (error.get("ctx") or {}).get("pattern")
        if error["type"] == "string_pattern_mismatch" and pattern in _PATTERN_HINTS:
            message = f"{error['input']!r} is not allowed: {_PATTERN_HINTS[pattern]}"
        lines.append(f"{path}: {message}" if path else message)
    return lines
