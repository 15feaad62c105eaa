"""Failure reasons from Kaniko's own messages, as a real executor printed them on the local
real node (chainguard-dev/kaniko v1.25.5; captured from tests/k8s/test_realnode.py's runs).
The message written is ours: none of the log's text reaches status or Events."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from autobuild.planning.failures import LOG_HEAD_BYTES, classify_log

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
    ("log", "reason"),
    [
        (
            "Error: error resolving source context: authentication required: "
            "authentication required\nUsage:\n  executor [flags]\n" + USAGE_TAIL,
            "GitAuthFailed",
        ),
        (
            "Error: error resolving source context: repository not found: \n" + USAGE_TAIL,
            "GitCloneFailed",
        ),
        (
            "Error: error resolving source context: object not found\n" + USAGE_TAIL,
            "GitCloneFailed",
        ),
        (
            "Error: error resolving dockerfile path: please provide a valid path to a Dockerfile "
            "within the build context with --dockerfile\n" + USAGE_TAIL,
            "DockerfileNotFound",
        ),
        (
            GIT_PROGRESS + "error building image: parsing dockerfile: dockerfile parse error on "
            "line 1: FROM requires either one or three arguments\n",
            "DockerfileInvalid",
        ),
        (GIT_PROGRESS + PUSH_DENIED + "\n", "PushUnauthorized"),
        (
            "\x1b[36mINFO\x1b[0m[0000] No cached layer found for cmd RUN echo hi \n"
            "error building image: error building stage: failed to optimize instructions: "
            "failed to get files used from context: failed to get fileinfo for "
            "/kaniko/buildcontext/nothere: lstat /kaniko/buildcontext/nothere: no such file or "
            "directory\n",
            "ContextFileMissing",
        ),
        (
            "\x1b[36mINFO\x1b[0m[0002] Running: [/bin/sh -c exit 3] \n"
            "error building image: error building stage: failed to execute command: waiting "
            "for process to exit: exit status 3\n",
            "BuildStepFailed",
        ),
        (
            f"\x1b[31mERRO\x1b[0m[0000] Error while retrieving image from cache: {REGISTRY}"
            "/nope/nothing:1 unable to complete operation after 0 attempts \n"
            + BASE_MISSING
            + "\n",
            "BaseImagePullFailed",
        ),
    ],
)
def test_real_kaniko_messages_are_classified(log: str, reason: str) -> None:
    found = classify_log(log)
    assert found is not None
    assert found[0] == reason
    assert REGISTRY not in found[1]  # our words, not the log's
    assert "Error" not in found[1]


def test_usage_text_alone_is_not_a_reason() -> None:
    """The termination message of some failures is only Kaniko's usage: read the log then."""
    assert classify_log(USAGE_TAIL) is None
    assert classify_log("") is None


# Kaniko's push to a registry whose certificate it does not trust (no --registry-certificate),
# as test_realnode.py's private-CA run printed it.
PUSH_UNTRUSTED = (
    "error checking push permissions -- make sure you entered the correct tag name, and that "
    "you are authenticated correctly, and try again: checking push permission for "
    f'"{REGISTRY}/acme/private-ca:latest": creating push check transport for {REGISTRY} '
    f'failed: Get "https://{REGISTRY}/v2/": tls: failed to verify certificate: x509: '
    f"certificate signed by unknown authority; GET http://{REGISTRY}/v2/: unexpected status "
    "code 400 Bad Request: Client sent an HTTP request to an HTTPS server."
)


def test_an_untrusted_registry_certificate_is_named_before_push_and_pull_failures() -> None:
    """Go's TLS error (crypto/tls, crypto/x509) inside Kaniko's push and pull errors."""
    base = (
        "error building image: unable to complete operation after 0 attempts, last error: "
        f'Get "https://{REGISTRY}/v2/": tls: failed to verify certificate: x509: certificate '
        "signed by unknown authority"
    )
    for log in (PUSH_UNTRUSTED, base):
        found = classify_log(GIT_PROGRESS + log + "\n")
        assert found is not None
        assert found[0] == "RegistryCertificateUntrusted"
        assert "spec.image.caSecret" in found[1]
        assert REGISTRY not in found[1]
    # A git host's certificate is a clone failure, not the registry's.
    git = (
        'Error: error resolving source context: Get "https://git.corp/acme/app.git/info/refs": '
        "tls: failed to verify certificate: x509: certificate signed by unknown authority"
    )
    found = classify_log(git + "\n" + USAGE_TAIL)
    assert found is not None
    assert found[0] == "GitCloneFailed"


# A build's author writes its log: one 64 KiB line made for a backtracking engine (the ".*"
# of the base-image rule rescanned the rest of the line from each of its 3,000 occurrences).
ADVERSARIAL = ("error building image: " * 3000)[:LOG_HEAD_BYTES]


def test_an_adversarial_64_kib_log_classifies_in_milliseconds() -> None:
    """Python's re took 1.6 s for it on the development machine, on the event loop. RE2 is
    linear: about a millisecond; the bound is generous for a loaded host (best of three)."""
    assert len(ADVERSARIAL) == LOG_HEAD_BYTES
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        found = classify_log(ADVERSARIAL)
        timings.append(time.perf_counter() - started)
    assert min(timings) < 0.2
    assert found is None  # no known message in it, as before


def test_only_the_head_of_a_longer_text_is_read() -> None:
    """Whoever calls, at most LOG_HEAD_BYTES characters are classified."""
    padding = "x" * 80 + "\n"
    head = padding * (LOG_HEAD_BYTES // len(padding) + 1)
    assert classify_log(head + "error pushing image\n") is None
    assert classify_log(padding + "error pushing image\n") is not None


def test_the_controller_classifies_a_read_log_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The log head is classified on a worker thread: the event loop keeps serving."""
    from autobuild.controller import executors, reconcile
    from autobuild.planning.snapshot import LogRead
    from autobuild.settings import BuildSettings

    threads: list[threading.Thread] = []

    def recording(log: str) -> tuple[str, str] | None:
        threads.append(threading.current_thread())
        return classify_log(log)

    class Api:
        async def request_text(self, method: str, path: str, **_: Any) -> str:
            return ADVERSARIAL

    monkeypatch.setattr(executors, "classify_log", recording)

    async def read() -> None:
        controller = reconcile.Controller(Api(), BuildSettings())  # type: ignore[arg-type]
        await controller.executors.read_failure_log(("ci", "app"), LogRead("app-1", "app-1-pod"))

    asyncio.run(read())
    assert threads
    assert threads[0] is not threading.main_thread()
