"""The decide step: snapshot in, writes out. No cluster: the world is plain dicts, and a small
simulated act applies a decision so that deciding again can be checked."""

from __future__ import annotations

import copy
import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from factories import (
    COMMIT,
    OTHER_COMMIT,
    document,
    queued_job,
    registry_answers,
)

from autobuild.api.conditions import Reason
from autobuild.api.models import Trigger
from autobuild.planning import failures, registry_gate
from autobuild.planning import status as tracking
from autobuild.planning.decide import decide, redact
from autobuild.planning.job import ANNOTATION_SOURCE_REF, LABEL_RULE, LABEL_TRIGGER
from autobuild.planning.planner import PushEvent
from autobuild.planning.registry_gate import RegistryResult
from autobuild.planning.snapshot import Decision, HeadsResult, SecretView, Snapshot
from autobuild.planning.triggers import ANNOTATION_TRIGGER, TriggerRequest, append_request
from autobuild.settings import BuildSettings

NOW = datetime(2026, 11, 29, 8, 0, 0, tzinfo=UTC)
SETTINGS = BuildSettings()
TOKEN = "ghp_supersecrettoken123"
_versions = itertools.count(100)


def body(
    generation: int = 1, annotations: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    doc = document(**spec)
    doc["metadata"].update(
        generation=generation, resourceVersion=str(next(_versions)), annotations=annotations or {}
    )
    return doc


def heads(
    snapshot_body: dict[str, Any], refs: dict[str, str], request_id: str = "create"
) -> HeadsResult:
    generation = snapshot_body["metadata"]["generation"]
    return HeadsResult(generation, request_id, NOW, heads=refs)


def world(b: dict[str, Any], **changes: Any) -> Snapshot:
    base = Snapshot(body=b, jobs=(), pods=(), secrets={}, now=NOW, registry=registry_answers(b))
    return replace(base, **changes)


def verified(snapshot: Snapshot, decision: Decision) -> dict[str, RegistryResult]:
    """The registry's answers to the digest checks a decision asked for: all as Kaniko said."""
    answers = dict(snapshot.registry)
    for request in decision.registry:
        if request.kind == registry_gate.VERIFY:
            digests = dict.fromkeys(request.tags, request.digest)
            answers[request.id] = RegistryResult(NOW, True, digests=digests)
    return answers


def act(
    snapshot: Snapshot, decision: Decision, later: timedelta = timedelta(seconds=1)
) -> Snapshot:
    """What the API server would hold after the writes (Jobs exactly as written)."""
    jobs = {j["metadata"]["name"]: copy.deepcopy(dict(j)) for j in snapshot.jobs}
    for created in decision.create:
        job = copy.deepcopy(created)
        job["metadata"].update(
            uid=f"uid-{job['metadata']['name']}",
            resourceVersion=str(next(_versions)),
            creationTimestamp=NOW.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        job["status"] = {}
        jobs[job["metadata"]["name"]] = job
    for write in decision.release:
        jobs[write.name]["spec"]["suspend"] = False
    for write in decision.cancel:
        patch = tracking.cancel_patch(NOW)
        jobs[write.name]["spec"]["suspend"] = True
        jobs[write.name]["metadata"]["annotations"].update(patch["metadata"]["annotations"])
    for write in decision.delete:
        del jobs[write.name]
    new_body = copy.deepcopy(dict(snapshot.body))
    if decision.status is not None:
        status = {**new_body.get("status", {}), **decision.status}
        new_body["status"] = {k: v for k, v in status.items() if v is not None}
    return replace(
        snapshot,
        body=new_body,
        jobs=tuple(jobs.values()),
        pushes=tuple(snapshot.pushes[decision.pushes_done :]),
        now=snapshot.now + later,
        registry=verified(snapshot, decision),
    )


def settle(snapshot: Snapshot, rounds: int = 5) -> tuple[Snapshot, list[Decision]]:
    """Decide and act until nothing is left to write."""
    decisions = []
    for _ in range(rounds):
        decision = decide(snapshot, SETTINGS)
        decisions.append(decision)
        if decision.writes == 0 and not decision.registry:
            return snapshot, decisions
        snapshot = act(snapshot, decision)
    raise AssertionError(f"no fixed point: {decisions[-1]}")


def created(snapshot: Snapshot) -> Snapshot:
    """An AutomatedBuild that has been through its creation (no rule had a head)."""
    b = body(tags=[{"source": "main", "dockerTag": "latest"}])
    first = world(b, heads=heads(b, {}))
    done, _ = settle(first)
    return replace(snapshot, body={**snapshot.body, "status": done.body["status"]})


def job_groups(snapshot: Snapshot) -> dict[str, tuple[str, str, bool]]:
    return {
        j["metadata"]["name"]: (
            j["metadata"]["labels"][LABEL_RULE],
            j["metadata"]["annotations"][ANNOTATION_SOURCE_REF],
            bool(j["spec"].get("suspend")),
        )
        for j in snapshot.jobs
    }


def test_creation_asks_for_heads_then_builds_autobuild_rules_once() -> None:
    b = body(
        tags=[
            {"source": "main", "dockerTag": "latest"},
            {"source": "dev", "dockerTag": "dev", "autobuild": False},
        ]
    )
    first = decide(world(b), SETTINGS)
    assert first.resolve is not None
    assert first.resolve.request_id == "create"
    assert first.status is None
    assert not first.create
    snapshot = world(b, heads=heads(b, {"refs/heads/main": COMMIT, "refs/heads/dev": COMMIT}))
    decision = decide(snapshot, SETTINGS)
    assert len(decision.create) == 1
    job = decision.create[0]
    assert job["metadata"]["labels"][LABEL_TRIGGER] == Trigger.CREATE.value
    assert job["spec"]["suspend"] is False  # nothing runs before it: created released
    assert decision.status is not None
    assert decision.status["lastTrigger"]["id"] == "create"
    assert decision.status["builds"][0]["trigger"] == "Create"
    final, _ = settle(snapshot)
    assert len(final.jobs) == 1


def test_two_refs_at_one_commit_are_two_builds_and_a_redelivery_is_none() -> None:
    snapshot = created(
        world(body(tags=[{"source": "/^v([0-9.]+)$/", "sourceType": "Tag", "dockerTag": "{\\1}"}]))
    )
    pushes = (
        PushEvent.parse("refs/tags/v1.4.2", COMMIT),
        PushEvent.parse("refs/tags/v1.4", COMMIT),
        PushEvent.parse("refs/tags/v1.4.2", COMMIT, trigger=Trigger.POLL),  # seen again by a poll
    )
    decision = decide(replace(snapshot, pushes=pushes), SETTINGS)
    assert len(decision.create) == 2
    assert decision.pushes_done == 3
    tags = sorted(j["metadata"]["annotations"]["autobuild.dev/tags"] for j in decision.create)
    assert tags == ["1.4", "1.4.2"]
    after = act(replace(snapshot, pushes=pushes), decision)
    again = decide(replace(after, pushes=(PushEvent.parse("refs/tags/v1.4", COMMIT),)), SETTINGS)
    assert again.create == ()


def test_serial_latest_only_queues_per_rule_and_ref() -> None:
    tags = [{"source": "main", "dockerTag": "latest"}, {"source": "/^ma/", "dockerTag": "edge"}]
    snapshot = created(world(body(tags=tags, runPolicy="SerialLatestOnly")))
    push = replace(snapshot, pushes=(PushEvent.parse("main", COMMIT),))
    first = decide(push, SETTINGS)
    assert len(first.create) == 2
    assert not first.cancel
    assert all(j["spec"]["suspend"] is False for j in first.create)  # both rules run
    running = act(push, first)
    newer = replace(running, pushes=(PushEvent.parse("main", OTHER_COMMIT),))
    second = decide(newer, SETTINGS)
    assert len(second.create) == 2
    assert not second.cancel  # queued behind their own rule's build
    queued = act(newer, second)
    third_commit = "f" * 40
    newest = replace(queued, pushes=(PushEvent.parse("main", third_commit),))
    third = decide(newest, SETTINGS)
    assert len(third.create) == 2
    cancelled = {w.name for w in third.cancel}
    assert cancelled == {j["metadata"]["name"] for j in second.create}
    assert third.status is not None
    phases = {b["jobName"]: b["phase"] for b in third.status["builds"]}
    assert {phases[name] for name in cancelled} == {"Cancelled"}
    assert [phases[j["metadata"]["name"]] for j in first.create] == ["Pending", "Pending"]


def test_serial_runs_one_build_per_queue_and_releases_the_next() -> None:
    snapshot = created(world(body(runPolicy="Serial")))
    pushes = (PushEvent.parse("main", COMMIT), PushEvent.parse("main", OTHER_COMMIT))
    decision = decide(replace(snapshot, pushes=pushes), SETTINGS)
    suspended = [j["spec"]["suspend"] for j in decision.create]
    assert suspended == [False, True]
    world_after = act(replace(snapshot, pushes=pushes), decision)
    jobs = [copy.deepcopy(dict(j)) for j in world_after.jobs]
    first = next(j for j in jobs if not j["spec"]["suspend"])
    first["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    done = decide(replace(world_after, jobs=tuple(jobs)), SETTINGS)
    assert [w.name for w in done.release] == [
        next(j["metadata"]["name"] for j in jobs if j["spec"]["suspend"])
    ]


def test_manual_triggers_are_handled_in_order_and_none_is_lost() -> None:
    snapshot = created(world(body()))
    value = append_request(
        None, TriggerRequest("20261129T080000.000001Z-a", "refs/heads/main", COMMIT)
    )
    value = append_request(
        value, TriggerRequest("20261129T080000.000002Z-b", "refs/heads/main", OTHER_COMMIT)
    )
    b = {
        **snapshot.body,
        "metadata": {**snapshot.body["metadata"], "annotations": {ANNOTATION_TRIGGER: value}},
    }
    final, _ = settle(replace(snapshot, body=b))
    commits = sorted(j["metadata"]["annotations"]["autobuild.dev/commit"] for j in final.jobs)
    assert commits == sorted([COMMIT, OTHER_COMMIT])
    assert final.body["status"]["lastTrigger"]["id"].endswith("-b")
    assert all(j["metadata"]["labels"][LABEL_TRIGGER] == "Manual" for j in final.jobs)


@pytest.mark.parametrize(
    ("request_", "tags", "reason"),
    [
        (TriggerRequest("t1", None, COMMIT), None, Reason.INVALID_TRIGGER),
        (TriggerRequest("t1"), [{"source": "/^v/", "dockerTag": "x"}], Reason.NOTHING_TO_BUILD),
    ],
)
def test_a_trigger_that_builds_nothing_says_so(
    request_: TriggerRequest, tags: list[dict[str, str]] | None, reason: Reason
) -> None:
    snapshot = created(world(body(**({"tags": tags} if tags else {}))))
    b = {
        **snapshot.body,
        "metadata": {
            **snapshot.body["metadata"],
            "annotations": {ANNOTATION_TRIGGER: append_request(None, request_)},
        },
    }
    decision = decide(replace(snapshot, body=b), SETTINGS)
    assert decision.resolve is None
    assert not decision.create
    assert decision.status is not None
    assert decision.status["lastTrigger"]["reason"] == reason
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", reason)]


def test_trigger_without_head_says_which_ref_has_none() -> None:
    snapshot = created(world(body()))
    b = {
        **snapshot.body,
        "metadata": {
            **snapshot.body["metadata"],
            "annotations": {ANNOTATION_TRIGGER: "please"},
        },
    }
    asked = decide(replace(snapshot, body=b), SETTINGS)
    assert asked.resolve is not None
    assert asked.resolve.request_id == "please"
    answered = replace(snapshot, body=b, heads=heads(b, {}, "please"))
    decision = decide(answered, SETTINGS)
    assert decision.status is not None
    assert (
        "no head in the repository for refs/heads/main" in decision.status["lastTrigger"]["message"]
    )


def test_trigger_of_a_ref_no_rule_builds_says_so_though_the_heads_lack_it() -> None:
    """ls-remote keeps only the refs a rule builds: a ref missing from the heads that no rule
    builds is "no rule builds", not "no head" (issue 17, item 7)."""
    snapshot = created(world(body()))
    request_ = TriggerRequest(id="20260101T000000.000000Z-a", ref="refs/heads/feature")
    b = {
        **snapshot.body,
        "metadata": {
            **snapshot.body["metadata"],
            "annotations": {ANNOTATION_TRIGGER: append_request(None, request_)},
        },
    }
    answered = replace(snapshot, body=b, heads=heads(b, {}, request_.id))
    decision = decide(answered, SETTINGS)
    assert decision.status is not None
    assert decision.status["lastTrigger"]["message"] == "no rule builds refs/heads/feature"


def test_missing_secret_is_stalled_and_nothing_is_asked() -> None:
    b = body(source={"repo": "github.com/acme/app", "credentialsSecret": "link"})
    decision = decide(world(b, secrets={"link": None}), SETTINGS)
    assert decision.resolve is None
    assert not decision.create
    assert decision.status is not None
    stalled = next(c for c in decision.status["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "SecretNotFound")


def test_credentials_not_bound_to_the_host_are_never_sent() -> None:
    b = body(source={"repo": "github.com/acme/app", "credentialsSecret": "link"})
    secret = SecretView("Opaque", {}, {"token": TOKEN})
    decision = decide(world(b, secrets={"link": secret}), SETTINGS)
    assert decision.resolve is None
    assert decision.status is not None
    ready = next(c for c in decision.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "CredentialsNotAllowed"
    allowed = SecretView("Opaque", {"autobuild.dev/git-hosts": "github.com"}, {"token": TOKEN})
    asked = decide(world(b, secrets={"link": allowed}), SETTINGS)
    assert asked.resolve is not None
    assert (asked.resolve.username, asked.resolve.password) == ("x-access-token", TOKEN)
    assert TOKEN not in repr(asked)


def test_secret_values_are_redacted_from_status_and_events() -> None:
    b = body(source={"repo": "github.com/acme/app", "credentialsSecret": "link"})
    secret = SecretView("Opaque", {"autobuild.dev/git-hosts": "*"}, {"token": TOKEN})
    problem = tracking.Problem(Reason.SOURCE_UNREACHABLE, f"cannot read https://{TOKEN}@github.com")
    result = HeadsResult(1, "create", NOW, problem=problem)
    decision = decide(world(b, secrets={"link": secret}, heads=result), SETTINGS)
    assert decision.status is not None
    assert TOKEN not in str(decision.status)
    assert TOKEN not in str(decision.events)
    assert "***" in str(decision.status)
    assert decision.requeue_after is not None
    assert redact({"a": [TOKEN + "!"]}, [TOKEN]) == {"a": ["***!"]}


def test_failures_are_classified_without_copying_the_log() -> None:
    snapshot = created(world(body()))
    push = replace(snapshot, pushes=(PushEvent.parse("main", COMMIT),))
    running = act(push, decide(push, SETTINGS))
    job = copy.deepcopy(dict(running.jobs[0]))
    job["status"] = {
        "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]
    }
    log_tail = f"error checking push permissions -- UNAUTHORIZED: token {TOKEN}"
    pod = {
        "metadata": {
            "name": "p",
            "labels": {"job-name": job["metadata"]["name"]},
            "creationTimestamp": "2026-11-29T08:00:01Z",
        },
        "status": {
            "containerStatuses": [
                {
                    "name": "kaniko",
                    "state": {
                        "terminated": {"exitCode": 1, "reason": "Error", "message": log_tail}
                    },
                }
            ]
        },
    }
    decision = decide(replace(running, jobs=(job,), pods=(pod,)), SETTINGS)
    assert decision.status is not None
    build = decision.status["builds"][0]
    assert (build["phase"], build["reason"]) == ("Failed", "PushUnauthorized")
    assert "UNAUTHORIZED" not in build["message"]
    assert TOKEN not in str(decision.status)
    assert any(e.reason == "BuildFailed" for e in decision.events)


def test_a_released_build_without_a_pod_says_why_after_the_grace() -> None:
    snapshot = created(world(body()))
    push = replace(snapshot, pushes=(PushEvent.parse("main", COMMIT),))
    running = act(push, decide(push, SETTINGS))
    job = copy.deepcopy(dict(running.jobs[0]))
    job["status"] = {"startTime": "2026-11-29T08:00:00Z"}
    early = decide(replace(running, jobs=(job,), now=NOW + timedelta(seconds=10)), SETTINGS)
    assert early.requeue_after is not None
    assert early.requeue_after <= 21
    late = decide(replace(running, jobs=(job,), now=NOW + timedelta(seconds=31)), SETTINGS)
    assert late.status is not None
    assert late.status["builds"][0]["reason"] == "PodNotCreated"
    pod = {
        "metadata": {"name": "p", "labels": {"job-name": job["metadata"]["name"]}},
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes are available",
                }
            ]
        },
    }
    stuck = decide(replace(running, jobs=(job,), pods=(pod,)), SETTINGS)
    assert stuck.status is not None
    assert stuck.status["builds"][0]["reason"] == "Unschedulable"


def test_history_limit_zero_keeps_the_newest_and_prunes_after_the_next() -> None:
    snapshot = created(world(body(historyLimit={"succeeded": 0, "failed": 0})))
    push = replace(snapshot, pushes=(PushEvent.parse("main", COMMIT),))
    after = act(push, decide(push, SETTINGS))
    done = [copy.deepcopy(dict(j)) for j in after.jobs]
    for job in done:
        job["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    first_done = replace(after, jobs=tuple(done))
    assert decide(first_done, SETTINGS).delete == ()
    second = replace(first_done, pushes=(PushEvent.parse("main", OTHER_COMMIT),))
    decision = decide(second, SETTINGS)
    assert [w.name for w in decision.delete] == [done[0]["metadata"]["name"]]
    assert len(decision.create) == 1


def test_deciding_again_after_acting_writes_nothing() -> None:
    tags = [
        {"source": "main", "dockerTag": "latest"},
        {"source": "/^v/", "sourceType": "Tag", "dockerTag": "{sourceref}"},
    ]
    for policy in ("Serial", "SerialLatestOnly", "Parallel"):
        snapshot = created(world(body(tags=tags, runPolicy=policy)))
        pushes = tuple(
            PushEvent.parse(ref, commit)
            for ref, commit in itertools.product(["main", "refs/tags/v1"], [COMMIT, OTHER_COMMIT])
        )
        final, _ = settle(replace(snapshot, pushes=pushes))
        assert decide(final, SETTINGS).writes == 0
        assert final.pushes == ()
        running = [name for name, (_, _, suspended) in job_groups(final).items() if not suspended]
        if policy != "Parallel":
            assert len(running) == 2  # one per (rule, ref) queue


@pytest.mark.parametrize(
    ("policy", "running", "release", "cancel"),
    [
        ("Serial", False, ["job-1"], []),
        ("Serial", True, [], []),
        ("SerialLatestOnly", False, ["job-3"], ["job-1", "job-2"]),
        ("SerialLatestOnly", True, [], ["job-1", "job-2"]),
        ("Parallel", True, ["job-1", "job-2", "job-3"], []),
    ],
)
def test_run_policy_on_one_queue(
    policy: str, running: bool, release: list[str], cancel: list[str]
) -> None:
    jobs = [queued_job(1), queued_job(2), queued_job(3)]
    pods = []
    if running:
        jobs.insert(0, queued_job(0, suspend=False))
        pods.append(
            {
                "metadata": {"name": "p0", "labels": {"job-name": "job-0"}},
                "status": {"containerStatuses": [{"name": "kaniko", "state": {"running": {}}}]},
            }
        )
    snapshot = created(world(body(runPolicy=policy)))
    decision = decide(replace(snapshot, jobs=tuple(jobs), pods=tuple(pods)), SETTINGS)
    assert [w.name for w in decision.release] == release
    assert [w.name for w in decision.cancel] == cancel
    assert all(w.resource_version for w in decision.release + decision.cancel)


def test_history_limit_prunes_the_oldest_finished_builds() -> None:
    done = {"conditions": [{"type": "Complete", "status": "True"}]}
    timed_out = {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}
    jobs = [queued_job(n, suspend=False, **done) for n in range(4)]
    jobs += [queued_job(10 + n, suspend=False, **timed_out) for n in range(3)]
    jobs.append(queued_job(20, suspend=False))
    gone = queued_job(30, suspend=False, **done)
    gone["metadata"]["deletionTimestamp"] = "2026-11-29T07:59:00Z"
    snapshot = created(world(body(historyLimit={"succeeded": 2, "failed": 1})))
    decision = decide(replace(snapshot, jobs=(*jobs, gone)), SETTINGS)
    assert [w.name for w in decision.delete] == ["job-0", "job-1", "job-10", "job-11"]
    assert decision.status is not None
    kept = [b["jobName"] for b in decision.status["builds"]]
    assert kept == ["job-20", "job-12", "job-3", "job-2"]


def test_no_job_before_the_push_preflight_and_none_when_it_refuses() -> None:
    snapshot = created(world(body()))
    push = replace(snapshot, pushes=(PushEvent.parse("main", COMMIT),), registry={})
    asked = decide(push, SETTINGS)
    assert asked.create == ()
    assert asked.pushes_done == 0  # the push waits for the answer
    assert asked.status is None
    (preflight,) = [r for r in asked.registry if r.kind == registry_gate.PREFLIGHT]
    refused = RegistryResult(NOW, False, "PushUnauthorized", "registry refused push to acme/x")
    decision = decide(replace(push, registry={preflight.id: refused}), SETTINGS)
    assert decision.create == ()
    assert decision.pushes_done == 0
    assert decision.status is not None
    stalled = next(c for c in decision.status["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "PushUnauthorized")
    assert decision.requeue_after is not None
    unreachable = RegistryResult(NOW, False, "RegistryUnreachable", "connection refused")
    proceeds = decide(replace(push, registry={preflight.id: unreachable}), SETTINGS)
    assert len(proceeds.create) == 1  # an unreachable registry does not hold builds back


def test_repository_settings_are_applied_once_per_spec_and_shown() -> None:
    b = body()
    first = decide(world(b, registry={}), SETTINGS)
    (settings,) = [r for r in first.registry if r.kind == registry_gate.SETTINGS]
    applied = {
        "name": "acme/dockertext-cavityflow",
        "kind": "DockerHub",
        "visibility": "Public",
        "description": "Cavity flow solver",
        "applied": ["created"],
    }
    answered = world(
        b, registry={settings.id: RegistryResult(NOW, True, status=applied)}, heads=heads(b, {})
    )
    final, _ = settle(answered)
    repository = final.body["status"]["repository"]
    assert repository["applied"] == ["created"]
    assert repository["observed"]
    condition = next(
        c for c in final.body["status"]["conditions"] if c["type"] == "VisibilityApplied"
    )
    assert (condition["status"], condition["reason"]) == ("True", "Applied")
    assert not [r for r in decide(final, SETTINGS).registry if r.kind == registry_gate.SETTINGS]
    unsupported = world(b, heads=heads(b, {}))
    done, _ = settle(unsupported)
    condition = next(
        c for c in done.body["status"]["conditions"] if c["type"] == "VisibilityApplied"
    )
    assert (condition["status"], condition["reason"]) == ("False", "VisibilityUnsupported")


def test_a_succeeded_build_is_reported_once_its_digests_are_checked() -> None:
    snapshot = created(world(body()))
    push = replace(snapshot, pushes=(PushEvent.parse("main", COMMIT),))
    running = act(push, decide(push, SETTINGS))
    job = copy.deepcopy(dict(running.jobs[0]))
    job["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    digest = "sha256:" + "a" * 64
    pod = {
        "metadata": {"name": "p", "labels": {"job-name": job["metadata"]["name"]}},
        "status": {
            "containerStatuses": [
                {"name": "kaniko", "state": {"terminated": {"exitCode": 0, "message": digest}}}
            ]
        },
    }
    done = replace(running, jobs=(job,), pods=(pod,))
    held = decide(done, SETTINGS)
    assert held.status is None
    (check,) = [r for r in held.registry if r.kind == registry_gate.VERIFY]
    assert (check.tags, check.digest) == (("latest",), digest)
    other = "sha256:" + "b" * 64
    wrong = RegistryResult(
        NOW, False, "DigestMismatch", f"the registry has latest: {other}", digests={"latest": other}
    )
    decision = decide(replace(done, registry={**done.registry, check.id: wrong}), SETTINGS)
    assert decision.status is not None
    build = decision.status["builds"][0]
    assert (build["phase"], build["reason"]) == ("Succeeded", "DigestMismatch")
    assert build["digests"] == {"latest": other}
    assert ("Warning", "DigestMismatch") in [(e.type, e.reason) for e in decision.events]
    after = act(replace(done, registry={**done.registry, check.id: wrong}), decision)
    assert decide(replace(after, registry=dict(done.registry)), SETTINGS).registry == ()


def test_a_changed_token_is_tried_at_once() -> None:
    b = body(source={"repo": "github.com/acme/app", "credentialsSecret": "link"})
    allowed = {"autobuild.dev/git-hosts": "github.com"}
    old = SecretView("Opaque", allowed, {"token": "old-token"}, version="1")
    problem = tracking.Problem(Reason.SOURCE_UNREACHABLE, "authentication failed")
    failed = HeadsResult(1, "create", NOW, problem=problem, credentials_version="1")
    waiting = decide(world(b, secrets={"link": old}, heads=failed), SETTINGS)
    assert waiting.resolve is None
    assert waiting.requeue_after is not None
    assert waiting.requeue_after <= 31
    new = SecretView("Opaque", allowed, {"token": "new-token"}, version="2")
    asked = decide(world(b, secrets={"link": new}, heads=failed), SETTINGS)
    assert asked.resolve is not None
    assert asked.resolve.password == "new-token"


def test_a_failure_whose_log_tail_is_kanikos_usage_is_classified_from_the_log_head() -> None:
    snapshot = created(world(body()))
    push = replace(snapshot, pushes=(PushEvent.parse("main", COMMIT),))
    running = act(push, decide(push, SETTINGS))
    job = copy.deepcopy(dict(running.jobs[0]))
    job["status"] = {"conditions": [{"type": "Failed", "status": "True"}]}
    usage = "Usage:\n  executor [flags]\n  --context string\n" * 20
    pod = {
        "metadata": {"name": "pod-1", "labels": {"job-name": job["metadata"]["name"]}},
        "status": {
            "containerStatuses": [
                {"name": "kaniko", "state": {"terminated": {"exitCode": 1, "message": usage}}}
            ]
        },
    }
    failed = replace(running, jobs=(job,), pods=(pod,))
    asked = decide(failed, SETTINGS)
    assert [(r.job_name, r.pod_name) for r in asked.read_logs] == [
        (job["metadata"]["name"], "pod-1")
    ]
    assert asked.status is not None
    assert asked.status["builds"][0]["reason"] == "Error"
    log_head = "error resolving source context: authentication required\n" + usage
    found = failures.classify_log(log_head)
    answered = act(failed, asked)
    decision = decide(replace(answered, logs={job["metadata"]["name"]: found}), SETTINGS)
    assert decision.status is not None
    build = decision.status["builds"][0]
    assert build["reason"] == "GitAuthFailed"
    assert "authentication required" not in build["message"]
    after = act(replace(answered, logs={job["metadata"]["name"]: found}), decision)
    again = decide(replace(after, logs={}), SETTINGS)  # after a restart: kept in status
    assert again.read_logs == ()
    assert again.status is None


def _ca_image(**extra: str) -> dict[str, str]:
    return {
        "registry": "registry.corp:5443",
        "namespace": "acme",
        "name": "x",
        "visibility": "Private",
        "shortDescription": "x",
        "caSecret": "corp-ca",
        **extra,
    }


@pytest.mark.parametrize(
    ("secret", "reason", "message"),
    [
        (None, "SecretNotFound", "spec.image.caSecret: Secret 'corp-ca' not found"),
        (
            SecretView("Opaque", {}, {"tls.crt": "PEM"}),
            "SecretKeyMissing",
            "spec.image.caSecret: Secret 'corp-ca' has no key 'ca.crt'",
        ),
    ],
)
def test_a_missing_ca_secret_or_key_is_stalled_and_starts_no_job(
    secret: SecretView | None, reason: str, message: str
) -> None:
    snapshot = created(world(body(image=_ca_image())))
    push = replace(snapshot, pushes=(PushEvent.parse("main", COMMIT),), secrets={"corp-ca": secret})
    decision = decide(push, SETTINGS)
    assert decision.create == ()
    assert decision.status is not None
    stalled = next(c for c in decision.status["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"], stalled["message"]) == (
        "True",
        reason,
        message,
    )


@pytest.mark.parametrize("reason", ["RegistryCertificateUntrusted", "CASecretInvalid"])
def test_an_untrusted_certificate_or_bad_ca_refuses_the_preflight(reason: str) -> None:
    b = body(image=_ca_image())
    ca = {"corp-ca": SecretView("Opaque", {}, {"ca.crt": "PEM"}, version="7")}
    snapshot = created(world(b, secrets=ca))
    push = replace(snapshot, pushes=(PushEvent.parse("main", COMMIT),), registry={})
    (preflight,) = [r for r in decide(push, SETTINGS).registry if r.kind == "preflight"]
    refused = RegistryResult(NOW, False, reason, "registry.corp:5443: not trusted")
    decision = decide(replace(push, registry={preflight.id: refused}), SETTINGS)
    assert decision.create == ()
    assert decision.pushes_done == 0
    assert decision.status is not None
    stalled = next(c for c in decision.status["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", reason)
    # A new version of the CA Secret asks the registry again at once.
    renewed = {"corp-ca": replace(ca["corp-ca"], version="8")}
    again = decide(replace(push, registry={preflight.id: refused}, secrets=renewed), SETTINGS)
    (new_preflight,) = [r for r in again.registry if r.kind == "preflight"]
    assert new_preflight.id != preflight.id


def test_a_registry_that_stays_away_costs_no_status_write_per_try() -> None:
    b = body()
    first = decide(world(b, registry={}, heads=heads(b, {})), SETTINGS)
    (request,) = [r for r in first.registry if r.kind == registry_gate.SETTINGS]
    away = {"name": "acme/x", "kind": "Registry", "reason": "RegistryUnreachable"}
    refused = RegistryResult(
        NOW,
        False,
        "RegistryUnreachable",
        "connection refused",
        status={**away, "message": "connection refused"},
    )
    done, _ = settle(world(b, registry={request.id: refused}, heads=heads(b, {})))
    assert done.body["status"]["repository"]["reason"] == "RegistryUnreachable"
    later = NOW + timedelta(minutes=6)
    again = decide(replace(done, now=later, registry={}), SETTINGS)
    assert [r.id for r in again.registry] == [request.id]  # tried again after 5 minutes
    reset = RegistryResult(
        later,
        False,
        "RegistryUnreachable",
        "connection reset",
        status={**away, "message": "connection reset"},
    )
    answered = decide(replace(done, now=later, registry={request.id: reset}), SETTINGS)
    assert answered.status is None  # same reason, other words: nothing to write


def _pushing(image_repos: str | None) -> tuple[Snapshot, dict[str, Any]]:
    image = {
        "namespace": "acme",
        "name": "app",
        "visibility": "Private",
        "shortDescription": "app",
        "pushSecret": "regcred",
    }
    b = body(image=image, tags=[{"source": "main", "dockerTag": "latest"}])
    annotations = {} if image_repos is None else {"autobuild.dev/image-repos": image_repos}
    config = '{"auths": {"https://index.docker.io/v1/": {"auth": "YWNtZTpwdw=="}}}'
    data = {".dockerconfigjson": config}
    secret = SecretView("kubernetes.io/dockerconfigjson", annotations, data)
    snapshot = world(b, secrets={"regcred": secret}, heads=heads(b, {"refs/heads/main": COMMIT}))
    return snapshot, b


def test_a_push_secret_bound_to_other_images_is_never_mounted_nor_sent() -> None:
    snapshot, _ = _pushing("docker.io/acme/tools, docker.io/acme/web-*")
    decision = decide(snapshot, SETTINGS)
    assert not decision.create
    assert decision.registry == ()  # no preflight, no visibility call: nothing sends it
    assert decision.status is not None
    stalled = next(c for c in decision.status["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "CredentialsNotAllowed")
    assert "docker.io/acme/app" in stalled["message"]
    assert "autobuild.dev/image-repos" in stalled["message"]
    assert ("Warning", "CredentialsNotAllowed") in [(e.type, e.reason) for e in decision.events]


@pytest.mark.parametrize("image_repos", [None, "docker.io/acme/*", "docker.io/acme/app"])
def test_a_push_secret_that_allows_the_image_builds(image_repos: str | None) -> None:
    snapshot, _ = _pushing(image_repos)
    decision = decide(snapshot, SETTINGS)
    assert len(decision.create) == 1
    assert decision.status is not None
    assert "CredentialsNotAllowed" not in str(decision.status)


def test_a_linked_token_bound_to_other_repositories_is_never_sent() -> None:
    b = body(source={"repo": "github.com/evil/app", "credentialsSecret": "link"})
    bound = {
        "autobuild.dev/git-hosts": "github.com",
        "autobuild.dev/git-repos": "github.com/acme/*",
    }
    secret = SecretView("Opaque", bound, {"token": TOKEN})
    decision = decide(world(b, secrets={"link": secret}), SETTINGS)
    assert decision.resolve is None  # no ls-remote with the token
    assert not decision.create
    assert decision.status is not None
    stalled = next(c for c in decision.status["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "CredentialsNotAllowed")
    assert "github.com/evil/app" in stalled["message"]
    ours = body(source={"repo": "github.com/acme/app", "credentialsSecret": "link"})
    asked = decide(world(ours, secrets={"link": secret}), SETTINGS)
    assert asked.resolve is not None
    assert asked.resolve.password == TOKEN


def test_every_status_field_and_condition_has_exactly_one_owner() -> None:
    from itertools import combinations

    from autobuild.api.conditions import ConditionType
    from autobuild.api.models import AutomatedBuildStatus, BuildRecord
    from autobuild.planning.steps import PROBLEM_CHAIN, STEPS, SUMMARIZED

    owners = [(step.name, step.owns) for step in STEPS] + [("summarize", SUMMARIZED)]
    for (a, owns_a), (b, owns_b) in combinations(owners, 2):
        assert not owns_a & owns_b, f"{a} and {b} both own {sorted(owns_a & owns_b)}"
    owned = frozenset().union(*(owns for _, owns in owners))
    fields = {f.alias or name for name, f in AutomatedBuildStatus.model_fields.items()}
    conditions = {c.value for c in ConditionType}
    assert owned >= (fields - {"conditions"}) | conditions
    record_fields = {f.alias or name for name, f in BuildRecord.model_fields.items()}
    for key in owned - fields - conditions:  # builds[<phase>].<field>: refined record fields
        assert key.startswith("builds["), key
        assert key.split("].")[1] in record_fields, key
    assert set(PROBLEM_CHAIN) <= {step.name for step in STEPS}


def test_no_step_changes_an_outcome_of_another(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outcomes are plain dataclasses (frozen ones cost 20 µs a decision): each must stay as
    its step returned it while the later steps read it."""
    from autobuild.planning import steps

    returned: list[tuple[str, object, object]] = []
    add = steps.Done.add

    def keep(done: steps.Done, name: str, outcome: steps.Contribution) -> None:
        returned.append((name, outcome, copy.deepcopy(outcome)))
        add(done, name, outcome)

    monkeypatch.setattr(steps.Done, "add", keep)
    b = body(runPolicy="SerialLatestOnly", historyLimit={"succeeded": 0, "failed": 0})
    first = world(b, heads=heads(b, {"refs/heads/main": COMMIT}))
    pushed = replace(
        first,
        pushes=(PushEvent.parse("main", OTHER_COMMIT), PushEvent.parse("main", COMMIT)),
        push_count=2,
    )
    settled, _ = settle(pushed, rounds=8)
    complete = {"conditions": [{"type": "Complete", "status": "True"}]}
    finished = tuple({**job, "status": complete} for job in settled.jobs)
    settle(replace(settled, jobs=finished), rounds=8)  # digests, history, the next release
    assert len(returned) >= 4 * len(steps.STEPS)
    for name, outcome, as_returned in returned:
        assert outcome == as_returned, f"the outcome of {name} was changed after it returned"
