"""One reconcile per AutomatedBuild: observe (a snapshot from the store) -> decide (pure) ->
act (the writes, nothing else). Every entry point — a watch event of the object, its Jobs, Pods
or Secrets, a push, a retry — enqueues the object's key, so there is one place that writes.

:class:`Controller` wires the parts (informers, store, queue, webhook server, poller) and holds
the entry points and the reconcile; the writes are :mod:`autobuild.controller.writes`, in their
declared order, and the effects that are not writes :mod:`autobuild.controller.executors`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final

from autobuild import PLURAL
from autobuild.api.checks import DNS1123_SUBDOMAIN
from autobuild.api.conditions import Reason
from autobuild.controller.answers import Key
from autobuild.controller.executors import Executors
from autobuild.controller.kubeapi import AB_GROUP, ApiError, KubeApi, segment
from autobuild.controller.leader import ElectionConfig, Elector, KubeLeases
from autobuild.controller.queue import WorkQueue
from autobuild.controller.store import Informer, Store, start_in_order
from autobuild.controller.writes import Writes
from autobuild.metrics import Metrics, StateSources
from autobuild.planning.decide import decide
from autobuild.planning.job import LABEL_UID, clone_url
from autobuild.planning.planner import PushEvent, buildable_ref, plan_builds
from autobuild.planning.snapshot import Decision, EventNote
from autobuild.planning.steps.access import git_access
from autobuild.settings import BuildSettings, GitHubSettings
from autobuild.sources.git import SourceRedirected, SourceUnreachable, ls_remote
from autobuild.webhooks.poller import PollTarget, run_poller
from autobuild.webhooks.receiver import WebhookServer, create_app, start_server
from autobuild.webhooks.trigger import TriggerURLRequest, trigger_events

log = logging.getLogger("autobuild.reconcile")

# git ls-remote processes at once (each is a process and a connection to a git host).
_GIT_CONCURRENCY: Final = 16
# Seconds the check that a build's repository URL does not redirect may take.
_REDIRECT_CHECK_TIMEOUT: Final = 10.0
# Secrets per metadata LIST page: a page is what is held at once, and annotations alone may
# reach 256 KiB an object (kubectl's last-applied-configuration copies the data there).
_SECRET_PAGE: Final = 100
# Secret GETs at once when the operator starts (each a small request to the API server).
_SECRET_READS: Final = 16
_OBJECT_NAME: Final = re.compile(DNS1123_SUBDOMAIN)
# Distinct trigger-URL requests that wait per object while its heads are read: they share the
# next ls-remote; more are dropped (logged). Identical ones merge whatever their number.
_MAX_WAITING_TRIGGERS: Final = 32


def _now() -> datetime:
    return datetime.now(UTC)


def _paths(namespaces: Sequence[str], group_path: str, plural: str) -> list[str]:
    if not namespaces:
        return [f"{group_path}/{plural}"]
    return [f"{group_path}/namespaces/{segment(ns)}/{plural}" for ns in namespaces]


class Controller:
    """The operator's state and loop: informers -> store -> queue -> observe/decide/act."""

    def __init__(
        self,
        api: KubeApi,
        settings: BuildSettings,
        namespaces: Sequence[str] = (),
        workers: int = 8,
        webhook_address: str | None = None,
        metrics: Metrics | None = None,
        github: GitHubSettings | None = None,
        election: ElectionConfig | None = None,
    ) -> None:
        """``election``: take part in leader election (None: this replica always leads)."""
        self.api = api
        self.github_settings = github or GitHubSettings()
        self.metrics = metrics if metrics is not None else Metrics()
        self.webhook_address = webhook_address
        self.webhooks: WebhookServer | None = None
        self.settings = settings
        self.queue: WorkQueue[Key] = WorkQueue(self.metrics.instrument(self.process), workers)
        self.store = Store(self.queue.add, self.github_settings)
        self.store.deleted = self.queue.forget
        self.store.skipped = self.metrics.record_skipped
        self.elector: Elector | None = None
        if election is not None:
            leases = KubeLeases(api, election.namespace, election.name)
            self.elector = Elector(leases, election, self.metrics)
            api.fence = self.elector
        # Secret reads in flight: the users of one Secret wait for one GET.
        self._secret_reads: dict[Key, asyncio.Lock] = {}
        self.synced = asyncio.Event()
        # Trigger-URL requests per object waiting for the ls-remote after the one running.
        self._triggers: dict[Key, dict[TriggerURLRequest, None]] = {}
        self._git = asyncio.Semaphore(_GIT_CONCURRENCY)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.executors = Executors(
            api, self.store, settings, self.github_settings, self.metrics, self._spawn, self._git
        )
        self.writes = Writes(api, self.store, self.metrics, self.executors.start)
        owned = {"labelSelector": LABEL_UID}
        store = self.store
        self._informers = [
            [
                Informer(
                    api,
                    "automatedbuilds",
                    _paths(namespaces, AB_GROUP, PLURAL),
                    store.replace_automated_builds,
                    store.apply_automated_build,
                )
            ],
            [
                # Metadata only, the referenced ones kept page by page; their values are read
                # one by one (a cluster's Secrets never sit in memory, nor cross the wire).
                Informer(
                    api,
                    "secrets",
                    _paths(namespaces, "/api/v1", "secrets"),
                    store.replace_secrets,
                    store.apply_secret,
                    metadata_only=True,
                    keep=store.references_secret,
                    page_size=_SECRET_PAGE,
                )
            ],
            [
                Informer(
                    api,
                    "jobs",
                    _paths(namespaces, "/apis/batch/v1", "jobs"),
                    store.replace_jobs,
                    store.apply_job,
                    owned,
                ),
                Informer(
                    api,
                    "pods",
                    _paths(namespaces, "/api/v1", "pods"),
                    store.replace_pods,
                    store.apply_pod,
                    owned,
                ),
            ],
        ]
        self.metrics.watch(
            StateSources(
                automated_builds=lambda: store.automated_builds.values(),
                queue_depth=lambda: self.queue.depth,
                informers=lambda: [
                    (informer.name, informer.healthy)
                    for group in self._informers
                    for informer in group
                ],
            )
        )

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    async def run(self) -> None:
        """List and watch, serve the webhooks, then lead (reconcile and poll) until cancelled;
        with leader election only while this replica holds the Lease. Every replica keeps its
        store synced and serves the webhooks, /metrics and the probes (a follower is Ready)."""
        try:
            await start_in_order(self._informers, self._spawn)
            log.info("watching %d AutomatedBuilds", len(self.store.keys()))
            await self._read_referenced_secrets()
            if self.webhook_address is not None:
                # Only now: before the store is complete a delivery could miss its object.
                app = create_app(
                    self.store, self.submit_push, self.submit_trigger, metrics=self.metrics
                )
                self.webhooks = await start_server(app, self.webhook_address)
                log.info("webhooks on %s:%d", self.webhooks.host, self.webhooks.port)
            self.synced.set()
            if self.elector is None:
                self.metrics.record_leader(True)
                await self._lead()
            else:
                await self.elector.run(self._lead, self._follow)
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self.webhooks is not None:
                await self.webhooks.stop()
            await self.executors.close()

    async def _lead(self) -> None:
        """What only the leader does: reconcile and poll. Every object gets a look first: what
        changed while this replica followed waits in the queue, and a reconcile that a lost
        Lease cut short is not lost."""
        for key in list(self.store.automated_builds):
            self.queue.add(key)
        poller = asyncio.ensure_future(
            run_poller(
                self.store.poll_targets,
                self._poll,
                self.submit_push,
                concurrency=self.settings.poll_concurrency,
            )
        )
        poller.add_done_callback(self._done)  # a failure of it is logged, not the controller's
        try:
            await self.queue.run()
        finally:
            poller.cancel()
            await asyncio.gather(poller, return_exceptions=True)

    async def _follow(self) -> None:
        """What a follower does besides its informers: the queue's workers only read the values
        of referenced Secrets as they appear or change (the receiver verifies deliveries with
        them), and reconcile nothing. The keys they take are all queued again on takeover."""
        await self.queue.run(self._refresh)

    async def _refresh(self, key: Key) -> None:
        await self._read_unknown_secrets(key)

    def ready(self) -> bool:
        """Listed everything once, and every list and watch works now (an API server that
        refuses a watch, e.g. RBAC, makes the operator not ready instead of silently blind)."""
        informers = [informer for group in self._informers for informer in group]
        return self.synced.is_set() and all(informer.healthy for informer in informers)

    def submit_push(self, namespace: str, name: str, events: Sequence[PushEvent]) -> bool:
        """The entry point for pushes (webhooks, polling): queue them for the AutomatedBuild;
        the reconcile plans and creates their builds. False when it is unknown. Pushes that
        no rule builds (most feature branches) cost no reconcile.

        Every replica receives deliveries, and each keeps the pushes it received in its own
        memory: a follower does not build them (its workers do not run), and builds them only
        should it become the leader. A push a follower received is therefore not built while
        another replica leads, and is lost if the follower stops: intake is not yet shared
        between replicas (docs/operations.md, High availability)."""
        automated_build = self.store.parsed((namespace, name))
        if automated_build is not None and not any(
            plan_builds(automated_build.spec, event).builds for event in events
        ):
            return True
        return self.store.add_pushes((namespace, name), events)

    def submit_trigger(self, namespace: str, name: str, request: TriggerURLRequest) -> None:
        """Docker Hub's trigger URL: resolve the heads it asks for (off the receiver), then
        build them as pushes (trigger ``TriggerURL``). Calls for one object share the work:
        while its heads are read, the requests that arrive wait for one follow-up read, so
        any number of calls costs at most two ls-remotes in a row, one at a time."""
        key = (namespace, name)
        waiting = self._triggers.get(key)
        if waiting is None:
            self._triggers[key] = {}
            self._spawn(self._trigger_urls(key, (request,)))
        elif request in waiting or len(waiting) < _MAX_WAITING_TRIGGERS:
            waiting[request] = None
        else:
            log.warning("%s/%s: trigger URL: too many different requests waiting, dropped", *key)

    async def _trigger_urls(self, key: Key, requests: Sequence[TriggerURLRequest]) -> None:
        """Resolve trigger-URL requests until none waits (one ls-remote per round)."""
        try:
            while requests:
                await self._trigger_url(key, requests)
                requests = tuple(self._triggers.get(key, ()))
                self._triggers[key] = {}
        finally:
            self._triggers.pop(key, None)

    async def _trigger_url(self, key: Key, requests: Sequence[TriggerURLRequest]) -> None:
        automated_build = self.store.parsed(key)
        body = self.store.automated_builds.get(key)
        if automated_build is None or body is None:
            return
        try:
            heads = await self._heads(key)
        except SourceUnreachable as exc:
            await self.writes.post_event(
                body, EventNote("Warning", exc.reason, f"trigger URL: {exc}")
            )
            return
        events: list[PushEvent] = []
        notes: list[str] = []
        for request in requests:
            plan = trigger_events(automated_build.spec, request, heads)
            events += plan.events
            if not plan.events:
                notes.append("; ".join(plan.notes) or "nothing to build")
        if events:
            self.submit_push(key[0], key[1], list(dict.fromkeys(events)))  # requests overlap
        if notes:
            note = " | ".join(dict.fromkeys(notes))
            await self.writes.post_event(
                body, EventNote("Warning", Reason.NOTHING_TO_BUILD, f"trigger URL: {note}")
            )

    async def _poll(self, target: PollTarget) -> Mapping[str, str]:
        return await self._heads(target.key)

    async def _heads(self, key: Key, timeout: float = 30.0) -> Mapping[str, str]:
        """The repository's heads, with the linked token only where its Secret allows it."""
        automated_build = self.store.parsed(key)
        snapshot = self.store.snapshot(key, _now())
        if automated_build is None or snapshot is None:
            raise SourceUnreachable("the AutomatedBuild is gone or invalid", url="")
        url = clone_url(automated_build.spec)
        problem, username, password = git_access(automated_build, snapshot.secrets, self.settings)
        if problem is not None:
            raise SourceUnreachable(problem.message, url=url, reason=problem.reason)
        spec = automated_build.spec
        async with self._git:
            return await ls_remote(
                url,
                token=password,
                username=username,
                timeout=timeout,
                keep=partial(buildable_ref, spec),
            )

    async def _redirect_before_build(self, key: Key) -> str | None:
        """Why no build with the linked token may start now: the repository URL redirects.

        Kaniko's git client (go-git) follows a redirect of its first request and then sends
        the token to the new host, whatever it is (and Go's net/http re-sends it on the
        redirect itself to the same host name on another port or over plain http); so just
        before a build that carries credentials, the URL is asked once (git, no redirect
        followed). None when it does not redirect, has no credentials, or cannot be asked
        (the build then fails or succeeds on its own).
        """
        automated_build = self.store.parsed(key)
        if automated_build is None or automated_build.spec.source.credentials_secret is None:
            return None
        try:  # a short wait: this holds a worker
            await self._heads(key, timeout=_REDIRECT_CHECK_TIMEOUT)
        except SourceRedirected as exc:
            return str(exc)
        except (SourceUnreachable, ValueError):
            return None
        return None

    # observe -> decide -> act ---------------------------------------------------------------
    async def process(self, key: Key) -> float | None:
        """One reconcile of one AutomatedBuild; seconds until it wants another look."""
        await self._read_unknown_secrets(key)
        snapshot = self.store.snapshot(key, _now())
        if snapshot is None:
            return None
        decision = decide(snapshot, self.settings, self.github_settings)
        return await self._act(key, snapshot.body, decision)

    async def _read_unknown_secrets(self, key: Key) -> None:
        """The one read besides ls-remote: the values of a referenced Secret (the informer
        watches metadata only), when new or changed. The users of one Secret take turns, and
        whoever comes second finds it read."""
        for name in self.store.unknown_secrets(key):
            secret = (key[0], name)
            lock = self._secret_reads.setdefault(secret, asyncio.Lock())
            async with lock:
                if name in self.store.unknown_secrets(key):
                    found = await self._read_secret(key[0], name)
                    self.store.put_secret(key[0], name, found, reader=key)
            if not lock.locked():
                self._secret_reads.pop(secret, None)

    async def _read_referenced_secrets(self) -> None:
        """Before the webhook server starts: the values of every referenced Secret (the
        Secrets were listed as metadata only, and the receiver verifies with the values). A
        read that fails is left to the object's reconcile, which retries it."""
        slots = asyncio.Semaphore(_SECRET_READS)

        async def read(key: Key) -> None:
            async with slots:
                try:
                    await self._read_unknown_secrets(key)
                except (ApiError, OSError, TimeoutError) as exc:
                    log.warning("%s/%s: cannot read its Secrets yet: %s", *key, exc)

        await asyncio.gather(*(read(key) for key in list(self.store.automated_builds)))

    async def _read_secret(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """GET one Secret; None when it is not found or cannot be a Secret's name."""
        if len(name) > 253 or not _OBJECT_NAME.match(name):
            return None  # the CRD refuses such a name, but an object stored before may hold one
        path = f"/api/v1/namespaces/{segment(namespace)}/secrets/{segment(name)}"
        try:
            return await self.api.request("GET", path)
        except ApiError as exc:
            if exc.status != 404:
                raise
            return None

    async def _act(self, key: Key, body: Mapping[str, Any], decision: Decision) -> float | None:
        """Perform a decision: the check that must pass before builds with credentials
        start, then the writes."""
        redirect = await self._redirect_before_build(key) if decision.create else None
        return await self.writes.act(key, body, decision, redirect)


__all__ = ["Controller"]
