"""Why a Kaniko build failed, read from its log: a reason for the status and Events.

The patterns are Kaniko's own messages, as a real executor (chainguard-dev/kaniko v1.25.5)
printed them on the local real node (``tests/k8s/test_realnode.py``); the unit tests hold
those lines verbatim.

Kaniko prints its command-line usage (about 75 lines) after some errors (a missing Dockerfile,
a git authentication failure). The pod's termination message under
``FallbackToLogsOnError`` is only the last 80 lines / 2 KiB of the log, so it can hold nothing
but that usage text: :func:`classify_failure` then answers None, and the caller reads the
pod's log (the error line comes first) and classifies that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

# Longest message kept: enough for a registry's error, short enough for a status field.
MAX_MESSAGE: Final = 512
_ANSI: Final = re.compile(r"\x1b\[[0-9;]*m")
_ERROR_PREFIX: Final = re.compile(r"^(?:Error:\s*|ERRO\[\d+\]\s*)")


@dataclass(frozen=True)
class Failure:
    """A classified build failure: a CamelCase ``reason`` and the log line that says why."""

    reason: str
    message: str


# In order: the first rule whose pattern matches a line wins (git and registry failures
# both say "authentication required", so the context decides).
_RULES: Final[tuple[tuple[str, re.Pattern[str]], ...]] = (
    ("GitAuthenticationFailed", re.compile(r"error resolving source context: .*authentication")),
    ("SourceNotFound", re.compile(r"error resolving source context: .*not found", re.IGNORECASE)),
    ("SourceUnreachable", re.compile(r"error resolving source context")),
    ("DockerfileNotFound", re.compile(r"error resolving dockerfile path")),
    ("DockerfileInvalid", re.compile(r"parsing dockerfile|dockerfile parse error")),
    ("PushDenied", re.compile(r"error checking push permissions|(UNAUTHORIZED|DENIED):.*push")),
    ("ContextFileMissing", re.compile(r"failed to get fileinfo for /kaniko/buildcontext/")),
    ("BuildStepFailed", re.compile(r"failed to execute command")),
    (
        "BaseImagePullFailed",
        re.compile(r"error building image: .*(MANIFEST_UNKNOWN|NAME_UNKNOWN|UNAUTHORIZED|DENIED)"),
    ),
    ("PushFailed", re.compile(r"error pushing image|failed to push")),
)


def clean_line(line: str) -> str:
    """A log line without colour codes, Kaniko's ``Error:`` prefix and surrounding space."""
    return _ERROR_PREFIX.sub("", _ANSI.sub("", line).strip()).strip()


def classify_failure(log: str) -> Failure | None:
    """The reason a build failed, from (the tail of) its Kaniko log; None when no known
    message is in it (e.g. only Kaniko's usage text: read the whole pod log then)."""
    lines = [clean_line(line) for line in log.splitlines()]
    for reason, pattern in _RULES:
        for line in lines:
            if pattern.search(line):
                return Failure(reason, _shorten(line))
    return None


def _shorten(message: str) -> str:
    if len(message) <= MAX_MESSAGE:
        return message
    return message[: MAX_MESSAGE - 1] + "…"
