"""The store: watch-event sequences in, snapshots and enqueued keys out."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime
from typing import Any

from factories import COMMIT, document

from autobuild.controller.queue import WorkQueue, backoff
from autobuild.controller.store import Store
from autobuild.planning.hooks import FINALIZER
from autobuild.planning.job import LABEL_UID
from autobuild.planning.planner import PushEvent
from autobuild.settings import GitHubSettings

NOW = datetime(2026, 11, 29, 8, tzinfo=UTC)
KEY = ("ci", "cavityflow")
UID = "6f1c2d4e-aaaa-bbbb-cccc-1234567890ab"


def ab(version: int, **spec: Any) -> dict[str, Any]:
    doc = document(**spec)
    doc["metadata"]["resourceVersion"] = str(version)
    doc["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    return doc


def controller(kind: str, name: str, uid: str) -> dict[str, Any]:
    api = "autobuild.dev/v1alpha1" if kind == "AutomatedBuild" else "batch/v1"
    return {"apiVersion": api, "kind": kind, "name": name, "uid": uid, "controller": True}


def owned(
    kind: str, name: str, version: int = 1, namespace: str = "ci", **extra: Any
) -> dict[str, Any]:
    """A build Job (owned by the AutomatedBuild UID) or a Pod of Job j1, as the API has them."""
    owner = controller("AutomatedBuild", "cavityflow", UID)
    if kind == "Pod":
        owner = controller("Job", "j1", job_uid("j1"))
    return {
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": job_uid(name) if kind == "Job" else f"pod-{name}",
            "resourceVersion": str(version),
            "labels": {LABEL_UID: UID, "job-name": "j1"},
            "annotations": {},
            "ownerReferences": [owner],
        },
        "spec": {"suspend": True, "template": {"big": "x" * 100}},
        **extra,
    }


def job_uid(name: str) -> str:
    return f"job-{name}"


def secret(name: str, token: str, **annotations: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ci", "annotations": annotations},
        "type": "Opaque",
        "data": {"token": base64.b64encode(token.encode()).decode()},
    }


class Recorder:
    def __init__(self) -> None:
        self.keys: list[tuple[str, str]] = []

    def __call__(self, key: tuple[str, str]) -> None:
        self.keys.append(key)


def test_objects_are_slimmed_and_owned_objects_find_their_owner() -> None:
    seen = Recorder()
    store = Store(seen)
    store.replace_automated_builds([ab(5)])
    store.replace_secrets([])
    store.replace_jobs([owned("Job", "j1")])
    store.apply_pod("ADDED", owned("Pod", "p1", status={"phase": "Pending", "hostIP": "x"}))
    snapshot = store.snapshot(KEY, NOW)
    assert snapshot is not None
    assert "managedFields" not in snapshot.body["metadata"]
    assert snapshot.jobs[0]["spec"] == {"suspend": True}  # the pod template is not kept
    assert snapshot.pods[0]["status"] == {"phase": "Pending"}
    assert seen.keys.count(KEY) >= 3


def test_only_referenced_secrets_are_kept_and_their_changes_reach_the_user() -> None:
    seen = Recorder()
    store = Store(seen)
    spec = {"source": {"repo": "github.com/acme/app", "credentialsSecret": "link"}}
    store.replace_automated_builds([ab(5, **spec)])
    store.replace_secrets([secret("link", "t1"), secret("unrelated", "t2")])
    snapshot = store.snapshot(KEY, NOW)
    assert snapshot is not None
    view = snapshot.secrets["link"]
    assert view is not None
    assert view.data == {"token": "t1"}
    assert ("ci", "unrelated") not in store._secrets
    seen.keys.clear()
    store.apply_secret("DELETED", secret("link", "t1"))
    assert seen.keys == [KEY]
    again = store.snapshot(KEY, NOW)
    assert again is not None
    assert again.secrets == {"link": None}
    store.apply_secret("ADDED", secret("unrelated", "t3"))
    assert seen.keys == [KEY]


def test_a_secret_referenced_after_the_listing_is_read_explicitly() -> None:
    store = Store(Recorder())
    store.replace_automated_builds([ab(5)])
    store.replace_secrets([secret("later", "t")])
    store.apply_automated_build(
        "MODIFIED", ab(6, source={"repo": "github.com/acme/app", "credentialsSecret": "later"})
    )
    assert store.unknown_secrets(KEY) == ["later"]
    store.put_secret("ci", "later", secret("later", "t"))
    assert store.unknown_secrets(KEY) == []


def test_own_status_write_is_not_looked_at_again_and_stale_events_are_ignored() -> None:
    seen = Recorder()
    store = Store(seen)
    store.replace_automated_builds([ab(5)])
    written = ab(7)
    written["status"] = {"observedGeneration": 1}
    store.written(written)
    seen.keys.clear()
    store.apply_automated_build("MODIFIED", ab(6))  # older than our write: ignored
    store.apply_automated_build("MODIFIED", written)  # the event of our own write
    assert seen.keys == []
    snapshot = store.snapshot(KEY, NOW)
    assert snapshot is not None
    assert snapshot.body["status"] == {"observedGeneration": 1}
    store.apply_automated_build("MODIFIED", ab(8))
    assert seen.keys == [KEY]


def test_deleting_an_object_frees_everything_kept_for_it() -> None:
    forgotten: list[tuple[str, str]] = []
    store = Store(Recorder())
    store.deleted = forgotten.append
    spec = {"source": {"repo": "github.com/acme/app", "credentialsSecret": "link"}}
    store.replace_automated_builds([ab(5, **spec)])
    store.replace_secrets([secret("link", "t1")])
    assert store.add_pushes(KEY, [PushEvent.parse("main", COMMIT)])
    store.apply_automated_build("DELETED", ab(9, **spec))
    assert store.snapshot(KEY, NOW) is None
    assert forgotten == [KEY]
    assert not store._secrets
    assert not store._secret_users
    assert not store._uses
    assert not store._pushes
    assert not store._keys_by_uid
    assert not store.add_pushes(KEY, [PushEvent.parse("main", COMMIT)])


def test_a_relist_drops_what_disappeared_while_the_watch_was_down() -> None:
    seen = Recorder()
    store = Store(seen)
    store.replace_automated_builds([ab(5)])
    store.replace_jobs([owned("Job", "j1"), owned("Job", "j2")])
    seen.keys.clear()
    store.replace_jobs([owned("Job", "j1")])
    snapshot = store.snapshot(KEY, NOW)
    assert snapshot is not None
    assert [j["metadata"]["name"] for j in snapshot.jobs] == ["j1"]
    assert seen.keys == [KEY]
    store.replace_automated_builds([])
    assert store.snapshot(KEY, NOW) is None


# Ownership: Jobs and Pods by (namespace, uid), through the controller ownerReference chain ---
class Skips:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, resource: str, reason: str) -> None:
        self.seen.append((resource, reason))


def succeeded_job(name: str, namespace: str = "ci", **labels: str) -> dict[str, Any]:
    """A finished build Job, as a forger would write it (status and all)."""
    job = owned("Job", name, namespace=namespace)
    job["metadata"]["labels"].update(labels)
    job["metadata"]["annotations"] = {
        "autobuild.dev/source-ref": "refs/heads/main",
        "autobuild.dev/commit": COMMIT,
        "autobuild.dev/tags": "latest",
    }
    job["status"] = {
        "startTime": "2026-11-29T07:00:00Z",
        "completionTime": "2026-11-29T07:01:00Z",
        "conditions": [{"type": "Complete", "status": "True"}],
    }
    return job


def test_a_job_and_pod_of_another_namespace_carrying_the_uid_label_are_not_the_objects() -> None:
    """The attack: in a namespace of their own, someone writes the uid of another team's
    AutomatedBuild on a Job (and its Pod, with a digest); nothing of it reaches that object."""
    seen = Recorder()
    skips = Skips()
    store = Store(seen)
    store.skipped = skips
    store.replace_automated_builds([ab(5)])
    store.replace_jobs([])
    store.replace_pods([])
    seen.keys.clear()
    # With a controller reference naming the uid (ownerReferences are namespace-local) ...
    forged = succeeded_job("j1", namespace="attacker")
    store.apply_job("ADDED", forged)
    # ... and with the label alone.
    bare = succeeded_job("j2", namespace="attacker")
    bare["metadata"]["ownerReferences"] = []
    store.apply_job("ADDED", bare)
    pod = owned("Pod", "p1", namespace="attacker", status={"phase": "Succeeded"})
    store.apply_pod("ADDED", pod)
    store.replace_jobs([forged, bare])
    snapshot = store.snapshot(KEY, NOW)
    assert snapshot is not None
    assert snapshot.jobs == ()
    assert snapshot.pods == ()
    assert seen.keys == []  # forged objects do not even cost the object a reconcile
    assert not store.holds_job(KEY, "j1", job_uid("j1"))
    assert skips.seen == [("jobs", "unowned"), ("jobs", "unowned")]


def test_jobs_and_pods_need_the_controller_reference_chain_and_are_counted_when_skipped() -> None:
    skips = Skips()
    store = Store(Recorder())
    store.skipped = skips
    store.replace_automated_builds([ab(5)])
    label_only = owned("Job", "label-only")
    label_only["metadata"]["ownerReferences"] = []
    not_controller = owned("Job", "not-controller")
    not_controller["metadata"]["ownerReferences"][0]["controller"] = False
    other_uid = owned("Job", "other-uid")
    other_uid["metadata"]["ownerReferences"][0]["uid"] = "someone-else"
    other_kind = owned("Job", "other-kind")
    other_kind["metadata"]["ownerReferences"][0].update(apiVersion="apps/v1", kind="ReplicaSet")
    store.replace_jobs([label_only, not_controller, other_uid, other_kind, owned("Job", "j1")])
    # A Pod controlled by something else, one naming a Job it is not controlled by, one of
    # a Job that is not held, and the real one.
    stray = owned("Pod", "stray")
    stray["metadata"]["ownerReferences"] = []
    misnamed = owned("Pod", "misnamed")
    misnamed["metadata"]["labels"]["job-name"] = "other"
    orphan = owned("Pod", "orphan")
    orphan["metadata"]["ownerReferences"][0].update(name="j9", uid=job_uid("j9"))
    orphan["metadata"]["labels"]["job-name"] = "j9"
    store.replace_pods([stray, misnamed, orphan, owned("Pod", "p1")])
    snapshot = store.snapshot(KEY, NOW)
    assert snapshot is not None
    assert [j["metadata"]["name"] for j in snapshot.jobs] == ["j1"]
    assert [p["metadata"]["name"] for p in snapshot.pods] == ["p1"]
    assert store.holds_job(KEY, "j1", job_uid("j1"))
    assert not store.holds_job(KEY, "j1", "another-uid")  # a new Job under the old name
    assert not store.holds_job(KEY, "label-only", job_uid("label-only"))
    assert skips.seen == [("jobs", "unowned")] * 4 + [("pods", "unowned"), ("pods", "malformed")]


def test_a_malformed_label_is_skipped_and_counted_and_the_object_still_reconciles() -> None:
    """Today a rule label 'x' raised in decide() on every reconcile, forever."""
    from autobuild.planning.decide import decide
    from autobuild.settings import BuildSettings

    skips = Skips()
    store = Store(Recorder())
    store.skipped = skips
    store.replace_automated_builds([ab(5)])
    store.replace_secrets([])
    rule = succeeded_job("rule", **{"autobuild.dev/rule": "x"})
    trigger = succeeded_job("trigger", **{"autobuild.dev/trigger": "Bogus"})
    cancelled = succeeded_job("cancelled")
    cancelled["metadata"]["annotations"]["autobuild.dev/cancelled"] = "not a time"
    negative = succeeded_job("negative", **{"autobuild.dev/rule": "-1"})
    store.replace_jobs([rule, trigger])
    store.apply_job("ADDED", cancelled)
    store.apply_job("MODIFIED", negative)
    store.apply_job("ADDED", succeeded_job("good"))
    snapshot = store.snapshot(KEY, NOW)
    assert snapshot is not None
    decide(snapshot, BuildSettings(), GitHubSettings())  # raised ValueError before, forever
    assert [j["metadata"]["name"] for j in snapshot.jobs] == ["good"]
    assert skips.seen == [("jobs", "malformed")] * 4


def test_a_job_that_loses_its_owner_reference_is_dropped_and_its_pods_follow_the_job() -> None:
    seen = Recorder()
    store = Store(seen)
    store.replace_automated_builds([ab(5)])
    # The Pod's event comes first: it shows once its Job is held.
    store.apply_pod("ADDED", owned("Pod", "p1"))
    assert store.snapshot(KEY, NOW).pods == ()  # type: ignore[union-attr]
    seen.keys.clear()
    store.apply_job("ADDED", owned("Job", "j1"))
    assert seen.keys == [KEY]
    assert [p["metadata"]["name"] for p in store.snapshot(KEY, NOW).pods] == ["p1"]  # type: ignore[union-attr]
    patched = owned("Job", "j1", version=2)
    patched["metadata"]["ownerReferences"] = []
    store.apply_job("MODIFIED", patched)
    snapshot = store.snapshot(KEY, NOW)
    assert snapshot is not None
    assert (snapshot.jobs, snapshot.pods) == ((), ())
    assert not store.holds_job(KEY, "j1", job_uid("j1"))


# Secrets: metadata watched, values read -----------------------------------------------------
def metadata(name: str, version: int) -> dict[str, Any]:
    """A Secret as a metadata-only watch sends it: no type, no data."""
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"name": name, "namespace": "ci", "resourceVersion": str(version)},
    }


def versioned(name: str, token: str, version: int) -> dict[str, Any]:
    found = secret(name, token)
    found["metadata"]["resourceVersion"] = str(version)
    return found


def test_secret_metadata_makes_the_users_read_the_values_and_each_change_reads_again() -> None:
    seen = Recorder()
    store = Store(seen)
    spec = {"source": {"repo": "github.com/acme/app", "credentialsSecret": "link"}}
    second = ab(5, **spec)
    second["metadata"].update(name="second", uid="second-uid")
    store.replace_automated_builds([ab(5, **spec), second])
    seen.keys.clear()
    store.replace_secrets([metadata("link", 10), metadata("unrelated", 11)])
    assert store.unknown_secrets(KEY) == ["link"]  # listed: it exists, its values are read
    assert sorted(seen.keys) == [("ci", "cavityflow"), ("ci", "second")]
    assert ("ci", "unrelated") not in store._secrets
    seen.keys.clear()
    store.put_secret("ci", "link", versioned("link", "t1", 10), reader=KEY)
    assert store.unknown_secrets(KEY) == []
    assert seen.keys == [("ci", "second")]  # the other user looks again; the reader goes on
    view = store.snapshot(KEY, NOW).secrets["link"]  # type: ignore[union-attr]
    assert view is not None
    assert view.data == {"token": "t1"}
    # The event of the version read already: nothing to do.
    seen.keys.clear()
    store.apply_secret("MODIFIED", metadata("link", 10))
    assert (seen.keys, store.unknown_secrets(KEY)) == ([], [])
    # A change: both users look again, and the values are read again.
    store.apply_secret("MODIFIED", metadata("link", 12))
    assert sorted(seen.keys) == [("ci", "cavityflow"), ("ci", "second")]
    assert store.unknown_secrets(KEY) == ["link"]
    store.put_secret("ci", "link", versioned("link", "t1", 11))  # an answer older than the news
    assert store.unknown_secrets(KEY) == ["link"]
    store.put_secret("ci", "link", versioned("link", "t2", 12))
    assert store.unknown_secrets(KEY) == []
    assert store.snapshot(KEY, NOW).secrets["link"].data == {"token": "t2"}  # type: ignore[union-attr]
    store.apply_secret("DELETED", metadata("link", 13))
    assert store.snapshot(KEY, NOW).secrets == {"link": None}  # type: ignore[union-attr]
    assert store.unknown_secrets(KEY) == []
    # Referenced but not listed: missing, nothing to read.
    store.replace_secrets([])
    assert store.unknown_secrets(KEY) == []
    assert store.references_secret(metadata("link", 1))
    assert not store.references_secret(metadata("unrelated", 1))


def test_queue_merges_keys_runs_one_worker_per_key_and_retries_failures() -> None:
    calls: list[str] = []
    running: set[str] = set()

    async def process(key: str) -> float | None:
        assert key not in running  # never two workers on one key
        running.add(key)
        calls.append(key)
        await asyncio.sleep(0.01)
        running.discard(key)
        if key == "flaky" and calls.count("flaky") == 1:
            raise RuntimeError("API said 500")
        return None

    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue(process, workers=4)
        worker = asyncio.create_task(queue.run())
        for _ in range(5):
            queue.add("a")  # merged while queued
        queue.add("flaky")
        await asyncio.sleep(0.005)
        queue.add("a")  # while processing: once more afterwards
        for _ in range(200):
            await asyncio.sleep(0.01)
            if calls.count("flaky") == 2 and queue.idle():
                break
        worker.cancel()

    asyncio.run(scenario())
    assert calls.count("a") == 2
    assert calls.count("flaky") == 2  # retried after the failure, with no new add
    assert backoff(1) == 0.5
    assert backoff(20) == 60.0


def test_an_object_being_deleted_keeps_the_token_that_removes_its_webhook() -> None:
    store = Store(Recorder(), GitHubSettings(public_url="https://autobuild.example.com"))
    linked = ab(1, source={"repo": "github.com/acme/app", "credentialsSecret": "link"})
    store.replace_automated_builds([linked])
    store.replace_secrets([secret("link", "ghp_t", **{"autobuild.dev/git-hosts": "github.com"})])
    # The generated webhook secret is watched too (the receiver verifies with it).
    assert store.snapshot(KEY, NOW).secrets.keys() == {"link", "cavityflow-github-hook"}  # type: ignore[union-attr]
    store.apply_secret("DELETED", secret("link", "ghp_t"))
    assert store.snapshot(KEY, NOW).secrets["link"] is None  # type: ignore[union-attr]
    deleting = ab(2, source={"repo": "github.com/acme/app", "credentialsSecret": "link"})
    deleting["metadata"].update(deletionTimestamp="2026-11-29T08:00:00Z", finalizers=[FINALIZER])
    store.apply_automated_build("MODIFIED", deleting)
    kept = store.snapshot(KEY, NOW).secrets["link"]  # type: ignore[union-attr]
    assert kept is not None
    assert kept.data["token"] == "ghp_t"
    # Without the finalizer there is nothing to remove: nothing is kept for it.
    deleting["metadata"]["finalizers"] = []
    deleting["metadata"]["resourceVersion"] = "3"
    store.apply_automated_build("MODIFIED", deleting)
    assert store.snapshot(KEY, NOW).secrets["link"] is None  # type: ignore[union-attr]


def test_the_receiver_never_verifies_with_a_hook_secret_the_operator_did_not_create() -> None:
    store = Store(Recorder(), GitHubSettings(public_url="https://autobuild.example.com"))
    linked = ab(1, source={"repo": "github.com/acme/app", "credentialsSecret": "link"})
    store.replace_automated_builds([linked])
    planted = {
        "metadata": {"name": "cavityflow-github-hook", "namespace": "ci"},
        "type": "Opaque",
        "data": {"secret": base64.b64encode(b"the-planters-secret").decode()},
    }
    link = secret("link", "ghp_t", **{"autobuild.dev/git-hosts": "github.com"})
    store.replace_secrets([link, planted])
    (target,) = store.targets("github.com/acme/app")
    assert target.secret is None  # deliveries signed with the planted value are not verified
    # Another AutomatedBuild's ownership (or a non-controller reference) is not ownership.
    for reference in ({"uid": "other-uid", "controller": True}, {"uid": UID}):
        ref = {"apiVersion": "autobuild.dev/v1alpha1", "kind": "AutomatedBuild", **reference}
        planted["metadata"]["ownerReferences"] = [{"name": "cavityflow", **ref}]
        store.apply_secret("MODIFIED", planted)
        (target,) = store.targets("github.com/acme/app")
        assert target.secret is None
    # The operator's own Secret: owned by this AutomatedBuild as its controller.
    ours = {"uid": UID, "controller": True, "name": "cavityflow"}
    ref = {"apiVersion": "autobuild.dev/v1alpha1", "kind": "AutomatedBuild", **ours}
    planted["metadata"]["ownerReferences"] = [ref]
    store.apply_secret("MODIFIED", planted)
    (target,) = store.targets("github.com/acme/app")
    assert target.secret == b"the-planters-secret"
