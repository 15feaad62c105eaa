"""Failure reasons from Kaniko's own messages, as a real executor printed them on the local
real node (chainguard-dev/kaniko v1.25.5; captured from tests/k8s/test_realnode.py's runs)."""

from __future__ import annotations

import pytest

from autobuild.planning.failures import MAX_MESSAGE, Failure, classify_failure

REGISTRY = "127.0.0.1:40513"
PUSH_DENIED = (
    "error checking push permissions -- make sure you entered the correct tag name, and that "
    "you are authenticated correctly, and try again: checking push permission for "
    f'"{REGISTRY}/acme/app:latest": POST http://{REGISTRY}/v2/acme/app/blobs/uploads/: '
    "UNAUTHORIZED: authentication required; [map[Action:pull Class: Name:acme/app "
    "Type:repository] map[Action:push Class: Name:acme/app Type:repository]]"
)
BASE_MISSING = (
    "error building image: unable to complete operation after 0 attempts, last error: GET "
    f"http://{REGISTRY}/v2/nope/nothing/manifests/1: MANIFEST_UNKNOWN: manifest unknown; "
    "map[Tag:1]"
)
USAGE_TAIL = (
    "  -v, --verbosity string                          Log level (trace, debug, info, warn, "
    'error, fatal, panic) (default "info")\n\nUse "executor [command] --help" for more '
    "information about a command.\n"
)
GIT_PROGRESS = "Enumerating objects: 3, done.\nTotal 3 (delta 0), reused 0 (delta 0)\n"


@pytest.mark.parametrize(
    ("log", "reason", "message"),
    [
        (
            "Error: error resolving source context: authentication required: "
            "authentication required\nUsage:\n  executor [flags]\n" + USAGE_TAIL,
            "GitAuthenticationFailed",
            "error resolving source context: authentication required: authentication required",
        ),
        (
            "Error: error resolving source context: repository not found: \n" + USAGE_TAIL,
            "SourceNotFound",
            "error resolving source context: repository not found:",
        ),
        (
            "Error: error resolving source context: object not found\n" + USAGE_TAIL,
            "SourceNotFound",
            "error resolving source context: object not found",
        ),
        (
            "Error: error resolving dockerfile path: please provide a valid path to a Dockerfile "
            "within the build context with --dockerfile\n" + USAGE_TAIL,
            "DockerfileNotFound",
            "error resolving dockerfile path: please provide a valid path to a Dockerfile "
            "within the build context with --dockerfile",
        ),
        (
            GIT_PROGRESS + "error building image: parsing dockerfile: dockerfile parse error on "
            "line 1: FROM requires either one or three arguments\n",
            "DockerfileInvalid",
            "error building image: parsing dockerfile: dockerfile parse error on line 1: FROM "
            "requires either one or three arguments",
        ),
        (GIT_PROGRESS + PUSH_DENIED + "\n", "PushDenied", PUSH_DENIED),
        (
            "\x1b[36mINFO\x1b[0m[0000] No cached layer found for cmd RUN echo hi \n"
            "error building image: error building stage: failed to optimize instructions: "
            "failed to get files used from context: failed to get fileinfo for "
            "/kaniko/buildcontext/nothere: lstat /kaniko/buildcontext/nothere: no such file or "
            "directory\n",
            "ContextFileMissing",
            "error building image: error building stage: failed to optimize instructions: "
            "failed to get files used from context: failed to get fileinfo for "
            "/kaniko/buildcontext/nothere: lstat /kaniko/buildcontext/nothere: no such file or "
            "directory",
        ),
        (
            "\x1b[36mINFO\x1b[0m[0002] Running: [/bin/sh -c exit 3] \n"
            "error building image: error building stage: failed to execute command: waiting "
            "for process to exit: exit status 3\n",
            "BuildStepFailed",
            "error building image: error building stage: failed to execute command: waiting "
            "for process to exit: exit status 3",
        ),
        (
            f"\x1b[31mERRO\x1b[0m[0000] Error while retrieving image from cache: {REGISTRY}"
            "/nope/nothing:1 unable to complete operation after 0 attempts \n"
            + BASE_MISSING
            + "\n",
            "BaseImagePullFailed",
            BASE_MISSING,
        ),
    ],
)
def test_real_kaniko_messages_are_classified(log: str, reason: str, message: str) -> None:
    assert classify_failure(log) == Failure(reason, message)


def test_usage_text_alone_is_not_a_reason() -> None:
    """The termination message of some failures is only Kaniko's usage: read the log then."""
    assert classify_failure(USAGE_TAIL) is None
    assert classify_failure("") is None


def test_messages_are_bounded() -> None:
    failure = classify_failure("error checking push permissions: " + "x" * 5000)
    assert failure is not None
    assert failure.reason == "PushDenied"
    assert len(failure.message) == MAX_MESSAGE
