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


def owned(kind: str, name: str, version: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": "ci",
            "resourceVersion": str(version),
            "labels": {LABEL_UID: UID, "job-name": "j1"},
        },
        "spec": {"suspend": True, "template": {"big": "x" * 100}},
        **extra,
    }


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
