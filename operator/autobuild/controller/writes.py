"""The act step: a decision's Kubernetes writes, in one declared order (:data:`ORDER`, which
:meth:`Writes.act` follows step by step):

1. create the new build Jobs (none while the repository URL redirects: an Event says so);
2. release and cancel patches of Jobs, conditional on the version decided on;
3. delete Jobs (the history limit);
4. take the pushes whose builds exist now, and post their Events;
5. forget the GitHub answers that no longer hold;
6. create the generated hook Secret;
7. set the finalizers, conditional on the version decided on; the Events go with it;
8. start the effects beside the queue (:mod:`autobuild.controller.executors`);
9. write status, conditional on the version decided on (or the finalizers' write); the Events go
   with it unless they went with the finalizers.

Jobs come first (a build that exists is never lost to a later failure); status last, so that it
records what was done. Only Jobs the ownership chain files under the object are ever patched or
deleted for it. A write that lost a race ends the pass: the object is looked at again soon.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from autobuild import API_GROUP, API_VERSION, KIND, PLURAL
from autobuild.api.conditions import Reason
from autobuild.controller.answers import Key
from autobuild.controller.kubeapi import AB_GROUP, ApiError, KubeApi, segment
from autobuild.controller.store import Store
from autobuild.metrics import Metrics
from autobuild.planning import hooks
from autobuild.planning import status as tracking
from autobuild.planning.effects import RefusedWrite
from autobuild.planning.github import hook_secret_manifest
from autobuild.planning.snapshot import Decision, EventNote, JobWrite

log = logging.getLogger("autobuild.reconcile")

# After a conditional write lost a race, look again this soon (the watch brings the news).
CONFLICT_RETRY: Final = 0.5
_MERGE_PATCH: Final = "application/merge-patch+json"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Pass:
    """One act on one decision: what its steps share."""

    key: Key
    # The object as last written: the version the next conditional write is conditional on.
    body: Mapping[str, Any]
    decision: Decision
    # Why no build may start now (the repository URL redirects), None: they may.
    redirect: str | None
    # The object's Job collection.
    jobs: str
    # The decision's Events, until the write they go with lands.
    events: tuple[EventNote, ...]
    # Job patches that lost a race.
    conflicts: int = 0
    # What act returns: seconds until the object wants another look.
    requeue_after: float | None = None


class Writes:
    """The Kubernetes writes of decisions (and the Events about AutomatedBuilds)."""

    def __init__(
        self,
        api: KubeApi,
        store: Store,
        metrics: Metrics,
        start_effects: Callable[[Key, Decision], None],
    ) -> None:
        """``start_effects`` starts what a decision asks of GitHub, registries and git."""
        self._api = api
        self._store = store
        self._metrics = metrics
        self._start_effects = start_effects
        self._instance = socket.gethostname()

    async def act(
        self,
        key: Key,
        body: Mapping[str, Any],
        decision: Decision,
        redirect: str | None = None,
    ) -> float | None:
        """Perform a decision's writes in :data:`ORDER`; seconds until the object wants another
        look. ``redirect``: why no build may start now (None: they may)."""
        jobs = f"/apis/batch/v1/namespaces/{segment(key[0])}/jobs"
        step = _Pass(key, body, decision, redirect, jobs, decision.events)
        step.requeue_after = decision.requeue_after
        for write in ORDER:
            if not await write(self, step):
                break
        return step.requeue_after

    # The steps, each True to go on --------------------------------------------------------------
    async def _create_jobs(self, step: _Pass) -> bool:
        for manifest in step.decision.create:
            if step.redirect is not None:
                why = f"build {manifest['metadata']['name']} not started: {step.redirect}"
                note = EventNote("Warning", Reason.SOURCE_UNREACHABLE, why)
                await self.post_event(step.body, note)
                continue
            try:
                created = await self._api.request("POST", step.jobs, body=manifest)
                self._store.apply_job("ADDED", created)
            except ApiError as exc:
                if exc.status != 409:  # 409: the build exists already (same identity)
                    raise
        return True

    async def _patch_jobs(self, step: _Pass) -> bool:
        for write in self._held(step.key, step.decision.release):
            step.conflicts += await self._patch_job(step.jobs, write, {"spec": {"suspend": False}})
        for write in self._held(step.key, step.decision.cancel):
            patch = tracking.cancel_patch(_now())
            step.conflicts += await self._patch_job(step.jobs, write, patch)
        return True

    async def _delete_jobs(self, step: _Pass) -> bool:
        for write in self._held(step.key, step.decision.delete):
            await self._delete_job(step.jobs, write)
        return True

    async def _take_pushes(self, step: _Pass) -> bool:
        self._store.take_pushes(step.key, step.decision.pushes_done)
        for note in step.decision.push_events:  # the pushes are taken: said once, status or not
            await self.post_event(step.body, note)
        return True

    async def _forget_answers(self, step: _Pass) -> bool:
        self._store.answers.forget_github(step.key, step.decision.github_forget)
        return True

    async def _hook_secret(self, step: _Pass) -> bool:
        if step.decision.hook_secret is not None:
            await self._create_hook_secret(step.key, step.body)
        return True

    async def _finalizers(self, step: _Pass) -> bool:
        # The Events go with the first write that lands: the finalizer (after which a deleted
        # object is gone), else the status.
        if step.decision.finalizers is None:
            return True
        written = await self._write_finalizers(step.key, step.body, step.decision.finalizers)
        if written is None:
            step.requeue_after = CONFLICT_RETRY
            return False
        step.body = written  # the status write is conditional on this version
        for note in step.events:
            await self.post_event(step.body, note)
        step.events = ()
        return True

    async def _effects(self, step: _Pass) -> bool:
        self._start_effects(step.key, step.decision)
        return True

    async def _status(self, step: _Pass) -> bool:
        status = step.decision.status
        if step.conflicts:
            step.requeue_after = CONFLICT_RETRY
        elif status is not None:
            if not await self._write_status(step.key, step.body, status):
                step.requeue_after = CONFLICT_RETRY
                return False
            self._metrics.record_status(step.body.get("status"), status)
            for note in step.events:
                await self.post_event(step.body, note)
        return True

    # The writes ---------------------------------------------------------------------------------
    def _held(self, key: Key, writes: Sequence[JobWrite]) -> list[JobWrite]:
        """The writes to Jobs this AutomatedBuild owns (the ownership chain the store checks):
        whatever a decision says, no other Job is ever patched or deleted for it."""
        held = [w for w in writes if self._store.holds_job(key, w.name, w.uid)]
        for write in writes:
            if write not in held:
                log.warning("%s/%s: not touching Job %s: not its own", *key, write.name)
        return held

    async def _create_hook_secret(self, key: Key, body: Mapping[str, Any]) -> None:
        """Create the Secret that keeps a generated webhook secret (owned by the object)."""
        from autobuild.sources.github import new_hook_secret

        meta = body["metadata"]
        manifest = hook_secret_manifest(key[0], key[1], str(meta.get("uid", "")), new_hook_secret())
        try:
            created = await self._api.request(
                "POST", f"/api/v1/namespaces/{segment(key[0])}/secrets", body=manifest
            )
        except ApiError as exc:
            if exc.status == 403:
                self._refused(key, hooks.WRITE_SECRET, f"cannot create Secret: {exc}")
            elif exc.status != 409:  # 409: it exists; its watch event brings it
                raise
            return
        self._store.apply_secret("ADDED", created)

    async def _write_finalizers(
        self, key: Key, body: Mapping[str, Any], finalizers: Sequence[str]
    ) -> Mapping[str, Any] | None:
        """Set metadata.finalizers, conditional on the version decided on (a merge patch
        replaces the whole list: another controller's finalizer must not be lost). Returns
        the object as written, None when it changed or went away in between."""
        meta = {
            "resourceVersion": body["metadata"].get("resourceVersion"),
            "finalizers": finalizers,
        }
        path = f"{AB_GROUP}/namespaces/{segment(key[0])}/{PLURAL}/{segment(key[1])}"
        try:
            answer = await self._api.request(
                "PATCH", path, body={"metadata": meta}, content_type=_MERGE_PATCH
            )
        except ApiError as exc:
            if exc.status == 403:
                self._refused(key, hooks.WRITE_FINALIZERS, f"cannot set the finalizer: {exc}")
                return body  # the rest of the reconcile goes on
            if exc.status in (404, 409):
                return None
            raise
        self._store.apply_automated_build("MODIFIED", answer)
        return answer

    def _refused(self, key: Key, write: str, message: str) -> None:
        """A write of the webhook path that RBAC refused: WebhookReady says so (not a crash
        of the whole reconcile), and it is tried again later."""
        hint = (
            "; the operator needs create on Secrets and patch on AutomatedBuilds to register "
            "webhooks (chart: webhook.publicUrl; kustomize: components/github-hooks)"
        )
        log.warning("%s/%s: %s", key[0], key[1], message)
        refusal = RefusedWrite(_now(), message[:300] + hint, write=write)
        self._store.answers.set_github(key, refusal.id, refusal)

    async def _patch_job(self, jobs: str, write: JobWrite, patch: Mapping[str, Any]) -> int:
        """A conditional merge patch (the version decide saw): a release can never undo a
        cancel made in between. Returns 1 when it lost that race."""
        meta = {**patch.get("metadata", {}), "resourceVersion": write.resource_version}
        try:
            answer = await self._api.request(
                "PATCH",
                f"{jobs}/{segment(write.name)}",
                body={**patch, "metadata": meta},
                content_type=_MERGE_PATCH,
            )
        except ApiError as exc:
            if exc.status == 409:
                return 1
            if exc.status == 404:
                return 0
            raise
        self._store.apply_job("MODIFIED", answer)
        return 0

    async def _delete_job(self, jobs: str, write: JobWrite) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": "Background",
            "preconditions": {"uid": write.uid},
        }
        try:
            await self._api.request("DELETE", f"{jobs}/{segment(write.name)}", body=body)
        except ApiError as exc:
            if exc.status not in (404, 409):
                raise

    async def _write_status(
        self, key: Key, body: Mapping[str, Any], status: Mapping[str, Any]
    ) -> bool:
        """Patch status if the object is still the version decided on; False on a conflict."""
        version = body["metadata"].get("resourceVersion")
        path = f"{AB_GROUP}/namespaces/{segment(key[0])}/{PLURAL}/{segment(key[1])}/status"
        try:
            answer = await self._api.request(
                "PATCH",
                path,
                body={"metadata": {"resourceVersion": version}, "status": status},
                content_type=_MERGE_PATCH,
            )
        except ApiError as exc:
            if exc.status in (404, 409):
                return False
            raise
        self._store.written(answer)
        return True

    async def post_event(self, body: Mapping[str, Any], note: EventNote) -> None:
        """Post an Event about the AutomatedBuild; a failure is logged, never fatal."""
        meta = body["metadata"]
        moment = _now().strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": f"{API_GROUP}/{API_VERSION}",
                "kind": KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid", ""),
            },
            "type": note.type,
            "reason": note.reason,
            "message": note.message[:1024],
            "source": {"component": "autobuild"},
            "reportingComponent": "autobuild.dev/operator",
            "reportingInstance": self._instance,
            "firstTimestamp": moment,
            "lastTimestamp": moment,
            "count": 1,
        }
        log.info(
            "%s/%s %s %s: %s", meta["namespace"], meta["name"], note.type, note.reason, note.message
        )
        try:
            await self._api.request(
                "POST", f"/api/v1/namespaces/{segment(meta['namespace'])}/events", body=event
            )
        except (ApiError, OSError, TimeoutError) as exc:
            log.warning("could not post Event %s: %s", note.reason, exc)


# The order of the writes (the module's docstring says why).
ORDER: Final = (
    Writes._create_jobs,
    Writes._patch_jobs,
    Writes._delete_jobs,
    Writes._take_pushes,
    Writes._forget_answers,
    Writes._hook_secret,
    Writes._finalizers,
    Writes._effects,
    Writes._status,
)

__all__ = ["CONFLICT_RETRY", "ORDER", "Writes"]
