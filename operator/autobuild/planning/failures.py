"""Why a Kaniko build failed: a reason and a short fixed message, never the log's own text.

The patterns are Kaniko's own messages as a real executor (chainguard-dev/kaniko v1.25.5)
printed them on the local real node (``tests/k8s/test_realnode.py``). The log is only read
here: status and Events are readable by more people than ``pods/log``, and build output can
hold anything, so what is written is the reason and a message of our own.

Kaniko prints its usage text (about 75 lines) after some errors (a git authentication failure,
a missing Dockerfile), and the termination message under ``FallbackToLogsOnError`` is only the
last 80 lines / 2 KiB of the log: then :func:`classify_log` finds nothing in it and the
controller reads the head of the pod's log instead (:data:`LOG_HEAD_BYTES`).

The log is written by whoever writes the Dockerfile, so the patterns are RE2 (linear time,
:mod:`autobuild.api.regex`): Python's backtracking ``re`` spent seconds on one 64 KiB line of
``error building image: `` repeated (each ``.*`` rescanned the rest of the line). Only the first
:data:`LOG_HEAD_BYTES` characters are read, whoever calls.
"""

from __future__ import annotations

import re
from typing import Final

from autobuild.api.conditions import Reason
from autobuild.api.regex import Regex

# How much of a failed build's log the operator reads when the tail says nothing.
LOG_HEAD_BYTES: Final = 64 * 1024
# Colour codes: Python's re (for sub), linear here: the scan from each escape stops at the
# first character that is not a digit or ";".
_ANSI: Final = re.compile(r"\x1b\[[0-9;]*m")

# In order: the first rule whose pattern matches a line wins (git and registry failures both
# say "authentication required", so the context decides).
_RULES: Final[tuple[tuple[Reason, Regex, str], ...]] = (
    (
        Reason.GIT_AUTH_FAILED,
        Regex(r"error resolving source context: .*authentication"),
        "cloning the repository failed: authentication was refused (check "
        "spec.source.credentialsSecret and its access to the repository)",
    ),
    (
        Reason.GIT_CLONE_FAILED,
        Regex(r"error resolving source context"),
        "cloning the repository at the build's commit failed",
    ),
    (
        Reason.DOCKERFILE_NOT_FOUND,
        Regex(r"error resolving dockerfile path"),
        "the Dockerfile was not found: check the rule's dockerfile and context",
    ),
    (
        Reason.DOCKERFILE_INVALID,
        Regex(r"(?i)parsing dockerfile|dockerfile parse error"),
        "the Dockerfile could not be parsed",
    ),
    (
        # Go's TLS errors (crypto/tls, crypto/x509) on a registry call: before the push and
        # base-image rules, whose lines carry them. A git host's come first (GitCloneFailed).
        Reason.REGISTRY_CERTIFICATE_UNTRUSTED,
        Regex(r"tls: failed to verify certificate|x509: "),
        "a registry's TLS certificate was not trusted: for spec.image's registry name its CA "
        "in spec.image.caSecret",
    ),
    (
        Reason.PUSH_UNAUTHORIZED,
        Regex(r"error checking push permissions|(UNAUTHORIZED|DENIED):.*push"),
        "the registry refused the push: check spec.image.pushSecret and its rights on the "
        "repository",
    ),
    (
        Reason.CONTEXT_FILE_MISSING,
        Regex(r"failed to get fileinfo for /kaniko/buildcontext/"),
        "a file the Dockerfile copies is not in the build context",
    ),
    (
        Reason.BUILD_STEP_FAILED,
        Regex(r"failed to execute command"),
        "a step of the Dockerfile failed",
    ),
    (
        Reason.BASE_IMAGE_PULL_FAILED,
        Regex(r"error building image: .*(MANIFEST_UNKNOWN|NAME_UNKNOWN|UNAUTHORIZED|DENIED)"),
        "a base image of the Dockerfile could not be pulled",
    ),
    (
        Reason.PUSH_FAILED,
        Regex(r"error pushing image|failed to push"),
        "pushing the image failed",
    ),
)


def classify_log(log: str) -> tuple[Reason, str] | None:
    """(reason, message) from Kaniko's log text; None when no known message is in it."""
    # One text with "\n" between the lines (RE2's "." stops there, as it stopped at the end of
    # each line before): each rule is one linear scan.
    text = _ANSI.sub("", "\n".join(log[:LOG_HEAD_BYTES].splitlines()))
    for reason, pattern, message in _RULES:
        if pattern.search(text) is not None:
            return reason, message
    return None


def with_exit_code(found: tuple[Reason, str], exit_code: object) -> tuple[str, str]:
    """A classified failure's reason and its message with the container's exit code."""
    return found[0], f"{found[1]} (exit code {exit_code})"
