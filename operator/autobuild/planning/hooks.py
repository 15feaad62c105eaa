"""The GitHub side of the decision: the push webhook an AutomatedBuild should have, the
finalizer that removes it on deletion, and the commit status each build shows. Pure.

The calls are :mod:`autobuild.planning.effects`; the controller performs them
(:mod:`autobuild.sources.github`) and hands their answers back in the snapshot as
:class:`GitHubResult`; deciding again on the same answers asks nothing new.

- **Webhook**: with ``AUTOBUILD_PUBLIC_URL`` and a linked token on a GitHub repository, one push
  hook per AutomatedBuild at :func:`~autobuild.planning.github.hook_url`, signed with
  ``webhookSecret`` or a generated secret in a Secret the operator owns. Registered once per
  fingerprint (repository, URL, Secret versions) and recorded in ``status.webhook``; looked at
  again every :data:`REFRESH_EVERY` with a conditional request, re-created if someone deleted it.
- **Finalizer**: added before the first registration, removed once no hook can exist: on
  deletion after the hook is removed (or after :attr:`GitHubSettings.unhook_timeout`, with an
  Event), or when registration is refused for good.
- **Commit statuses**: ``pending`` when a build is queued, then its outcome; a status that
  cannot be posted is retried, then reported as an Event, and never fails the build.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Protocol
from urllib.parse import urlsplit

from autobuild.api import repos
from autobuild.api.conditions import ConditionType, Reason
from autobuild.api.models import (
    AutomatedBuild,
    AutomatedBuildStatus,
    BuildRecord,
    Provider,
    WebhookStatus,
)
from autobuild.planning.effects import (
    HOOK,
    REFRESH,
    STATUS,
    UNHOOK,
    WRITE_FINALIZERS,
    WRITE_SECRET,
    GitHubRequest,
    GitHubResult,
    PostCommitStatus,
    RefreshHook,
    RegisterHook,
    RemoveHook,
)
from autobuild.planning.github import (
    commit_state,
    commit_status,
    hook_secret_name,
    hook_url,
    repository_full_name,
)
from autobuild.settings import GitHubSettings

FINALIZER: Final = "autobuild.dev/github-hook"
# How often a registered hook is read again (a conditional request: unchanged costs a 304).
REFRESH_EVERY: Final = timedelta(minutes=30)
REFRESH_GRACE: Final = timedelta(minutes=5)
# Retries of a call that may pass later: 30 s, doubling, at most 10 min (or GitHub's Retry-After).
_RETRY_FIRST: Final = 30.0
_RETRY_MAX: Final = 600.0
# A refused registration (no admin rights, hook limit) is tried again this often: rights can be
# granted and hooks removed without any change the operator would see.
_REFUSED_RETRY: Final = 600.0
# Tries of one commit status, and of removing a hook that is no longer wanted.
STATUS_ATTEMPTS: Final = 3
_UNHOOK_ATTEMPTS: Final = 5


@dataclass(frozen=True)
class Note:
    """An Event to post: type, reason, message."""

    type: str
    reason: str
    message: str


@dataclass
class HookOutcome:
    """What the webhook decision wants written."""

    webhook: WebhookStatus | None
    # The WebhookReady condition (status, reason, message); None: the object has no hook.
    condition: tuple[str, str, str] | None = None
    requests: list[GitHubRequest] = field(default_factory=list)
    # The new metadata.finalizers (None: unchanged).
    finalizers: tuple[str, ...] | None = None
    # Create the Secret that keeps a generated hook secret (its name).
    create_secret: str | None = None
    # Answers to drop: a registration whose hook was deleted on GitHub must be made again.
    forget: list[str] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    requeue_after: float | None = None

    def requeue(self, seconds: float) -> None:
        """Look again after ``seconds`` at the latest."""
        seconds = max(seconds, 1.0)
        self.requeue_after = (
            seconds if self.requeue_after is None else min(self.requeue_after, seconds)
        )


@dataclass(frozen=True)
class HookWorld:
    """What the webhook decision reads about one AutomatedBuild."""

    automated_build: AutomatedBuild | None
    previous: AutomatedBuildStatus
    finalizers: tuple[str, ...]
    deleting_since: datetime | None
    # The linked token, when its Secret allows the repository's host (None: no GitHub calls).
    token: str | None
    token_version: str
    # The hook secret (webhookSecret's or the generated one) and its Secret's version.
    secret: str | None
    secret_version: str
    results: Mapping[str, GitHubResult]
    now: datetime
    # False while a Secret is missing or refused, or the spec does not validate: whether a hook
    # is wanted is not known then, and nothing is changed.
    known: bool = True
    # The hook secret's Secret exists but holds no value (why, in a sentence).
    secret_invalid: str | None = None
    # The generated hook secret's Secret exists but the operator did not create it (why).
    secret_not_owned: str | None = None


@functools.lru_cache(maxsize=8)
def api_web_host(github_url: str) -> str:
    """The host whose repositories the GitHub API at ``github_url`` serves (``api.github.com``
    serves ``github.com``; a GitHub Enterprise server serves its own host)."""
    host = (urlsplit(github_url).hostname or "").lower()
    return "github.com" if host == "api.github.com" else host


def github_repository(automated_build: AutomatedBuild, settings: GitHubSettings) -> str | None:
    """``OWNER/NAME`` when the repository is on the GitHub that ``AUTOBUILD_GITHUB_URL`` serves:
    only then may its linked token go to that API (None otherwise)."""
    spec = automated_build.spec
    if spec.provider is not Provider.GITHUB:
        return None
    if repos.repo_host(spec.source.repo) != api_web_host(settings.github_url):
        return None
    return repository_full_name(spec.source)


def generated_secret_name(automated_build: AutomatedBuild, settings: GitHubSettings) -> str | None:
    """The Secret the operator creates for the hook secret, when it registers hooks for this
    object and the spec names no ``webhookSecret`` (None otherwise)."""
    spec = automated_build.spec
    if not settings.public_url or spec.source.webhook_secret or not spec.source.credentials_secret:
        return None
    if github_repository(automated_build, settings) is None:
        return None
    return hook_secret_name(automated_build.metadata.name)


class _OwnedSecret(Protocol):
    @property
    def owners(self) -> tuple[str, ...]: ...


def hook_secret_owned(
    automated_build: AutomatedBuild, view: _OwnedSecret | None, settings: GitHubSettings
) -> bool:
    """Whether the hook secret's Secret may be used: always ``spec.source.webhookSecret``
    (the author named it), the generated one only when this AutomatedBuild is its controller
    owner, i.e. the operator created it (absent: nothing to use yet, also True)."""
    if view is None or generated_secret_name(automated_build, settings) is None:
        return True
    return bool(automated_build.metadata.uid) and automated_build.metadata.uid in view.owners


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def _wait(result: GitHubResult, now: datetime, refused: float = _RETRY_MAX) -> float:
    """Seconds until a failed call may be tried again (0: now)."""
    if result.retryable:
        delay = result.retry_after or min(_RETRY_FIRST * 2 ** (result.attempts - 1), _RETRY_MAX)
    else:
        delay = refused
    return max(0.0, delay - (now - result.at).total_seconds())


def _without(finalizers: Sequence[str]) -> tuple[str, ...]:
    return tuple(f for f in finalizers if f != FINALIZER)


def involved(
    settings: GitHubSettings, recorded: WebhookStatus | None, finalizers: Sequence[str] | None
) -> bool:
    """Whether an object's webhook needs deciding at all: registration is on, or a hook or
    its finalizer is left from when it was (the common case, off, costs nothing more)."""
    return bool(settings.public_url) or recorded is not None or FINALIZER in (finalizers or ())


def webhook(world: HookWorld, settings: GitHubSettings) -> HookOutcome:
    """The push webhook this AutomatedBuild should have, and the calls and writes to get there."""
    previous = world.previous.webhook
    recorded = previous if previous is not None and previous.id is not None else None
    if world.deleting_since is not None:
        return _on_delete(world, settings, recorded or previous)
    if not world.known:
        # A Secret missing or refused, or a spec that does not validate: change nothing (the
        # finalizer stays with the hook it guards) until it is known again.
        return HookOutcome(previous, _previous_condition(world))
    wanted = _wanted(world, settings)
    if recorded is not None and (wanted is None or (recorded.repository, recorded.url) != wanted):
        return _remove_stale(world, recorded, wanted)
    if wanted is None:
        finalizers = _without(world.finalizers) if FINALIZER in world.finalizers else None
        return HookOutcome(None, None, finalizers=finalizers)
    return _register(world, recorded, *wanted)


def _previous_condition(world: HookWorld) -> tuple[str, str, str] | None:
    found = next(
        (c for c in world.previous.conditions if c.type == ConditionType.WEBHOOK_READY), None
    )
    return (found.status, found.reason, found.message) if found is not None else None


def _wanted(world: HookWorld, settings: GitHubSettings) -> tuple[str, str] | None:
    """(repository, hook URL) when the operator should keep a hook for the object."""
    automated_build = world.automated_build
    if automated_build is None or not settings.public_url or world.token is None:
        return None
    repository = github_repository(automated_build, settings)
    if repository is None:
        return None
    meta = automated_build.metadata
    return repository, hook_url(settings.public_url, meta.namespace, meta.name)


def _on_delete(
    world: HookWorld, settings: GitHubSettings, target: WebhookStatus | None
) -> HookOutcome:
    """Remove the hook, then the finalizer; give up after ``unhook_timeout`` with an Event."""
    out = HookOutcome(world.previous.webhook, _previous_condition(world))
    if FINALIZER not in world.finalizers:
        return out
    release = _without(world.finalizers)
    if target is None or not target.url:
        # A crash between the finalizer and the first answer: the hook's URL is known.
        wanted = _wanted(world, settings)
        target = WebhookStatus(repository=wanted[0], url=wanted[1]) if wanted else None
    if target is None:
        out.finalizers = release
        return out
    where = f"webhook {target.id or target.url} on {target.repository}"
    request = _unhook(world.token or "", target)
    result = world.results.get(request.id)
    waited = (world.now - (world.deleting_since or world.now)).total_seconds()
    left = settings.unhook_timeout - waited
    if result is not None and result.ok:
        out.finalizers = release
        if result.deleted:
            out.notes.append(Note("Normal", Reason.WEBHOOK_REMOVED, f"removed {where}"))
        return out
    if world.token is None:
        why = "no linked token may reach GitHub"
    elif result is not None and not result.retryable:
        why = result.message
    elif left <= 0:
        why = f"GitHub did not answer within {settings.unhook_timeout}s" + (
            f" ({result.message})" if result is not None else ""
        )
    else:
        wait = 0.0 if result is None else min(_wait(result, world.now), left)
        if wait <= 0:
            out.requests.append(request)  # at most one in flight: the controller dedupes
        out.requeue(wait if wait > 0 else left)
        return out
    out.finalizers = release
    out.notes.append(_left_in_place(where, why))
    return out


def _left_in_place(where: str, why: str) -> Note:
    """The Warning that a hook stays on GitHub, for its owner to remove by hand."""
    return Note(
        "Warning",
        Reason.WEBHOOK_NOT_REMOVED,
        f"{where} was left in place ({why}); remove it in the repository's settings",
    )


def _unhook(token: str, target: WebhookStatus) -> RemoveHook:
    """The removal call."""
    return RemoveHook(target.repository, token, target.url, target.id)


def _remove_stale(
    world: HookWorld, recorded: WebhookStatus, wanted: tuple[str, str] | None
) -> HookOutcome:
    """The repository or URL changed (or hooks are off now): remove the old hook first. The
    finalizer goes on the next pass, once status no longer records the hook."""
    out = HookOutcome(recorded, _registering("removing the webhook on the old repository first"))
    if wanted is None:
        out.condition = _previous_condition(world)
    where = f"webhook {recorded.id} on {recorded.repository}"
    request = _unhook(world.token or "", recorded)
    result = world.results.get(request.id)
    if result is not None and result.ok:
        if result.deleted:
            out.notes.append(Note("Normal", Reason.WEBHOOK_REMOVED, f"removed {where}"))
    elif world.token is not None and (
        result is None or (result.retryable and result.attempts < _UNHOOK_ATTEMPTS)
    ):
        wait = 0.0 if result is None else _wait(result, world.now)
        if wait <= 0:
            out.requests.append(request)
        else:
            out.requeue(wait)
        return out
    else:
        why = result.message if result is not None else "no linked token may reach GitHub"
        out.notes.append(_left_in_place(f"{where}, no longer wanted,", why))
    out.webhook = None
    out.condition = None if wanted is None else out.condition
    out.requeue(1)  # the finalizer, or the new hook, on the next pass
    return out


def _registering(message: str) -> tuple[str, str, str]:
    return ("Unknown", Reason.REGISTERING, message)


def _refused_write(world: HookWorld, write: str) -> GitHubResult | None:
    """A write of ours the API server refused (RBAC) less than _REFUSED_RETRY ago."""
    result = world.results.get(write)
    if result is None or result.ok or _wait(result, world.now, _REFUSED_RETRY) <= 0:
        return None
    return result


def _register(
    world: HookWorld, recorded: WebhookStatus | None, repository: str, url: str
) -> HookOutcome:
    """Keep the hook registered for the current fingerprint, and look at it now and then."""
    previous = world.previous.webhook
    out = HookOutcome(previous, _registering(f"registering the push webhook on {repository}"))
    for write in (WRITE_SECRET, WRITE_FINALIZERS):
        denied = _refused_write(world, write)
        if denied is not None:
            out.condition = ("False", denied.reason, denied.message)
            out.requeue(_wait(denied, world.now, _REFUSED_RETRY))
            return out
    if world.secret_invalid is not None:
        out.condition = ("False", Reason.SECRET_KEY_MISSING, world.secret_invalid)
        return out
    if world.secret_not_owned is not None:
        out.condition = ("False", Reason.WEBHOOK_SECRET_NOT_OWNED, world.secret_not_owned)
        return out
    if world.secret is None:
        automated_build = world.automated_build
        assert automated_build is not None
        out.create_secret = hook_secret_name(automated_build.metadata.name)
        return out
    fingerprint = _fingerprint(repository, url, world.secret_version, world.token_version)
    request = RegisterHook(repository, world.token or "", url, world.secret, fingerprint)
    if recorded is not None and recorded.observed == fingerprint:
        return _refresh(world, recorded, out, request.id)
    result = world.results.get(request.id)
    due = result is None or _wait(result, world.now, _REFUSED_RETRY) <= 0
    refused = result is not None and not result.ok and not result.retryable
    if result is not None and not result.ok:
        # Keep saying why while a retry is on its way (no flapping back to Registering).
        out.condition = ("False", result.reason, result.message)
    if due and FINALIZER not in world.finalizers and not refused:
        # First the finalizer, then the hook: a deletion in between must still find it. A retry
        # after a refusal goes without (it rarely succeeds; a success adds it at once).
        out.finalizers = (*world.finalizers, FINALIZER)
        return out
    if result is not None and result.ok and result.hook is not None:
        out.webhook = result.hook.model_copy(update={"observed": fingerprint})
        out.condition = _ready(out.webhook)
        if FINALIZER not in world.finalizers:
            out.finalizers = (*world.finalizers, FINALIZER)
        out.notes.append(
            Note(
                "Normal",
                Reason.WEBHOOK_REGISTERED,
                f"push webhook {result.hook.id} on {repository} delivers to {url}",
            )
        )
        out.requeue(REFRESH_EVERY.total_seconds())
        return out
    if due:
        out.requests.append(request)
        return out
    assert result is not None
    out.webhook = WebhookStatus(
        repository=repository, url=url, id=recorded.id if recorded is not None else None
    )
    if recorded is None and refused and FINALIZER in world.finalizers:
        out.finalizers = _without(world.finalizers)  # no hook, none coming: no finalizer
    out.requeue(_wait(result, world.now, _REFUSED_RETRY))
    return out


def _refresh(
    world: HookWorld, recorded: WebhookStatus, out: HookOutcome, registration: str
) -> HookOutcome:
    """A registered hook is read again once per REFRESH_EVERY, at a moment of its own (so that
    thousands of hooks spread over the period, also after a restart); conditional, so an
    unchanged hook costs a 304. A moment missed by more than REFRESH_GRACE is skipped."""
    out.webhook = recorded
    out.condition = _ready(recorded)
    period = REFRESH_EVERY.total_seconds()
    offset = int(recorded.observed or "0", 16) % int(period)
    now = world.now.timestamp()
    slot = int((now - offset) // period)
    since = now - (slot * period + offset)
    out.requeue(period - since)
    prefix = RefreshHook.prefix(recorded.id)
    request = RefreshHook(
        recorded.repository,
        world.token or "",
        recorded.url,
        recorded.id,
        slot,
        etag=_last_etag(world.results, prefix),
    )
    result = world.results.get(request.id)
    if result is None:
        if since < REFRESH_GRACE.total_seconds():
            out.requests.append(request)
        return out
    if result.gone:
        # Deleted on GitHub, or edited to deliver elsewhere: register it again.
        out.webhook = WebhookStatus(repository=recorded.repository, url=recorded.url)
        out.condition = _registering(f"webhook {recorded.id} is gone: registering it again")
        out.notes.append(
            Note(
                "Warning",
                Reason.WEBHOOK_GONE,
                f"webhook {recorded.id} on {recorded.repository} was deleted on GitHub: "
                "registering it again",
            )
        )
        out.forget += [registration, request.id]
        out.requeue(1)
    elif result.ok and result.hook is not None:
        out.webhook = result.hook.model_copy(update={"observed": recorded.observed})
        out.condition = _ready(out.webhook)
    elif not result.ok and not result.retryable:
        # Rights lost or the token revoked: the hook may still deliver, but it can no longer
        # be looked after (nor removed).
        out.condition = ("False", result.reason, result.message)
    return out


def _last_etag(results: Mapping[str, GitHubResult], prefix: str) -> str | None:
    found = [r for key, r in results.items() if key.startswith(prefix) and r.etag]
    return max(found, key=lambda r: r.at).etag if found else None


def _ready(hook: WebhookStatus) -> tuple[str, str, str]:
    """WebhookReady of a registered hook: False when GitHub says its deliveries fail."""
    where = f"webhook {hook.id} on {hook.repository} delivers to {hook.url}"
    last = hook.last_response
    if last is not None and last.code is not None and last.code >= 400:
        return (
            "False",
            Reason.WEBHOOK_DELIVERY_FAILED,
            f"{where}; the last delivery got {last.code} {last.message}".rstrip(),
        )
    if hook.active is False:
        return ("False", Reason.WEBHOOK_INACTIVE, f"{where} but is disabled on GitHub")
    return ("True", Reason.REGISTERED, where)


def commit_statuses(
    automated_build: AutomatedBuild,
    repository: str | None,
    token: str | None,
    records: Sequence[BuildRecord],
    previous: Mapping[str, BuildRecord],
    results: Mapping[str, GitHubResult],
    now: datetime,
    url_template: str = "",
) -> tuple[list[BuildRecord], list[GitHubRequest], list[Note], float | None]:
    """Each build's commit status: posted when it is queued and when it ends, recorded in
    ``builds[].commitStatus``. Builds already in status before statuses were posted (an
    upgrade, a token linked later) get none. Returns records, calls, Events and a requeue."""
    if repository is None or token is None:
        return list(records), [], [], None
    meta = automated_build.metadata
    out: list[BuildRecord] = []
    requests: list[GitHubRequest] = []
    notes: list[Note] = []
    requeue: float | None = None
    for record in records:
        before = previous.get(record.id)
        posted = before.commit_status if before is not None else None
        want = commit_state(record.phase).value
        request_id = PostCommitStatus.id_of(record.id, want)
        result = results.get(request_id)
        news = before is None or before.phase != record.phase or posted is not None
        if posted == want or not (news or result is not None):
            out.append(record.model_copy(update={"commit_status": posted}))
            continue
        if result is not None and (result.ok or not _retry_status(result)):
            if not result.ok:
                notes.append(
                    Note(
                        "Warning",
                        Reason.COMMIT_STATUS_FAILED,
                        f"build {record.id}: {want} not posted after {result.attempts} "
                        f"tries: {result.message}",
                    )
                )
            out.append(record.model_copy(update={"commit_status": want}))
            continue
        out.append(record.model_copy(update={"commit_status": posted}))
        wait = 0.0 if result is None else _wait(result, now)
        if wait > 0:
            requeue = wait if requeue is None else min(requeue, wait)
            continue
        status = commit_status(
            automated_build.spec.image, meta.namespace, meta.name, record, url_template
        )
        requests.append(PostCommitStatus(repository, token, record.id, record.commit, status))
    return out, requests, notes, requeue


def _retry_status(result: GitHubResult) -> bool:
    return result.retryable and result.attempts < STATUS_ATTEMPTS


__all__ = [
    "FINALIZER",
    "HOOK",
    "REFRESH",
    "REFRESH_EVERY",
    "STATUS",
    "UNHOOK",
    "WRITE_FINALIZERS",
    "WRITE_SECRET",
    "GitHubRequest",
    "GitHubResult",
    "HookOutcome",
    "HookWorld",
    "Note",
    "api_web_host",
    "commit_statuses",
    "generated_secret_name",
    "github_repository",
    "hook_secret_owned",
    "involved",
    "webhook",
]
