"""The observe step: what the operator watches, kept in memory and fed by watch events.

AutomatedBuilds by (namespace, name); their Jobs and Pods by the owner's uid (a server-side
label selector keeps other Jobs and Pods out); and only the Secrets that some AutomatedBuild
references. Every change of an object enqueues its AutomatedBuild's key; a snapshot of one key
is read from memory, never from the API server. Objects are slimmed to what the decision reads.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Final

from pydantic import ValidationError

from autobuild.api.models import AutomatedBuild
from autobuild.controller.kubeapi import OPENED, ApiError, GoneError, KubeApi, sleep_backoff
from autobuild.planning.decide import HeadsResult, SecretView, Snapshot, watched_secrets
from autobuild.planning.hooks import FINALIZER, GitHubResult, generated_secret_name
from autobuild.planning.job import LABEL_UID
from autobuild.planning.planner import PushEvent
from autobuild.planning.registry_gate import RegistryResult
from autobuild.settings import GitHubSettings
from autobuild.webhooks.poller import PollTarget
from autobuild.webhooks.receiver import HookTarget
from autobuild.webhooks.repokey import repo_key

Key = tuple[str, str]
log = logging.getLogger("autobuild.store")

# Pushes that wait for one AutomatedBuild (e.g. while its push Secret is missing): newest kept.
MAX_PENDING_PUSHES: Final = 64
# Registry and log answers kept per object (the newest ones).
MAX_REGISTRY_ANSWERS: Final = 64
_META_KEEP: Final = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "finalizers",
    "labels",
    "annotations",
)


def _key(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def _version(obj: Mapping[str, Any] | None) -> int:
    """resourceVersion as a number (etcd's revision), 0 when absent or not numeric."""
    text = str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")
    return int(text) if text.isdigit() else 0


def _slim_meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    return {key: meta[key] for key in _META_KEEP if key in meta}


def slim_automated_build(obj: Mapping[str, Any]) -> dict[str, Any]:
    """An AutomatedBuild without managedFields."""
    return {**obj, "metadata": _slim_meta(obj)}


def slim_job(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What build tracking reads of a Job: metadata, suspend, status."""
    spec = obj.get("spec") or {}
    return {
        "metadata": _slim_meta(obj),
        "spec": {"suspend": bool(spec.get("suspend"))},
        "status": obj.get("status") or {},
    }


def slim_pod(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What build tracking reads of a Pod: metadata, phase, conditions, container states."""
    status = obj.get("status") or {}
    return {
        "metadata": _slim_meta(obj),
        "status": {
            key: status[key]
            for key in ("phase", "conditions", "containerStatuses")
            if key in status
        },
    }


def secret_view(obj: Mapping[str, Any]) -> SecretView:
    """A Secret's type, annotations and decoded values."""
    data: dict[str, str] = {}
    for key, value in (obj.get("data") or {}).items():
        try:
            data[key] = base64.b64decode(value or "").decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            data[key] = ""
    meta = obj.get("metadata") or {}
    return SecretView(
        str(obj.get("type") or ""),
        dict(meta.get("annotations") or {}),
        data,
        str(meta.get("resourceVersion") or ""),
    )


class Store:
    """The operator's memory of the cluster; ``enqueue`` is called with every key to look at."""

    def __init__(
        self, enqueue: Callable[[Key], None], github: GitHubSettings | None = None
    ) -> None:
        self._enqueue = enqueue
        self._github_settings = github or GitHubSettings()
        self.automated_builds: dict[Key, dict[str, Any]] = {}
        self._keys_by_uid: dict[str, Key] = {}
        self._jobs: defaultdict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self._pods: defaultdict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        # Referenced Secrets: a view, or None for "referenced and known not to exist".
        self._secrets: dict[Key, SecretView | None] = {}
        self._secret_users: defaultdict[Key, set[Key]] = defaultdict(set)
        # Referenced Secrets since deleted, as last seen: an object being deleted may still need
        # its linked token to remove its GitHub webhook (a namespace goes all at once).
        self._deleted_secrets: dict[Key, SecretView] = {}
        self._uses: dict[Key, set[Key]] = {}
        self._heads: dict[Key, HeadsResult] = {}
        self._pushes: dict[Key, deque[PushEvent]] = {}
        # Pushes ever queued per object: numbers them for the heads a replay check reads.
        self._push_count: dict[Key, int] = {}
        self._own_writes: dict[Key, int] = {}
        self._registry: dict[Key, dict[str, RegistryResult]] = {}
        self._logs: dict[Key, dict[str, tuple[str, str] | None]] = {}
        self._github: dict[Key, dict[str, GitHubResult]] = {}
        # For deliveries: AutomatedBuilds by repository, and their parsed specs.
        self._repo_of: dict[Key, str] = {}
        self._by_repo: defaultdict[str, set[Key]] = defaultdict(set)
        self._parsed: dict[Key, AutomatedBuild | None] = {}
        self.deleted: Callable[[Key], None] = lambda key: None

    # AutomatedBuilds ------------------------------------------------------------------------
    def replace_automated_builds(self, items: Iterable[Mapping[str, Any]]) -> None:
        """A fresh LIST: forget what is gone, take the rest."""
        listed = {_key(item): item for item in items}
        for key in set(self.automated_builds) - set(listed):
            self._forget(key)
        for item in listed.values():
            self.apply_automated_build("ADDED", item)

    def apply_automated_build(self, event: str, obj: Mapping[str, Any]) -> None:
        """One watch event of an AutomatedBuild."""
        key = _key(obj)
        if event == "DELETED":
            self._forget(key)
            return
        current = self.automated_builds.get(key)
        if current is not None and _version(obj) and _version(obj) <= _version(current):
            return  # older than what a write of ours already answered
        body = slim_automated_build(obj)
        self.automated_builds[key] = body
        uid = str(body["metadata"].get("uid") or "")
        if uid:
            self._keys_by_uid[uid] = key
        self._index_repo(key, body)
        # Parsed only when hooks are registered: the generated hook Secret depends on it.
        parsed = self.parsed(key) if self._github_settings.public_url else None
        spec = body.get("spec") or {}
        self._track_secrets(key, watched_secrets(spec, parsed, self._github_settings))
        if self._own_writes.get(key) == _version(obj):
            return  # the watch event of our own status write: nothing new to look at
        self._enqueue(key)

    def written(self, obj: Mapping[str, Any]) -> None:
        """The answer to our own status write: remember it, and skip its watch event."""
        key = _key(obj)
        if key in self.automated_builds:
            self._own_writes[key] = _version(obj)
            self.automated_builds[key] = slim_automated_build(obj)

    def _forget(self, key: Key) -> None:
        body = self.automated_builds.pop(key, None)
        uid = str(((body or {}).get("metadata") or {}).get("uid") or "")
        if self._keys_by_uid.get(uid) == key:
            del self._keys_by_uid[uid]
        self._track_secrets(key, [])
        self._index_repo(key, None)
        memories = (
            self._heads,
            self._pushes,
            self._push_count,
            self._own_writes,
            self._registry,
            self._logs,
            self._github,
        )
        for memory in memories:
            memory.pop(key, None)
        self.deleted(key)

    # Repositories (webhook deliveries, polling) ------------------------------------------------
    def _index_repo(self, key: Key, body: Mapping[str, Any] | None) -> None:
        self._parsed.pop(key, None)
        old = self._repo_of.pop(key, None)
        if old is not None:
            self._by_repo[old].discard(key)
            if not self._by_repo[old]:
                del self._by_repo[old]
        repo = ((body or {}).get("spec") or {}).get("source", {}).get("repo")
        if not isinstance(repo, str):
            return
        try:
            found = repo_key(repo)
        except ValueError:
            return  # an invalid spec: Stalled, and no delivery can reach it
        self._repo_of[key] = found
        self._by_repo[found].add(key)

    def parsed(self, key: Key) -> AutomatedBuild | None:
        """The AutomatedBuild as the models read it (None: gone or invalid); cached."""
        if key not in self._parsed:
            body = self.automated_builds.get(key)
            try:
                self._parsed[key] = None if body is None else AutomatedBuild.model_validate(body)
            except ValidationError:
                self._parsed[key] = None
        return self._parsed[key]

    def _secret_value(self, namespace: str, name: str | None, item: str) -> bytes | None:
        view = self._secrets.get((namespace, name)) if name else None
        value = view.data.get(item) if view is not None else None
        return value.encode() if value else None

    def targets(self, repo: str) -> list[HookTarget]:
        """The AutomatedBuilds of a repository, with their webhook secrets (the receiver's
        index: memory only, no API call)."""
        found = []
        for key in sorted(self._by_repo.get(repo, ())):
            automated_build = self.parsed(key)
            if automated_build is None:
                continue
            # webhookSecret, or the secret of the hook the operator registered.
            name = automated_build.spec.source.webhook_secret or generated_secret_name(
                automated_build, self._github_settings
            )
            secret = self._secret_value(key[0], name, "secret")
            found.append(HookTarget(key[0], key[1], automated_build.spec.provider, secret))
        return found

    def trigger_token(self, namespace: str, name: str) -> bytes | None:
        """The ``trigger-token`` of an AutomatedBuild's ``spec.triggerSecret``."""
        automated_build = self.parsed((namespace, name))
        if automated_build is None:
            return None
        return self._secret_value(namespace, automated_build.spec.trigger_secret, "trigger-token")

    def poll_targets(self) -> list[PollTarget]:
        """The AutomatedBuilds that poll their repository (re-read by the poller every 10 s)."""
        found = []
        for key in self.automated_builds:
            automated_build = self.parsed(key)
            seconds = automated_build.spec.poll_seconds if automated_build else None
            if automated_build is not None and seconds is not None:
                # The heads the reconcile last read are the baseline: a push between creation
                # and the first poll still builds.
                known = self._heads.get(key)
                baseline = known.heads if known is not None else None
                repo = automated_build.spec.source.repo
                found.append(PollTarget(key[0], key[1], repo, seconds, baseline))
        return found

    # Secrets --------------------------------------------------------------------------------
    def _track_secrets(self, key: Key, names: Sequence[str]) -> None:
        wanted = {(key[0], name) for name in names}
        for secret in self._uses.get(key, set()) - wanted:
            users = self._secret_users[secret]
            users.discard(key)
            if not users:
                del self._secret_users[secret]
                self._secrets.pop(secret, None)
                self._deleted_secrets.pop(secret, None)
        for secret in wanted:
            self._secret_users[secret].add(key)
        if wanted:
            self._uses[key] = wanted
        else:
            self._uses.pop(key, None)

    def replace_secrets(self, items: Iterable[Mapping[str, Any]]) -> None:
        """A fresh LIST of Secrets: keep the referenced ones; referenced but absent: missing."""
        listed = {_key(item): item for item in items if _key(item) in self._secret_users}
        for secret in list(self._secret_users):
            found = listed.get(secret)
            self._set_secret(secret, secret_view(found) if found is not None else None)

    def apply_secret(self, event: str, obj: Mapping[str, Any]) -> None:
        """One watch event of a Secret; only referenced ones are kept."""
        secret = _key(obj)
        if secret in self._secret_users:
            self._set_secret(secret, None if event == "DELETED" else secret_view(obj))

    def put_secret(self, namespace: str, name: str, obj: Mapping[str, Any] | None) -> None:
        """The answer of an explicit read of a newly referenced Secret (None: not found)."""
        if (namespace, name) in self._secret_users:
            self._secrets[(namespace, name)] = secret_view(obj) if obj is not None else None

    def _set_secret(self, secret: Key, view: SecretView | None) -> None:
        if secret in self._secrets and self._secrets[secret] == view:
            return
        before = self._secrets.get(secret)
        if view is None and before is not None:
            self._deleted_secrets[secret] = before
        elif view is not None:
            self._deleted_secrets.pop(secret, None)
        self._secrets[secret] = view
        for user in self._secret_users.get(secret, ()):
            self._enqueue(user)

    def unknown_secrets(self, key: Key) -> list[str]:
        """Referenced Secrets the store has never seen (referenced after the Secrets' LIST)."""
        return [name for ns, name in self._uses.get(key, ()) if (ns, name) not in self._secrets]

    # Jobs and Pods --------------------------------------------------------------------------
    def _owner(self, obj: Mapping[str, Any]) -> str:
        return str(((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_UID) or "")

    def _apply_owned(
        self,
        table: defaultdict[str, dict[str, dict[str, Any]]],
        slim: Callable[[Mapping[str, Any]], dict[str, Any]],
        event: str,
        obj: Mapping[str, Any],
    ) -> None:
        uid = self._owner(obj)
        name = str((obj.get("metadata") or {}).get("name") or "")
        owned = table[uid]
        if event == "DELETED":
            owned.pop(name, None)
            if not owned:
                del table[uid]
        else:
            current = owned.get(name)
            if current is not None and _version(obj) and _version(obj) < _version(current):
                return
            owned[name] = slim(obj)
        key = self._keys_by_uid.get(uid)
        if key is not None:
            self._enqueue(key)

    def _replace_owned(
        self,
        table: defaultdict[str, dict[str, dict[str, Any]]],
        slim: Callable[[Mapping[str, Any]], dict[str, Any]],
        items: Iterable[Mapping[str, Any]],
    ) -> None:
        fresh: defaultdict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        for item in items:
            fresh[self._owner(item)][str(item["metadata"]["name"])] = slim(item)
        changed = {uid for uid in set(table) | set(fresh) if table.get(uid) != fresh.get(uid)}
        table.clear()
        table.update(fresh)
        for uid in changed:
            key = self._keys_by_uid.get(uid)
            if key is not None:
                self._enqueue(key)

    def replace_jobs(self, items: Iterable[Mapping[str, Any]]) -> None:
        """A fresh LIST of build Jobs."""
        self._replace_owned(self._jobs, slim_job, items)

    def apply_job(self, event: str, obj: Mapping[str, Any]) -> None:
        """One watch event of a build Job (or the answer to our own write of it)."""
        self._apply_owned(self._jobs, slim_job, event, obj)

    def replace_pods(self, items: Iterable[Mapping[str, Any]]) -> None:
        """A fresh LIST of build Pods."""
        self._replace_owned(self._pods, slim_pod, items)

    def apply_pod(self, event: str, obj: Mapping[str, Any]) -> None:
        """One watch event of a build Pod."""
        self._apply_owned(self._pods, slim_pod, event, obj)

    # Requests and results that are not objects ----------------------------------------------
    def add_pushes(self, key: Key, events: Sequence[PushEvent]) -> bool:
        """Queue pushes for an AutomatedBuild; False when it is unknown."""
        if key not in self.automated_builds:
            return False
        self._pushes.setdefault(key, deque(maxlen=MAX_PENDING_PUSHES)).extend(events)
        self._push_count[key] = self._push_count.get(key, 0) + len(events)
        self._enqueue(key)
        return True

    def take_pushes(self, key: Key, count: int) -> None:
        """Drop the ``count`` oldest pushes: their builds exist now."""
        pending = self._pushes.get(key)
        for _ in range(min(count, len(pending or ()))):
            assert pending is not None
            pending.popleft()
        if pending is not None and not pending:
            del self._pushes[key]

    def set_heads(self, key: Key, result: HeadsResult) -> None:
        """The answer of ``git ls-remote`` for an AutomatedBuild."""
        if key in self.automated_builds:
            self._heads[key] = result
            self._enqueue(key)

    def set_registry(self, key: Key, request_id: str, result: RegistryResult) -> None:
        """The answer of a registry check (settings, preflight, digests) for an object."""
        if key not in self.automated_builds:
            return
        answers = self._registry.setdefault(key, {})
        answers[request_id] = result
        if len(answers) > MAX_REGISTRY_ANSWERS:  # digest checks of long-gone builds
            oldest = min(answers, key=lambda found: answers[found].at)
            del answers[oldest]
        self._enqueue(key)

    def set_github(self, key: Key, request_id: str, result: GitHubResult) -> None:
        """The answer of a GitHub call for an object; a failure again counts one more try."""
        if key not in self.automated_builds:
            return
        answers = self._github.setdefault(key, {})
        before = answers.pop(request_id, None)
        if before is not None and not before.ok and not result.ok:
            result = replace(result, attempts=before.attempts + 1)
        answers[request_id] = result
        if len(answers) > MAX_REGISTRY_ANSWERS:  # statuses of long-gone builds
            del answers[next(iter(answers))]  # the oldest
        self._enqueue(key)

    def forget_github(self, key: Key, request_ids: Sequence[str]) -> None:
        """Drop GitHub answers that no longer hold (a hook deleted on GitHub)."""
        answers = self._github.get(key, {})
        for request_id in request_ids:
            answers.pop(request_id, None)

    def set_log_reason(self, key: Key, job_name: str, found: tuple[str, str] | None) -> None:
        """What the head of a failed build's log said (None: nothing known)."""
        if key in self.automated_builds:
            answers = self._logs.setdefault(key, {})
            answers[job_name] = found
            if len(answers) > MAX_REGISTRY_ANSWERS:
                del answers[next(iter(answers))]  # the oldest
            self._enqueue(key)

    def snapshot(self, key: Key, now: datetime) -> Snapshot | None:
        """Everything the decision needs about one AutomatedBuild, from memory."""
        body = self.automated_builds.get(key)
        if body is None:
            return None
        meta = body["metadata"]
        uid = str(meta.get("uid") or "")
        secrets = {name: self._secrets.get((ns, name)) for ns, name in self._uses.get(key, ())}
        if meta.get("deletionTimestamp") and FINALIZER in (meta.get("finalizers") or ()):
            # Its webhook is still to be removed: with the token as it was, if gone since.
            for ns, name in self._uses.get(key, ()):
                if secrets[name] is None:
                    secrets[name] = self._deleted_secrets.get((ns, name))
        return Snapshot(
            body=body,
            jobs=tuple(self._jobs.get(uid, {}).values()),
            pods=tuple(self._pods.get(uid, {}).values()),
            secrets=secrets,
            now=now,
            heads=self._heads.get(key),
            pushes=tuple(self._pushes.get(key, ())),
            registry=dict(self._registry.get(key, {})),
            logs=dict(self._logs.get(key, {})),
            github=dict(self._github.get(key, {})),
            push_count=self._push_count.get(key, 0),
        )

    def keys(self) -> list[Key]:
        """Every AutomatedBuild's key."""
        return list(self.automated_builds)


Apply = Callable[[str, Mapping[str, Any]], None]
Replace = Callable[[Iterable[Mapping[str, Any]]], None]


class Informer:
    """LIST then WATCH one collection into the store; 410 GoneError lists again; errors back off."""

    def __init__(
        self,
        api: KubeApi,
        name: str,
        paths: Sequence[str],
        replace: Replace,
        apply: Apply,
        params: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.synced = asyncio.Event()
        # Paths whose watch the API server accepted last time (RBAC may refuse a watch).
        self._watching: set[str] = set()
        self._api = api
        self._paths = paths
        self._replace = replace
        self._apply = apply
        self._params = dict(params or {})
        self._synced_paths: set[str] = set()

    async def run(self) -> None:
        """Run until cancelled. Several paths (one per watched namespace) share one store."""
        if len(self._paths) == 1:
            await self._run(self._paths[0], self._replace)
            return
        # Per-namespace lists must not forget each other's objects: merge their replaces.
        listed: dict[str, list[Mapping[str, Any]]] = {}

        def partial(path: str) -> Replace:
            def replace(items: Iterable[Mapping[str, Any]]) -> None:
                listed[path] = list(items)
                if len(listed) == len(self._paths):
                    self._replace([item for chunk in listed.values() for item in chunk])

            return replace

        await asyncio.gather(*(self._run(path, partial(path)) for path in self._paths))

    async def _run(self, path: str, replace: Replace) -> None:
        version: str | None = None
        attempt = 0
        while True:
            try:
                if version is None:
                    items, version = await self._api.list(path, self._params)
                    replace(items)
                    self._mark_synced(path)
                async for event, obj in self._api.watch(path, version, self._params):
                    if event == OPENED:
                        self._watching.add(path)
                        continue
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                    if event != "BOOKMARK":
                        self._apply(event, obj)
                attempt = 0
            except GoneError:
                log.info("%s: watch expired, listing again", self.name)
                version = None
            except asyncio.CancelledError:
                raise
            except (ApiError, OSError, TimeoutError, ValueError) as exc:
                self._watching.discard(path)
                log.warning("%s: %s; retrying", self.name, exc)
                await sleep_backoff(attempt)
                attempt += 1
            except Exception:
                self._watching.discard(path)
                log.exception("%s: unexpected error; retrying", self.name)
                await sleep_backoff(attempt)
                attempt += 1

    @property
    def healthy(self) -> bool:
        """Listed, and every watch accepted by the API server."""
        return self.synced.is_set() and len(self._watching) == len(self._paths)

    def _mark_synced(self, path: str) -> None:
        self._synced_paths.add(path)
        if len(self._synced_paths) == len(self._paths):
            self.synced.set()


async def start_in_order(
    groups: Sequence[Sequence[Informer]], spawn: Callable[[Awaitable[None]], Any]
) -> None:
    """Start informers group by group, each group once the previous one has listed: Secrets
    are listed after AutomatedBuilds, so the store knows which Secrets to keep."""
    for group in groups:
        for informer in group:
            spawn(informer.run())
        for informer in group:
            await informer.synced.wait()
