"""The observe step: what the operator watches, kept in memory and fed by watch events.

AutomatedBuilds by (namespace, name); their Jobs and Pods by (namespace, owner uid), and only
through the controller ownerReference chain (a Job's controller is the AutomatedBuild with that
uid, a Pod's controller a Job held here): a label anyone can write in any namespace never files
an object under someone else's AutomatedBuild. A Job or Pod that does not parse is skipped and
counted, never raised. Secrets: metadata only for every Secret (their values never cross the
wire), the values of the referenced ones read one by one (a Secret whose watched version is
newer than the values held is read again by the reconcile of its user). Every change of an
object enqueues its AutomatedBuild's key; a snapshot of one key is read from memory, never from
the API server. Objects are slimmed to what the decision reads. What the operator's own effects
answered is in :class:`~autobuild.controller.answers.Answers`, held here as ``answers``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, TypeGuard

from pydantic import ValidationError

from autobuild import API_GROUP, KIND
from autobuild.api.models import AutomatedBuild
from autobuild.controller.answers import Answers, Key
from autobuild.controller.kubeapi import (
    METADATA_LIST,
    METADATA_WATCH,
    OPENED,
    PAGE_SIZE,
    ApiError,
    GoneError,
    KubeApi,
    sleep_backoff,
)
from autobuild.planning import status as tracking
from autobuild.planning.decide import watched_secrets
from autobuild.planning.hooks import FINALIZER, generated_secret_name, hook_secret_owned
from autobuild.planning.job import LABEL_UID
from autobuild.planning.planner import PushEvent
from autobuild.planning.snapshot import SecretView, Snapshot
from autobuild.settings import GitHubSettings
from autobuild.webhooks.poller import PollTarget
from autobuild.webhooks.repokey import repo_key
from autobuild.webhooks.targets import HookTarget

# A Job or Pod table's key: (namespace, uid of its controller), an AutomatedBuild or a Job.
Owner = tuple[str, str]
log = logging.getLogger("autobuild.store")
# Why a Job or Pod with the autobuild.dev/uid label was left out (the metric's reason label).
UNOWNED: Final = "unowned"
MALFORMED: Final = "malformed"
# Skipped objects named in the log once each (a bounded memory, so forged objects cannot grow it).
_WARNED_MAX: Final = 1024

# Pushes that wait for one AutomatedBuild (e.g. while its push Secret is missing): newest kept.
MAX_PENDING_PUSHES: Final = 64
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
    owners = tuple(
        str(ref.get("uid") or "")
        for ref in meta.get("ownerReferences") or ()
        if isinstance(ref, Mapping)
        and ref.get("controller")
        and ref.get("kind") == KIND
        and str(ref.get("apiVersion") or "").split("/")[0] == API_GROUP
    )
    return SecretView(
        str(obj.get("type") or ""),
        dict(meta.get("annotations") or {}),
        data,
        str(meta.get("resourceVersion") or ""),
        owners,
    )


def _numeric(version: str) -> int:
    return int(version) if version.isdigit() else 0


def _is_metadata_only(obj: Mapping[str, Any]) -> bool:
    """A PartialObjectMetadata (what a metadata watch sends), not a whole Secret."""
    return obj.get("kind") == "PartialObjectMetadata" or not (
        "type" in obj or "data" in obj or "stringData" in obj
    )


def _named(meta: Any) -> TypeGuard[Mapping[str, Any]]:
    return isinstance(meta, Mapping) and isinstance(meta.get("name"), str) and bool(meta["name"])


def _controller(meta: Mapping[str, Any], api_prefix: str, kind: str) -> Mapping[str, Any] | None:
    """The controller ownerReference when it is of ``kind`` in an API group starting with
    ``api_prefix`` ("batch/", "autobuild.dev/"), else None."""
    refs = meta.get("ownerReferences")
    for ref in refs if isinstance(refs, list) else ():
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            version = str(ref.get("apiVersion") or "")
            return ref if version.startswith(api_prefix) and ref.get("kind") == kind else None
    return None


class Store:
    """The operator's memory of the cluster; ``enqueue`` is called with every key to look at."""

    def __init__(
        self, enqueue: Callable[[Key], None], github: GitHubSettings | None = None
    ) -> None:
        self._enqueue = enqueue
        self._github_settings = github or GitHubSettings()
        self.automated_builds: dict[Key, dict[str, Any]] = {}
        self._keys_by_uid: dict[Owner, Key] = {}
        # Build Jobs by (namespace, AutomatedBuild uid), Pods by (namespace, Job uid).
        self._jobs: dict[Owner, dict[str, dict[str, Any]]] = {}
        self._pods: dict[Owner, dict[str, dict[str, Any]]] = {}
        # The AutomatedBuild uid of every Job held: (namespace, Job uid) -> owner uid.
        self._job_owners: dict[Owner, str] = {}
        self._warned: set[tuple[str, str, str]] = set()
        # Referenced Secrets: a view, or None for "referenced and known not to exist".
        self._secrets: dict[Key, SecretView | None] = {}
        # Referenced Secrets whose watched (metadata) version is newer than the view held:
        # the reconcile of a user reads them again.
        self._stale_secrets: dict[Key, int] = {}
        self._secret_users: defaultdict[Key, set[Key]] = defaultdict(set)
        # Referenced Secrets since deleted, as last seen: an object being deleted may still need
        # its linked token to remove its GitHub webhook (a namespace goes all at once).
        self._deleted_secrets: dict[Key, SecretView] = {}
        self._uses: dict[Key, set[Key]] = {}
        self._pushes: dict[Key, deque[PushEvent]] = {}
        # Pushes ever queued per object: numbers them for the heads a replay check reads.
        self._push_count: dict[Key, int] = {}
        self._own_writes: dict[Key, int] = {}
        self.answers = Answers(enqueue, lambda key: key in self.automated_builds)
        # For deliveries: AutomatedBuilds by repository, and their parsed specs.
        self._repo_of: dict[Key, str] = {}
        self._by_repo: defaultdict[str, set[Key]] = defaultdict(set)
        self._parsed: dict[Key, AutomatedBuild | None] = {}
        self.deleted: Callable[[Key], None] = lambda key: None
        # Told of every Job or Pod left out: (resource, reason), e.g. ("jobs", "unowned").
        self.skipped: Callable[[str, str], None] = lambda resource, reason: None

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
            self._keys_by_uid[(key[0], uid)] = key
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
        if self._keys_by_uid.get((key[0], uid)) == key:
            del self._keys_by_uid[(key[0], uid)]
        self._track_secrets(key, [])
        self._index_repo(key, None)
        for memory in (self._pushes, self._push_count, self._own_writes):
            memory.pop(key, None)
        self.answers.forget(key)
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
        """The AutomatedBuild as the models read it (None: gone or invalid); cached for the
        objects that exist only: keys come from URLs too, and must not grow memory."""
        if key not in self._parsed:
            body = self.automated_builds.get(key)
            if body is None:
                return None
            try:
                self._parsed[key] = AutomatedBuild.model_validate(body)
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
        return self._hook_targets(sorted(self._by_repo.get(repo, ())))

    def target(self, namespace: str, name: str) -> HookTarget | None:
        """One AutomatedBuild as a hook target (``?automatedbuild=NS/NAME``), with its webhook
        secret; None when unknown or invalid (memory only, and nothing is cached for it)."""
        found = self._hook_targets([(namespace, name)])
        return found[0] if found else None

    def _hook_targets(self, keys: Iterable[Key]) -> list[HookTarget]:
        found = []
        for key in keys:
            automated_build = self.parsed(key)
            if automated_build is None:
                continue
            # webhookSecret, or the secret of the hook the operator registered.
            name = automated_build.spec.source.webhook_secret or generated_secret_name(
                automated_build, self._github_settings
            )
            secret = self._secret_value(key[0], name, "secret")
            if not hook_secret_owned(
                automated_build, self._secrets.get((key[0], name or "")), self._github_settings
            ):
                secret = None  # a generated hook secret the operator did not create
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
                known = self.answers.heads(key)
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
                self._stale_secrets.pop(secret, None)
                self._deleted_secrets.pop(secret, None)
        for secret in wanted:
            self._secret_users[secret].add(key)
        if wanted:
            self._uses[key] = wanted
        else:
            self._uses.pop(key, None)

    def references_secret(self, obj: Mapping[str, Any]) -> bool:
        """True for a Secret some AutomatedBuild references (the rest is dropped page by page)."""
        return _key(obj) in self._secret_users

    def replace_secrets(self, items: Iterable[Mapping[str, Any]]) -> None:
        """A fresh LIST of Secrets (metadata only, or whole): keep the referenced ones;
        referenced but absent: missing."""
        listed = {_key(item): item for item in items if _key(item) in self._secret_users}
        for secret in list(self._secret_users):
            found = listed.get(secret)
            if found is None:
                self._stale_secrets.pop(secret, None)
                self._set_secret(secret, None)
            else:
                self._observe_secret(secret, found)

    def apply_secret(self, event: str, obj: Mapping[str, Any]) -> None:
        """One watch event of a Secret (metadata only, or whole); only referenced ones are kept."""
        secret = _key(obj)
        if secret not in self._secret_users:
            return
        if event == "DELETED":
            self._stale_secrets.pop(secret, None)
            self._set_secret(secret, None)
        else:
            self._observe_secret(secret, obj)

    def _observe_secret(self, secret: Key, obj: Mapping[str, Any]) -> None:
        if not _is_metadata_only(obj):
            self._stale_secrets.pop(secret, None)
            self._set_secret(secret, secret_view(obj))
            return
        # Metadata only: the values held are current unless this version is newer.
        version = _version(obj)
        held = self._secrets.get(secret)
        if held is not None and version and version <= _numeric(held.version):
            return
        if self._stale_secrets.get(secret) == version:
            return
        self._stale_secrets[secret] = version
        for user in self._secret_users.get(secret, ()):
            self._enqueue(user)  # its reconcile reads the Secret

    def put_secret(
        self,
        namespace: str,
        name: str,
        obj: Mapping[str, Any] | None,
        reader: Key | None = None,
    ) -> None:
        """The answer of an explicit read of a referenced Secret (None: not found). The other
        users of the Secret look again; ``reader``, whose reconcile read it, goes on."""
        secret = (namespace, name)
        if secret not in self._secret_users:
            return
        view = secret_view(obj) if obj is not None else None
        wanted = self._stale_secrets.get(secret)
        if view is None or not wanted or _numeric(view.version) >= wanted:
            self._stale_secrets.pop(secret, None)
        self._set_secret(secret, view, skip=reader)

    def _set_secret(self, secret: Key, view: SecretView | None, skip: Key | None = None) -> None:
        if secret in self._secrets and self._secrets[secret] == view:
            return
        before = self._secrets.get(secret)
        if view is None and before is not None:
            self._deleted_secrets[secret] = before
        elif view is not None:
            self._deleted_secrets.pop(secret, None)
        self._secrets[secret] = view
        for user in self._secret_users.get(secret, ()):
            if user != skip:
                self._enqueue(user)

    def unknown_secrets(self, key: Key) -> list[str]:
        """Referenced Secrets to read: never seen (referenced after the Secrets' LIST, or only
        their metadata listed), or changed since their values were read."""
        return sorted(
            name
            for ns, name in self._uses.get(key, ())
            if (ns, name) not in self._secrets or (ns, name) in self._stale_secrets
        )

    # Jobs and Pods --------------------------------------------------------------------------
    def _skip(self, resource: str, reason: str, obj: Mapping[str, Any], why: str) -> None:
        self.skipped(resource, reason)
        meta = obj.get("metadata")
        meta = meta if isinstance(meta, Mapping) else {}
        seen = (resource, str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        if seen not in self._warned:
            if len(self._warned) >= _WARNED_MAX:
                self._warned.clear()
            self._warned.add(seen)
            log.warning("ignoring %s %s/%s: %s", resource[:-1], seen[1], seen[2], why)

    def _job_owner(self, obj: Mapping[str, Any]) -> tuple[Owner | None, str, str]:
        """(namespace, AutomatedBuild uid) of a build Job, or None with (reason, why)."""
        meta = obj.get("metadata")
        if not _named(meta):
            return None, MALFORMED, "no name"
        labels = meta.get("labels")
        uid = labels.get(LABEL_UID) if isinstance(labels, Mapping) else None
        ref = _controller(meta, f"{API_GROUP}/", KIND)
        if not uid or ref is None or ref.get("uid") != uid:
            return None, UNOWNED, f"its controller is not the AutomatedBuild {LABEL_UID}={uid}"
        if not isinstance(meta.get("annotations", {}), Mapping):
            return None, MALFORMED, "annotations are not a map"
        try:
            tracking.build_record(dict(obj), ())
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # The type only: the message may quote label or annotation text (log forging).
            return None, MALFORMED, f"its labels or annotations do not parse ({type(exc).__name__})"
        return (str(meta.get("namespace") or ""), str(uid)), "", ""

    def _pod_owner(self, obj: Mapping[str, Any]) -> tuple[Owner | None, str, str]:
        """(namespace, Job uid) of a build Pod, or None with (reason, why)."""
        meta = obj.get("metadata")
        if not _named(meta):
            return None, MALFORMED, "no name"
        ref = _controller(meta, "batch/", "Job")
        if ref is None or not ref.get("uid"):
            return None, UNOWNED, "its controller is not a Job"
        labels = meta.get("labels")
        # The decision pairs Pods with Jobs by this label: it must name the controller.
        if not isinstance(labels, Mapping) or labels.get("job-name") != ref.get("name"):
            return None, MALFORMED, "its job-name label does not name its controller"
        return (str(meta.get("namespace") or ""), str(ref["uid"])), "", ""

    def _key_of_pod_owner(self, owner: Owner) -> Key | None:
        automated_build = self._job_owners.get(owner)
        if automated_build is None:
            return None  # a Job not held (yet: its event may come later, and enqueues then)
        return self._keys_by_uid.get((owner[0], automated_build))

    def _unfile_job(self, owner: Owner, name: str) -> None:
        owned = self._jobs.get(owner, {})
        job = owned.pop(name, None)
        if job is None:
            return
        if not owned:
            del self._jobs[owner]
        self._job_owners.pop((owner[0], str(job["metadata"].get("uid") or "")), None)
        key = self._keys_by_uid.get(owner)
        if key is not None:
            self._enqueue(key)

    def apply_job(self, event: str, obj: Mapping[str, Any]) -> None:
        """One watch event of a build Job (or the answer to our own write of it)."""
        owner, reason, why = self._job_owner(obj)
        meta = obj.get("metadata")
        if _named(meta):
            # Filed before under another owner (its labels or references were patched since)?
            namespace, uid = str(meta.get("namespace") or ""), str(meta.get("uid") or "")
            before = self._job_owners.get((namespace, uid))
            if before is not None and (namespace, before) != owner:
                self._unfile_job((namespace, before), str(meta["name"]))
        if owner is None:
            if event != "DELETED":
                self._skip("jobs", reason, obj, why)
            return
        assert _named(meta)
        name = str(meta["name"])
        if event == "DELETED":
            self._unfile_job(owner, name)
            return
        owned = self._jobs.setdefault(owner, {})
        current = owned.get(name)
        if current is not None and _version(obj) and _version(obj) < _version(current):
            return
        owned[name] = slim_job(obj)
        self._job_owners[(owner[0], str(meta.get("uid") or ""))] = owner[1]
        key = self._keys_by_uid.get(owner)
        if key is not None:
            self._enqueue(key)

    def replace_jobs(self, items: Iterable[Mapping[str, Any]]) -> None:
        """A fresh LIST of build Jobs."""
        fresh: dict[Owner, dict[str, dict[str, Any]]] = {}
        for item in items:
            owner, reason, why = self._job_owner(item)
            if owner is None:
                self._skip("jobs", reason, item, why)
                continue
            fresh.setdefault(owner, {})[str(item["metadata"]["name"])] = slim_job(item)
        changed = {o for o in set(self._jobs) | set(fresh) if self._jobs.get(o) != fresh.get(o)}
        self._jobs = fresh
        self._job_owners = {
            (owner[0], str(job["metadata"].get("uid") or "")): owner[1]
            for owner, owned in fresh.items()
            for job in owned.values()
        }
        for owner in changed:
            key = self._keys_by_uid.get(owner)
            if key is not None:
                self._enqueue(key)

    def apply_pod(self, event: str, obj: Mapping[str, Any]) -> None:
        """One watch event of a build Pod."""
        owner, reason, why = self._pod_owner(obj)
        if owner is None:
            if event != "DELETED":
                self._skip("pods", reason, obj, why)
            return
        name = str(obj["metadata"]["name"])
        owned = self._pods.setdefault(owner, {})
        if event == "DELETED":
            owned.pop(name, None)
            if not owned:
                del self._pods[owner]
        else:
            current = owned.get(name)
            if current is not None and _version(obj) and _version(obj) < _version(current):
                return
            owned[name] = slim_pod(obj)
        key = self._key_of_pod_owner(owner)
        if key is not None:
            self._enqueue(key)

    def replace_pods(self, items: Iterable[Mapping[str, Any]]) -> None:
        """A fresh LIST of build Pods."""
        fresh: dict[Owner, dict[str, dict[str, Any]]] = {}
        for item in items:
            owner, reason, why = self._pod_owner(item)
            if owner is None:
                self._skip("pods", reason, item, why)
                continue
            fresh.setdefault(owner, {})[str(item["metadata"]["name"])] = slim_pod(item)
        changed = {o for o in set(self._pods) | set(fresh) if self._pods.get(o) != fresh.get(o)}
        self._pods = fresh
        for owner in changed:
            key = self._key_of_pod_owner(owner)
            if key is not None:
                self._enqueue(key)

    def holds_job(self, key: Key, name: str, uid: str) -> bool:
        """True when the Job is one of this AutomatedBuild's, by the ownership chain: the only
        Jobs the operator may patch or delete for it."""
        body = self.automated_builds.get(key)
        owner_uid = str(((body or {}).get("metadata") or {}).get("uid") or "")
        job = self._jobs.get((key[0], owner_uid), {}).get(name)
        return job is not None and str(job["metadata"].get("uid") or "") == uid

    # Pushes -----------------------------------------------------------------------------------
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

    # Snapshots --------------------------------------------------------------------------------
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
        jobs = tuple(self._jobs.get((key[0], uid), {}).values()) if uid else ()
        # Only the Pods of the Jobs held: a Pod naming another Job is no part of this build.
        pods = tuple(
            pod
            for job in jobs
            for pod in self._pods.get((key[0], str(job["metadata"].get("uid") or "")), {}).values()
        )
        return Snapshot(
            body=body,
            jobs=jobs,
            pods=pods,
            secrets=secrets,
            now=now,
            heads=self.answers.heads(key),
            pushes=tuple(self._pushes.get(key, ())),
            registry=self.answers.registry(key),
            logs=self.answers.logs(key),
            github=self.answers.github(key),
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
        *,
        metadata_only: bool = False,
        keep: Callable[[Mapping[str, Any]], bool] | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        """``metadata_only``: list and watch PartialObjectMetadata; ``keep``: what of each LIST
        page is kept for ``replace`` (the rest is dropped as the page arrives)."""
        self.name = name
        self.synced = asyncio.Event()
        # Paths whose watch the API server accepted last time (RBAC may refuse a watch).
        self._watching: set[str] = set()
        self._api = api
        self._paths = paths
        self._replace = replace
        self._apply = apply
        self._params = dict(params or {})
        self._list_accept = METADATA_LIST if metadata_only else None
        self._watch_accept = METADATA_WATCH if metadata_only else None
        self._keep = keep
        self._page_size = page_size
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
                    items, version = await self._list(path)
                    replace(items)
                    self._mark_synced(path)
                watch = self._api.watch(path, version, self._params, accept=self._watch_accept)
                async for event, obj in watch:
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

    async def _list(self, path: str) -> tuple[list[Any], str]:
        return await self._api.list(
            path, self._params, accept=self._list_accept, keep=self._keep, page_size=self._page_size
        )

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
