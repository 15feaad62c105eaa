"""The registry steps alone: digests read back after a build, and the repository settings."""

from __future__ import annotations

from dataclasses import replace

from factories import ANSWERED_AT, build_record, document, registry_answers, step_world

from autobuild.api.conditions import Reason
from autobuild.api.models import BuildPhase, BuildRecord
from autobuild.planning import status as tracking
from autobuild.planning.registry_gate import RegistryResult
from autobuild.planning.snapshot import Snapshot
from autobuild.planning.steps import Gate, access, digests, repository

DIGEST = "sha256:" + "e" * 64


def succeeded() -> BuildRecord:
    return build_record(BuildPhase.SUCCEEDED, tags=["latest"], digest=DIGEST)


def snapshot(**changes: object) -> Snapshot:
    b = document()
    b["metadata"]["generation"] = 1
    return replace(Snapshot(body=b, jobs=(), pods=(), secrets={}, now=ANSWERED_AT), **changes)


def test_a_succeeded_build_waits_for_its_digests_before_status_says_so() -> None:
    w = step_world(snapshot())
    out = digests.run(w, access.run(w), [succeeded()])
    (request,) = out.requests
    assert request.id == "verify:job-1"
    assert out.closes == {Gate.STATUS}
    answered = {request.id: RegistryResult(ANSWERED_AT, True, digests={"latest": DIGEST})}
    w = step_world(snapshot(registry=answered))
    done = digests.run(w, access.run(w), [succeeded()])
    assert done.requests == ()
    assert done.closes == frozenset()
    assert done.records[0].digests == {"latest": DIGEST}


def test_a_digest_mismatch_is_the_records_reason_and_a_warning() -> None:
    result = RegistryResult(
        ANSWERED_AT, False, Reason.DIGEST_MISMATCH, "latest is sha256:f", digests={"latest": "x"}
    )
    w = step_world(snapshot(registry={"verify:job-1": result}))
    out = digests.run(w, access.run(w), [succeeded()])
    assert out.records[0].reason == Reason.DIGEST_MISMATCH
    assert [(e.type, e.reason) for e in out.events] == [("Warning", Reason.DIGEST_MISMATCH)]


def test_no_registry_call_with_a_refused_push_secret() -> None:
    w = step_world(snapshot())
    refused = replace(
        access.run(w), push_refused=tracking.Problem(Reason.CREDENTIALS_NOT_ALLOWED, "bound")
    )
    assert digests.run(w, refused, [succeeded()]).requests == ()
    out = repository.run(w, refused)
    assert out.request is None
    assert out.repository is None


def test_repository_settings_are_asked_once_and_their_answer_shown() -> None:
    s = snapshot()
    w = step_world(s)
    asked = repository.run(w, access.run(w))
    assert asked.request is not None
    assert asked.repository is None
    w = step_world(replace(s, registry=registry_answers(s.body)))
    shown = repository.run(w, access.run(w))
    assert shown.request is None
    assert shown.repository is not None
    assert shown.repository.reason == "VisibilityUnsupported"
