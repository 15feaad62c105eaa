"""GitHub through PyGithub: the repository picker, files at a commit, push webhooks, statuses.

PyGithub is synchronous and its connection object is not safe to share between threads, so:

* every call runs on this module's own small thread pool (never on the event loop, and a slow
  GitHub never starves the Kubernetes calls that use the loop's default pool);
* there is one ``Github`` client per (base URL, token), kept in a small LRU so connections are
  reused, and each client serves one call at a time (calls of one token queue on the event
  loop, not in a worker thread, so a busy token never takes the workers from the others);
* clients are lazy (``Github(lazy=True)``): ``repo.get_commit(sha).create_status(...)`` is one
  POST, without fetching the repository and the commit first;
* :meth:`GitHub.hook_state` reads a hook with a conditional request (``If-None-Match``): an
  unchanged hook is a 304, which GitHub does not count against the rate limit.

Rate limits, deliberately: PyGithub's throttle keeps 0.25 s between requests and 1 s between
writes per token (GitHub's advice for integrations); :class:`github.GithubRetry` retries 5xx,
429 and rate-limited 403 answers, sleeping ``Retry-After`` or until ``X-RateLimit-Reset`` — but
never longer than :attr:`ClientOptions.max_wait` inside one call. A longer wait, or retries spent
on rate limits, end the call with :class:`GitHubError` ``RateLimited`` and ``retry_after``, so
the caller requeues instead of holding a thread for an hour. Nothing here fails a build: callers
decide what an error means.

Tokens never appear in messages, logs or exceptions raised from here. What the reconcile
registers and posts (hook URL, commit status context and text) is built by the pure
:mod:`autobuild.planning.github`; the helpers at the end serve the CLI.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import posixpath
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import requests
import urllib3
from github import Auth, Github, GithubException, GithubRetry
from github.GithubException import RateLimitExceededExceedsMaxWait
from github.GithubObject import NotSet
from github.Hook import Hook
from github.Repository import Repository as PyGithubRepository

from autobuild import API_GROUP, API_VERSION, KIND
from autobuild.api.conditions import Reason
from autobuild.api.models import AutomatedBuild, BuildRule, SourceSpec, Visibility
from autobuild.planning import github as pure
from autobuild.planning.github import STATUS_DESCRIPTION_MAX, CommitState, shorten
from autobuild.settings import DEFAULT_GITHUB_URL

__all__ = [
    "ClientOptions",
    "FileAtCommit",
    "GitHub",
    "GitHubError",
    "HookRefresh",
    "HookState",
    "Repository",
    "dockerfile_path",
    "manifest_for",
    "new_hook_secret",
    "repository_full_name",
]

T = TypeVar("T")

# PyGithub logs each request's body at DEBUG, and a hook's body holds its secret: never DEBUG.
logging.getLogger("github.Requester").setLevel(logging.INFO)

# GitHubError.reason values: short CamelCase words for conditions and Events.
_RETRYABLE: Final = frozenset({Reason.RATE_LIMITED, Reason.UNREACHABLE})

HOOK_EVENTS: Final = ("push",)
_MAX_DETAIL: Final = 300
# GitHub's advice for a secondary rate limit that names no time: "wait for at least one minute".
_SECONDARY_LIMIT_WAIT: Final = 60.0
_SHA: Final = re.compile(r"[0-9a-f]{40}")


class GitHubError(Exception):
    """A GitHub call failed. The message is safe to show (no token, no hook secret).

    ``reason`` is a :class:`~autobuild.api.conditions.Reason` (GitHub's refusals); ``status``
    the HTTP status if GitHub answered; ``retry_after`` how long to wait before trying again,
    when GitHub said so.
    """

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """True when the same call may succeed later without anyone changing anything."""
        return self.reason in _RETRYABLE


@dataclass(frozen=True)
class ClientOptions:
    """How each ``Github`` client talks to the API (the defaults suit the operator)."""

    timeout: int = 15  # seconds per HTTP request
    retries: int = 3  # per call, for 5xx, 429, rate-limited 403 and connection errors
    max_wait: int = 30  # longest rate-limit sleep inside one call; longer: RateLimited
    seconds_between_requests: float = 0.25
    seconds_between_writes: float = 1.0
    per_page: int = 100


@dataclass(frozen=True)
class Repository:
    """A repository as the picker shows it."""

    full_name: str
    clone_url: str
    html_url: str
    private: bool
    default_branch: str
    description: str
    admin: bool  # the token may manage its webhooks


@dataclass(frozen=True)
class FileAtCommit:
    """A file's bytes as they were at one commit."""

    path: str
    commit: str
    content: bytes
    html_url: str


@dataclass(frozen=True)
class HookState:
    """The operator's push webhook on one repository, after :meth:`GitHub.ensure_hook`."""

    id: int
    url: str
    active: bool
    created: bool  # False: an existing hook with this URL was updated
    # GitHub's answer to the last delivery ("unused" before the first), if it reported one.
    last_response_code: int | None
    last_response_status: str | None
    last_response_message: str | None


@dataclass(frozen=True)
class HookRefresh:
    """One conditional read of the operator's hook (:meth:`GitHub.hook_state`).

    ``state`` is None when the hook did not change since the read that returned ``etag`` (or
    when it is gone); ``etag`` is what to send next time (the previous one after a 304);
    ``gone`` is True when the hook no longer exists or no longer points to the operator's URL:
    it is not ours any more, register it again.
    """

    state: HookState | None
    etag: str | None
    gone: bool


class GitHub:
    """Typed, asynchronous access to one GitHub API (github.com or a GitHub Enterprise server).

    Every method takes the linked account's token (``None``: anonymous, public data only) and
    raises :class:`GitHubError`. Call :meth:`close` when done.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_GITHUB_URL,
        options: ClientOptions | None = None,
        *,
        max_clients: int = 64,
        workers: int = 4,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.options = options or ClientOptions()
        self._max_clients = max_clients
        self._clients: OrderedDict[str, tuple[Github, threading.Lock]] = OrderedDict()
        self._clients_lock = threading.Lock()
        self._turns: dict[tuple[int, str], asyncio.Lock] = {}
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="github")

    def close(self) -> None:
        """Close every client's connections and stop the worker threads."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._clients_lock:
            for client, _ in self._clients.values():
                client.close()
            self._clients.clear()

    # -- calls ----------------------------------------------------------------------------------

    async def list_repositories(self, token: str) -> list[Repository]:
        """Every repository the token's account can see (owned, collaborator, organisation),
        sorted by full name: Docker Hub's "select the repository" list."""

        def call(client: Github) -> list[Repository]:
            listing = client.get_user().get_repos(sort="full_name")
            return [_repository(repo) for repo in listing]

        return await self._run(token, "list the repositories", call)

    async def get_repository(self, token: str | None, full_name: str) -> Repository:
        """One repository (``owner/name``)."""
        _check_full_name(full_name)
        return await self._run(
            token,
            f"read repository {full_name}",
            lambda client: _repository(_complete(client.get_repo(full_name))),
        )

    async def read_file(
        self, token: str | None, full_name: str, path: str, commit: str
    ) -> FileAtCommit:
        """The file at ``path`` (relative to the repository root) as it was at ``commit``."""
        _check_full_name(full_name)
        what = f"read {path} at {commit[:12]} in {full_name}"

        def call(client: Github) -> FileAtCommit:
            found = client.get_repo(full_name).get_contents(path, ref=commit)
            if isinstance(found, list) or found.type != "file":
                raise GitHubError(Reason.NOT_A_FILE, f"cannot {what}: it is not a file")
            if found.encoding != "base64":
                # The contents API leaves files over 1 MB out ("encoding": "none").
                raise GitHubError(
                    Reason.NOT_A_FILE, f"cannot {what}: {found.size} bytes is too large"
                )
            return FileAtCommit(found.path, commit, found.decoded_content, found.html_url)

        return await self._run(token, what, call, not_found=Reason.NOT_FOUND)

    async def ensure_hook(self, token: str, full_name: str, url: str, secret: str) -> HookState:
        """Make the repository's push webhook to ``url`` exist with ``secret``; idempotent.

        The hook is found by its exact URL and updated (GitHub never returns a secret, so the
        secret is always sent again) or created; other hooks are never touched. Raises
        ``WebhookForbidden`` without admin rights (or without the ``admin:repo_hook`` scope)
        and ``WebhookLimitReached`` when GitHub's 20 push hooks per repository are taken.
        """
        _check_full_name(full_name)
        config = {"url": url, "content_type": "json", "insecure_ssl": "0", "secret": secret}
        what = f"register the push webhook on {full_name}"

        def call(client: Github) -> HookState:
            repo = _complete(client.get_repo(full_name))
            _require_admin(repo, what)
            for attempt in range(2):
                hook = _own_hook(repo, url)
                if hook is not None:
                    hook.edit("web", config, events=list(HOOK_EVENTS), active=True)
                    return _hook_state(hook, created=False)
                try:
                    created = repo.create_hook("web", config, list(HOOK_EVENTS), active=True)
                except GithubException as exc:
                    # A concurrent writer (or a retried POST) created it first: update that one.
                    if attempt == 0 and "already exists" in _error_text(exc):
                        continue
                    raise
                return _hook_state(created, created=True)
            raise GitHubError(Reason.REJECTED, f"cannot {what}: GitHub keeps refusing it")

        return await self._run(token, what, call, not_found=Reason.WEBHOOK_FORBIDDEN)

    async def delete_hook(
        self, token: str, full_name: str, hook_id: int | None, *, url: str
    ) -> bool:
        """Delete the hook ``hook_id`` if it is still the one pointing to ``url``.

        With ``hook_id`` None (the operator crashed between creating the hook and recording its
        id) the hook is found by its exact URL among the repository's hooks. Returns False when
        there was nothing to delete (already gone); a hook with that id but another URL is left
        alone (also False). A token without admin rights (GitHub hides the hooks with a 404)
        raises ``WebhookForbidden``.
        """
        _check_full_name(full_name)
        what = f"delete webhook {hook_id if hook_id is not None else url} on {full_name}"

        def call(client: Github) -> bool:
            repo = client.get_repo(full_name)
            try:  # the client is lazy: the hook is read when its config is
                hook = repo.get_hook(hook_id) if hook_id is not None else _own_hook(repo, url)
                if hook is None or hook.config.get("url") != url:
                    return False
            except GithubException as exc:
                if exc.status != 404:
                    raise
                # GitHub also hides the hooks of a token that lost its admin rights: that is
                # no "already gone", the hook may well still be there.
                _require_admin(_complete(repo), what)
                return False
            hook.delete()
            return True

        try:
            return await self._run(token, what, call, not_found=Reason.NOT_FOUND)
        except GitHubError as exc:
            if exc.reason == Reason.NOT_FOUND:
                return False
            raise

    async def hook_state(
        self, token: str, full_name: str, hook_id: int, *, url: str, etag: str | None = None
    ) -> HookRefresh:
        """Read the hook ``hook_id`` (GitHub's answer to its last delivery) if it changed.

        ``etag`` is the one of the previous read: GitHub answers 304 when nothing changed, and
        304s do not count against the rate limit, so a periodic refresh costs almost nothing.
        A hook that was deleted, or that now points elsewhere than ``url``, is ``gone``; but GitHub
        also answers 404 when the token lost its admin rights: that is ``WebhookForbidden``.
        """
        _check_full_name(full_name)
        what = f"read webhook {hook_id} on {full_name}"

        def call(client: Github) -> HookRefresh:
            # Lazy: no request until update(), which sends If-None-Match and takes the 304.
            repo = client.get_repo(full_name)
            hook = repo.get_hook(hook_id)
            try:
                changed = hook.update({"If-None-Match": etag} if etag else None)
            except GithubException as exc:
                if exc.status != 404:
                    raise
                # GitHub hides the hooks of those without admin rights behind the same 404.
                _require_admin(_complete(repo), what)
                return HookRefresh(state=None, etag=None, gone=True)
            if not changed:
                return HookRefresh(state=None, etag=etag, gone=False)
            if hook.config.get("url") != url:
                return HookRefresh(state=None, etag=None, gone=True)
            return HookRefresh(_hook_state(hook, created=False), hook.etag, gone=False)

        return await self._run(token, what, call, not_found=Reason.WEBHOOK_FORBIDDEN)

    async def post_status(
        self,
        token: str,
        full_name: str,
        sha: str,
        state: CommitState,
        context: str,
        description: str,
        target_url: str | None = None,
    ) -> None:
        """Post a commit status (one POST; the description is cut to GitHub's 140)."""
        _check_full_name(full_name)
        if not _SHA.fullmatch(sha):
            raise GitHubError(Reason.REJECTED, f"not a full commit id: {sha[:64]!r}")
        what = f"post status {context} ({state.value}) on {sha[:12]} in {full_name}"

        def call(client: Github) -> None:
            client.get_repo(full_name).get_commit(sha).create_status(
                state.value,
                target_url=target_url if target_url else NotSet,
                description=shorten(description, STATUS_DESCRIPTION_MAX),
                context=context,
            )

        await self._run(token, what, call, not_found=Reason.STATUS_FORBIDDEN)

    # -- plumbing -------------------------------------------------------------------------------

    async def _run(
        self,
        token: str | None,
        what: str,
        call: Callable[[Github], T],
        *,
        not_found: Reason = Reason.NOT_FOUND,
    ) -> T:
        loop = asyncio.get_running_loop()
        # Calls of one token queue here, on the loop, so they never hold a worker thread
        # while they wait: other tokens' calls keep every worker.
        turn = self._turns.setdefault((id(loop), _token_key(token)), asyncio.Lock())
        async with turn:
            return await loop.run_in_executor(
                self._executor, self._call_locked, token, what, call, not_found
            )

    def _call_locked(
        self, token: str | None, what: str, call: Callable[[Github], T], not_found: Reason
    ) -> T:
        client, lock = self._client(token)
        with lock:
            try:
                return call(client)
            except GitHubError:
                raise
            except RateLimitExceededExceedsMaxWait as exc:
                raise GitHubError(
                    Reason.RATE_LIMITED,
                    f"cannot {what}: GitHub's rate limit resets in {exc.wait:.0f}s",
                    status=exc.status,
                    retry_after=exc.wait,
                ) from None
            except GithubException as exc:
                raise _translate(exc, what, not_found) from None
            except requests.exceptions.RetryError as exc:
                # Retries spent on rate-limit answers that named no time (403 "secondary rate
                # limit" with neither Retry-After nor X-RateLimit-Remaining: 0), or on 5xx.
                limited = any(f"too many {code} " in str(exc) for code in (403, 429))
                raise GitHubError(
                    Reason.RATE_LIMITED if limited else Reason.UNREACHABLE,
                    f"cannot {what}: {self.base_url} kept failing after "
                    f"{self.options.retries} retries"
                    + (" (rate limited)" if limited else " (server errors)"),
                    retry_after=_SECONDARY_LIMIT_WAIT if limited else None,
                ) from None
            except requests.RequestException as exc:
                # requests reports a read timeout spent in retries as a ConnectionError.
                timed_out = isinstance(exc, requests.Timeout) or "timed out" in str(exc)
                raise GitHubError(
                    Reason.UNREACHABLE,
                    f"cannot {what}: {self.base_url} did not answer ("
                    + (
                        f"timed out after {self.options.timeout}s"
                        if timed_out
                        else type(exc).__name__
                    )
                    + ")",
                ) from None

    def _client(self, token: str | None) -> tuple[Github, threading.Lock]:
        key = _token_key(token)
        with self._clients_lock:
            found = self._clients.get(key)
            if found is not None:
                self._clients.move_to_end(key)
                return found
            options = self.options
            retry = _Retry(
                total=options.retries,
                backoff_factor=0.5,
                status_forcelist=[*range(500, 600), 429],
                secondary_rate_wait=min(60, options.max_wait),
                max_rate_limit_wait=options.max_wait,
            )
            client = Github(
                auth=Auth.Token(token) if token else None,
                base_url=self.base_url,
                timeout=options.timeout,
                per_page=options.per_page,
                retry=retry,
                seconds_between_requests=options.seconds_between_requests,
                seconds_between_writes=options.seconds_between_writes,
                lazy=True,
            )
            entry = (client, threading.Lock())
            self._clients[key] = entry
            while len(self._clients) > self._max_clients:
                # Not closed here: another thread may be using it; its session closes when
                # the client is collected.
                self._clients.popitem(last=False)
            return entry


class _Retry(GithubRetry):
    """:class:`GithubRetry` that never sleeps a shortened rate-limit wait.

    urllib3 cuts a ``Retry-After`` longer than its maximum down and retries into the same limit;
    this raises :class:`RateLimitExceededExceedsMaxWait` with GitHub's wait instead (as
    GithubRetry does for a far primary reset), and when the retries are spent on rate limits,
    raises it with the wait the last answer asked for, so the caller knows when to come back.
    """

    def increment(  # type: ignore[override]  # GithubRetry narrows the response type too
        self,
        method: str | None = None,
        url: str | None = None,
        response: urllib3.BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: Any = None,
    ) -> urllib3.Retry:
        wait = _rate_limit_wait(response)
        limit = self.max_rate_limit_wait
        if response is not None and wait is not None and limit is not None and wait > limit:
            response.drain_conn()
            raise RateLimitExceededExceedsMaxWait(
                response.status, None, dict(response.headers), wait=wait
            )
        try:
            return super().increment(method, url, response, error, _pool, _stacktrace)  # type: ignore[arg-type]
        except urllib3.exceptions.MaxRetryError:
            if response is None or wait is None:
                raise
            response.drain_conn()
            raise RateLimitExceededExceedsMaxWait(
                response.status, None, dict(response.headers), wait=max(wait, 1.0)
            ) from None


def _rate_limit_wait(response: urllib3.BaseHTTPResponse | None) -> float | None:
    """Seconds a 403/429 rate-limit answer asks to wait, from its headers as GitHub documents
    them: ``Retry-After``, else until ``X-RateLimit-Reset`` when ``X-RateLimit-Remaining`` is
    0; None for other answers (a 403 that names no wait is left to GithubRetry's body check)."""
    if response is None or response.status not in (403, 429):
        return None
    headers = response.headers
    retry_after = str(headers.get("Retry-After", "")).strip()
    if retry_after.isdigit():
        return float(retry_after)
    reset = str(headers.get("X-RateLimit-Reset", "")).strip()
    if str(headers.get("X-RateLimit-Remaining", "")).strip() == "0" and reset.isdigit():
        # Plus one second: it is not known when in that second the limit resets.
        return max(int(reset) - time.time(), 0.0) + 1
    return None


def _token_key(token: str | None) -> str:
    """A digest that names a token's client, so that no token sits in a dict key."""
    return hashlib.sha256((token or "").encode()).hexdigest()


def _complete(repo: PyGithubRepository) -> PyGithubRepository:
    """Fetch a lazy repository now, so a 404 means "no such repository" here."""
    repo.complete()
    return repo


def _require_admin(repo: PyGithubRepository, what: str) -> None:
    """Raise ``WebhookForbidden`` unless the token may manage the repository's hooks."""
    if not repo.permissions.admin:
        raise GitHubError(
            Reason.WEBHOOK_FORBIDDEN,
            f"cannot {what}: the linked account has no admin rights on the repository",
        )


def _repository(repo: PyGithubRepository) -> Repository:
    permissions = repo.permissions
    return Repository(
        full_name=repo.full_name,
        clone_url=repo.clone_url,
        html_url=repo.html_url,
        private=bool(repo.private),
        default_branch=repo.default_branch or "main",
        description=repo.description or "",
        admin=bool(permissions.admin) if permissions is not None else False,
    )


def _own_hook(repo: PyGithubRepository, url: str) -> Hook | None:
    return next((hook for hook in repo.get_hooks() if hook.config.get("url") == url), None)


def _hook_state(hook: Hook, *, created: bool) -> HookState:
    last = hook.last_response
    return HookState(
        id=hook.id,
        url=str(hook.config.get("url", "")),
        active=bool(hook.active),
        created=created,
        last_response_code=last.code if last is not None else None,
        last_response_status=last.status if last is not None else None,
        last_response_message=last.message if last is not None else None,
    )


def _error_text(exc: GithubException) -> str:
    """GitHub's message and its ``errors[].message`` details, lowercased."""
    data = exc.data if isinstance(exc.data, Mapping) else {}
    parts = [str(data.get("message") or "")]
    for error in data.get("errors") or []:
        if isinstance(error, Mapping):
            parts.append(str(error.get("message") or error.get("code") or ""))
        else:
            parts.append(str(error))
    return "; ".join(p for p in parts if p).lower()


def _translate(exc: GithubException, what: str, not_found: Reason) -> GitHubError:
    detail = shorten(_error_text(exc) or f"HTTP {exc.status}", _MAX_DETAIL)
    status = exc.status
    if status == 401:
        reason = Reason.AUTHENTICATION_FAILED
        detail = "the token was refused (expired or revoked?)"
    elif status == 404:
        reason = not_found
        if not_found == Reason.NOT_FOUND:
            detail += " (or the linked account cannot see it)"
        elif not_found == Reason.WEBHOOK_FORBIDDEN:
            detail = (
                "GitHub hides the webhooks: the token needs admin rights on the repository "
                "and the admin:repo_hook (or repo) scope"
            )
        elif not_found == Reason.STATUS_FORBIDDEN:
            detail = "GitHub hides the repository: the token needs push rights (repo scope)"
    elif status == 403 and "rate limit" in detail:
        reason = Reason.RATE_LIMITED
    elif status == 403 and not_found in (Reason.WEBHOOK_FORBIDDEN, Reason.STATUS_FORBIDDEN):
        reason = not_found
    elif status == 422 and "cannot have more than" in detail:
        reason = Reason.WEBHOOK_LIMIT_REACHED
        detail = f"GitHub allows 20 push webhooks per repository and they are taken ({detail})"
    elif status in (429,) or status >= 500:
        reason = Reason.UNREACHABLE
    else:
        reason = Reason.REJECTED
    return GitHubError(reason, f"cannot {what}: {detail}", status=status)


def _check_full_name(full_name: str) -> None:
    owner, _, name = full_name.partition("/")
    if not owner or not name or "/" in name or full_name.strip() != full_name:
        raise GitHubError(Reason.REJECTED, f"expected OWNER/NAME, got {full_name[:100]!r}")


# -- pure helpers for the reconcile and the CLI -----------------------------------------------


def repository_full_name(source: SourceSpec) -> str:
    """``owner/name`` of ``spec.source.repo``; GitHubError when it is not OWNER/NAME."""
    full_name = pure.repository_full_name(source)
    if full_name is None:
        raise GitHubError(Reason.REJECTED, f"{source.repo!r} is not a GitHub OWNER/NAME repository")
    return full_name


def dockerfile_path(rule: BuildRule) -> str:
    """The rule's Dockerfile relative to the repository root (context joined with dockerfile)."""
    return posixpath.normpath(posixpath.join(rule.context_sub_path, rule.dockerfile))


def new_hook_secret() -> str:
    """A fresh random webhook secret (256 bits, hex)."""
    return secrets.token_hex(32)


def _image_component(text: str) -> str:
    """``text`` as one lowercase image path component (``My_App.v2`` -> ``my_app.v2``)."""
    component = re.sub(r"[^a-z0-9._-]+", "-", text.lower())
    component = re.sub(r"[._-]*([._-])[._-]*", r"\1", component).strip("._-")
    return component or "app"


def _dns_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower())
    return re.sub(r"-{2,}", "-", name).strip("-")[:63].strip("-") or "app"


def manifest_for(
    repo: Repository,
    *,
    credentials_secret: str,
    namespace: str | None = None,
    image_namespace: str | None = None,
    image_name: str | None = None,
    registry: str | None = None,
    private: bool | None = None,
) -> dict[str, Any]:
    """A ready AutomatedBuild for ``repo``, as Docker Hub's "create automated build" fills it in.

    Image namespace and name default to the repository's owner and name; visibility follows the
    repository's privacy; the short description is its description cut to 100 characters; the
    rules build the default branch as ``latest`` and version tags ``v1.2.3`` as ``1.2.3``.
    Returns the document (validated with the API models: pydantic's ValidationError when an
    explicit value is not valid).
    """
    owner, name = repo.full_name.split("/", 1)
    on_github_com = repo.clone_url.startswith("https://github.com/")
    source: dict[str, Any] = {
        # github.com infers the provider; GitHub Enterprise is named by its clone URL.
        "repo": f"github.com/{repo.full_name}" if on_github_com else repo.clone_url,
        "credentialsSecret": credentials_secret,
    }
    if not on_github_com:
        source["provider"] = "github"
    image: dict[str, Any] = {
        "namespace": image_namespace or _image_component(owner),
        "name": image_name or _image_component(name),
        "visibility": (
            Visibility.PRIVATE
            if (repo.private if private is None else private)
            else Visibility.PUBLIC
        ).value,
        # One line, like Docker Hub's short description.
        "shortDescription": (" ".join(repo.description.split()) or repo.full_name)[:100],
    }
    if registry:
        image = {"registry": registry, **image}
    metadata: dict[str, Any] = {"name": _dns_name(image_name or name)}
    if namespace:
        metadata["namespace"] = namespace
    document = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": metadata,
        "spec": {
            "source": source,
            "image": image,
            "tags": [
                {"sourceType": "Branch", "source": repo.default_branch, "dockerTag": "latest"},
                {"sourceType": "Tag", "source": "/^v?([0-9.]+)$/", "dockerTag": "{\\1}"},
            ],
        },
    }
    AutomatedBuild.model_validate(document)
    return document
