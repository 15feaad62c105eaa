"""The effects of a decision that are not Kubernetes writes, run beside the queue: GitHub calls,
registry checks, the read of a failed build's log, and ``git ls-remote`` for the heads. One
executor per effect type (the tables below); every answer goes to the answer memory
(:mod:`autobuild.controller.answers`), which enqueues the object again, and an effect already
running for an object is not started twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import aiohttp

from autobuild.api.conditions import Reason
from autobuild.api.models import AutomatedBuildSpec, WebhookResponse, WebhookStatus
from autobuild.controller.answers import Key
from autobuild.controller.kubeapi import ApiError, KubeApi, segment
from autobuild.controller.store import Store
from autobuild.metrics import Metrics
from autobuild.planning import status as tracking
from autobuild.planning.credentials import manages_existing_repositories
from autobuild.planning.effects import (
    ApplyRepositorySettings,
    CheckPush,
    GitHubRequest,
    GitHubResult,
    PostCommitStatus,
    RefreshHook,
    RegisterHook,
    RegistryRequest,
    RegistryResult,
    RemoveHook,
    VerifyDigests,
)
from autobuild.planning.failures import LOG_HEAD_BYTES, classify_log
from autobuild.planning.job import CONTAINER_NAME
from autobuild.planning.planner import buildable_ref
from autobuild.planning.registry_gate import created_repositories
from autobuild.planning.snapshot import (
    Decision,
    Effect,
    HeadsRequest,
    HeadsResult,
    LogRead,
    SecretView,
)
from autobuild.registry.client import RegistrySessions
from autobuild.registry.operations import (
    apply_image_settings,
    image_ca_bundle,
    preflight,
    verify_build,
)
from autobuild.settings import BuildSettings, GitHubSettings
from autobuild.sources.git import SourceTooLarge, SourceUnreachable, ls_remote

if TYPE_CHECKING:  # PyGithub is imported on the first GitHub call: most clusters make none
    from autobuild.sources.github import GitHub, HookState

log = logging.getLogger("autobuild.reconcile")

# Registry checks at once (visibility, preflight, digests).
_REGISTRY_CONCURRENCY: Final = 16


def _now() -> datetime:
    return datetime.now(UTC)


class Executors:
    """Runs the effects of decisions, each with the executor of its type."""

    def __init__(
        self,
        api: KubeApi,
        store: Store,
        settings: BuildSettings,
        github_settings: GitHubSettings,
        metrics: Metrics,
        spawn: Callable[[Awaitable[None]], None],
        git: asyncio.Semaphore,
    ) -> None:
        """``spawn`` runs a coroutine beside the queue; ``git`` bounds ls-remotes at once (shared
        with the controller's own head reads)."""
        self._api = api
        self._store = store
        self._answers = store.answers
        self._settings = settings
        self._github_settings = github_settings
        self._metrics = metrics
        self._spawn = spawn
        self._git = git
        # PyGithub on its own threads; created on the first call (most clusters make none).
        self._github: GitHub | None = None
        self._registry_slots = asyncio.Semaphore(_REGISTRY_CONCURRENCY)
        # One connection pool per CA bundle (spec.image.caSecret) for the registry calls.
        self._registry_sessions = RegistrySessions()
        # Effects running, by object and effect id.
        self._running: set[tuple[Key, str]] = set()

    async def close(self) -> None:
        """Close the registry sessions and the GitHub client (once nothing runs any more)."""
        await self._registry_sessions.close()
        if self._github is not None:
            await asyncio.to_thread(self._github.close)

    def start(self, key: Key, decision: Decision) -> None:
        """Start the effects a decision asks for that are not running for the object yet, each
        with the executor of its type (:meth:`_executor`)."""
        heads = (decision.resolve,) if decision.resolve is not None else ()
        for effect in (*decision.github, *heads, *decision.read_logs, *decision.registry):
            run, slots = self._executor(effect)
            self._start(key, effect.id, partial(run, key, effect), slots)

    def _executor(
        self, effect: Effect
    ) -> tuple[Callable[[Key, Any], Awaitable[None]], asyncio.Semaphore | None]:
        """The executor of an effect's type, and the slots it waits for (None: none)."""
        if isinstance(effect, HeadsRequest):
            return self._resolve, None
        if isinstance(effect, LogRead):
            return self.read_failure_log, None
        if type(effect) in _GITHUB_CALLS:
            return self._github_call, None
        return self._registry_check, self._registry_slots

    def _start(
        self,
        key: Key,
        effect: str,
        run: Callable[[], Awaitable[None]],
        slots: asyncio.Semaphore | None = None,
    ) -> None:
        if (key, effect) not in self._running:
            self._running.add((key, effect))
            self._spawn(self._fenced(key, effect, run, slots))

    async def _fenced(
        self,
        key: Key,
        effect: str,
        run: Callable[[], Awaitable[None]],
        slots: asyncio.Semaphore | None,
    ) -> None:
        """Run an effect once it has a slot, if this replica may still write then: a leader
        that lost its Lease makes no GitHub or registry call and reads no log (the next leader
        decides again)."""
        async with slots or contextlib.nullcontext():
            if not self._api.may_write():
                self._running.discard((key, effect))
                log.info("%s/%s: not the leader: effect %s not run", *key, effect)
                return
            await run()

    # GitHub ---------------------------------------------------------------------------------
    async def _github_call(self, key: Key, call: GitHubRequest) -> None:
        """Make a GitHub call; its answer goes to the answer memory. Never raises: GitHub's
        trouble is the object's condition or an Event, not the operator's."""
        from autobuild.sources.github import GitHubError

        try:
            result = await _GITHUB_CALLS[type(call)](self._github_client(), call)
        except GitHubError as exc:
            result = GitHubResult(
                _now(), False, exc.reason, str(exc), exc.retryable, exc.retry_after
            )
        except Exception as exc:  # an answer nobody expected: report it, try again later
            log.exception("%s/%s: GitHub call %s failed", key[0], key[1], call.kind)
            result = GitHubResult(_now(), False, Reason.ERROR, str(exc)[:300], True)
        finally:
            self._running.discard((key, call.id))
        self._metrics.record_github_call(call.kind, result.ok, result.reason)
        self._answers.set_github(key, call.id, result)

    def _github_client(self) -> GitHub:
        if self._github is None:
            from autobuild.sources.github import GitHub

            self._github = GitHub(self._github_settings.github_url)
        return self._github

    # The log of a failed build ----------------------------------------------------------------
    async def read_failure_log(self, key: Key, read: LogRead) -> None:
        """The head of a failed build's log, classified (the one log read: Kaniko's usage text
        can fill the termination message, hiding the error line at the start)."""
        path = f"/api/v1/namespaces/{segment(key[0])}/pods/{segment(read.pod_name)}/log"
        params = {"container": CONTAINER_NAME, "limitBytes": str(LOG_HEAD_BYTES)}
        found: tuple[str, str] | None = None
        try:
            text = await self._api.request_text("GET", path, params=params)
            # Up to 64 KiB the build's author wrote: classified on a thread, not the loop.
            found = await asyncio.to_thread(classify_log, text)
        except (ApiError, OSError, TimeoutError) as exc:
            log.info("%s/%s: cannot read the log of %s: %s", *key, read.pod_name, exc)
        finally:
            self._running.discard((key, read.id))
        self._answers.set_log_reason(key, read.job_name, found)

    # Registries -------------------------------------------------------------------------------
    async def _registry_check(self, key: Key, request: RegistryRequest) -> None:
        """Run a registry check (holding a registry slot); its answer goes to the answer
        memory."""
        try:
            result = await self._run_registry_check(key, request)
        except Exception as exc:  # an answer nobody expected: report it, try again later
            log.exception("%s/%s: registry check %s failed", key[0], key[1], request.kind)
            result = RegistryResult(_now(), False, Reason.REGISTRY_UNREACHABLE, str(exc)[:300])
        finally:
            self._running.discard((key, request.id))
        self._answers.set_registry(key, request.id, result)

    async def _run_registry_check(self, key: Key, request: RegistryRequest) -> RegistryResult:
        automated_build = self._store.parsed(key)
        snapshot = self._store.snapshot(key, _now())
        if automated_build is None or snapshot is None:
            return RegistryResult(_now(), False, Reason.ERROR, "the AutomatedBuild is gone")
        spec = automated_build.spec
        secret = snapshot.secrets.get(spec.image.push_secret) if spec.image.push_secret else None
        try:
            session = await self._registry_sessions.get(
                image_ca_bundle(spec.image, snapshot.secrets)
            )
        except ValueError as exc:
            message = f"spec.image.caSecret {spec.image.ca_secret!r}, key ca.crt: {exc}"
            return RegistryResult(_now(), False, Reason.CA_SECRET_INVALID, message)
        check = _Registry(spec, secret, self._settings, snapshot.body, session)
        return await _REGISTRY_CHECKS[type(request)](check, request)

    # Heads ------------------------------------------------------------------------------------
    async def _resolve(self, key: Key, request: HeadsRequest) -> None:
        """Ask the git host for heads, off the worker (a slow host never holds the queue)."""
        heads: Mapping[str, str] | None = None
        problem: tracking.Problem | None = None
        automated_build = self._store.parsed(key)
        # Only the refs a rule can build are kept (a repository may advertise many more).
        keep = partial(buildable_ref, automated_build.spec) if automated_build else None
        try:
            async with self._git:
                heads = await ls_remote(
                    request.url, token=request.password, username=request.username, keep=keep
                )
        except SourceTooLarge as exc:
            problem = tracking.Problem(Reason.SOURCE_TOO_LARGE, str(exc))
        except (SourceUnreachable, ValueError) as exc:
            problem = tracking.Problem(Reason.SOURCE_UNREACHABLE, str(exc))
        finally:
            self._running.discard((key, request.id))
        result = HeadsResult(
            request.generation,
            request.request_id,
            _now(),
            heads,
            problem,
            request.credentials_version,
        )
        self._answers.set_heads(key, result)


# One executor per GitHub call --------------------------------------------------------------------
async def _register_hook(github: GitHub, call: RegisterHook) -> GitHubResult:
    state = await github.ensure_hook(call.token, call.repository, call.url, call.secret)
    return GitHubResult(_now(), True, hook=_webhook(state, call.repository))


async def _remove_hook(github: GitHub, call: RemoveHook) -> GitHubResult:
    deleted = await github.delete_hook(call.token, call.repository, call.hook_id, url=call.url)
    return GitHubResult(_now(), True, deleted=deleted)


async def _refresh_hook(github: GitHub, call: RefreshHook) -> GitHubResult:
    assert call.hook_id is not None
    found = await github.hook_state(
        call.token, call.repository, call.hook_id, url=call.url, etag=call.etag
    )
    hook = _webhook(found.state, call.repository) if found.state is not None else None
    return GitHubResult(_now(), True, hook=hook, etag=found.etag, gone=found.gone)


async def _post_commit_status(github: GitHub, call: PostCommitStatus) -> GitHubResult:
    status = call.status
    await github.post_status(
        call.token,
        call.repository,
        call.sha,
        status.state,
        status.context,
        status.description,
        status.target_url,
    )
    return GitHubResult(_now(), True)


_GITHUB_CALLS: Final[
    Mapping[type[GitHubRequest], Callable[[GitHub, Any], Awaitable[GitHubResult]]]
] = {
    RegisterHook: _register_hook,
    RemoveHook: _remove_hook,
    RefreshHook: _refresh_hook,
    PostCommitStatus: _post_commit_status,
}


def _webhook(state: HookState, repository: str) -> WebhookStatus:
    """``status.webhook`` of a hook as GitHub shows it (no secret)."""
    last = None
    if state.last_response_code is not None or state.last_response_status:
        last = WebhookResponse(
            code=state.last_response_code,
            status=state.last_response_status,
            message=state.last_response_message,
        )
    return WebhookStatus(
        repository=repository,
        url=state.url,
        id=state.id,
        active=state.active,
        last_response=last,
    )


# One executor per registry check -----------------------------------------------------------------
@dataclass(frozen=True)
class _Registry:
    """What every registry check of one object works with."""

    spec: AutomatedBuildSpec
    push_secret: SecretView | None
    settings: BuildSettings
    body: Mapping[str, Any]
    session: aiohttp.ClientSession


async def _apply_settings(check: _Registry, request: ApplyRepositorySettings) -> RegistryResult:
    secret = check.push_secret
    applied = await apply_image_settings(
        check.spec,
        secret,
        check.settings,
        created=created_repositories(check.body),
        manage_existing=secret is not None and manages_existing_repositories(secret.annotations),
        session=check.session,
    )
    state = applied.as_status()
    reason = str(state.get("reason") or "")
    return RegistryResult(_now(), not reason, reason, str(state.get("message") or ""), state)


async def _check_push(check: _Registry, request: CheckPush) -> RegistryResult:
    found = await preflight(
        check.spec.image, check.push_secret, check.settings, session=check.session
    )
    return RegistryResult(_now(), found.ok, found.reason or "", found.message or "")


async def _verify_digests(check: _Registry, request: VerifyDigests) -> RegistryResult:
    verified = await verify_build(
        check.spec.image,
        request.tags,
        request.digest,
        check.push_secret,
        check.settings,
        session=check.session,
    )
    return RegistryResult(
        _now(),
        verified.ok,
        verified.reason or "",
        verified.message or "",
        digests=verified.as_status(),
    )


_REGISTRY_CHECKS: Final[
    Mapping[type[RegistryRequest], Callable[[_Registry, Any], Awaitable[RegistryResult]]]
] = {
    ApplyRepositorySettings: _apply_settings,
    CheckPush: _check_push,
    VerifyDigests: _verify_digests,
}

__all__ = ["Executors"]
