"""Plain git over HTTP(S): branch and tag heads of any host (``git ls-remote``), and one file
as it was at a commit (a shallow ``git fetch`` into a temporary bare repository).

The token never reaches argv, the URL or a log line: it travels as an ``Authorization`` header
in environment-only git config (``GIT_CONFIG_COUNT``/``KEY``/``VALUE``), and git runs with an
empty HOME, no system or global config, no credential helper and no prompts. git follows no
HTTP redirect (``http.followRedirects=false``): it would re-send that header to wherever the
server points, another host or plain http included.

What a server answers is bounded, since the URL is anyone's to choose: ``ls-remote`` runs with
a memory limit (git reads the whole ref advertisement before it prints a line), its output is
read line by line up to a byte and a ref count cap, and only the refs the caller keeps are
held; past a cap git is killed and the answer is :class:`SourceTooLarge`.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import os
import posixpath
import re
import resource
import shutil
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from autobuild.api import checks
from autobuild.api.conditions import Reason
from autobuild.planning.planner import REF_PREFIXES, parse_ref

__all__ = [
    "GitFileError",
    "SourceRedirected",
    "SourceTooLarge",
    "SourceUnreachable",
    "ls_remote",
    "read_file_at_commit",
    "validate_url",
]

# Environment passed through to git: where it is, and how it reaches the network.
_PASSTHROUGH_ENV: Final = (
    "PATH",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
)
_BUILDABLE_PREFIXES: Final = tuple(REF_PREFIXES.values())
_MAX_DETAIL: Final = 300
_CONTROL_CHARS: Final = re.compile(r"[\x00-\x20\x7f]")
_SHA: Final = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
_AUTH_PATTERNS: Final = (
    "authentication failed",
    "could not read username",
    "could not read password",
    "returned error: 401",
    "returned error: 403",
    "terminal prompts disabled",
)
_NOT_FOUND_PATTERNS: Final = ("not found", "returned error: 404")
# How a server says no to a commit (or blob) asked for by id: protocol v0 servers without
# uploadpack.allowReachableSHA1InWant refuse unadvertised objects, and v0 servers with only
# allowTipSHA1InWant answer "not our ref" for commits behind a tip. (Over protocol v2 any
# object the server has may be asked for, so there "not our ref" means it has no such commit.)
_WANT_REFUSED_PATTERNS: Final = ("does not allow request for unadvertised object", "not our ref")
_MISSING_REF_PATTERN: Final = "couldn't find remote ref"
# Depths of the build's ref fetched in turn when the commit cannot be fetched by id: a build's
# commit is almost always its ref's tip or close behind it.
_REF_DEPTHS: Final = (1, 10, 50)
# Background work a throwaway repository never needs (and that would outlive its directory).
_NO_HOUSEKEEPING: Final = (
    "-c",
    "gc.auto=0",
    "-c",
    "maintenance.auto=false",
    "-c",
    "fetch.writeCommitGraph=false",
)
_SYMLINK_MODE: Final = b"120000"
# Options every git the operator runs gets: no credential helper, no prompt, and no redirect
# followed (git's default follows the first request's redirects and re-sends http.extraHeader,
# the token, to the new host, over plain http too).
_GIT_OPTIONS: Final = (
    "-c",
    "credential.helper=",
    "-c",
    "core.askPass=/bin/false",
    "-c",
    "http.followRedirects=false",
)
_REDIRECT: Final = re.compile(r"returned error: (30[0-9])")
# Bounds of one ls-remote. git holds the whole advertisement in memory before it prints a line
# (1,000,000 refs: 324 MiB in git, 62 MB of output), so git itself gets an address-space cap
# for its heap (RLIMIT_DATA, inherited by git-remote-http): 20,000 branches and tags need about
# 6 MiB of it over http, so 32 MiB leaves room for TLS and long names, and 16 concurrent
# ls-remotes stay within 512 MiB even when every server is hostile. What git prints is read
# line by line: at most MAX_REFS branches and tags (peeled lines aside) and MAX_LISTING_BYTES.
MAX_REFS: Final = 20_000
MAX_LISTING_BYTES: Final = 8 * 1024 * 1024
GIT_MEMORY_BYTES: Final = 32 * 1024 * 1024
# The longest line read at once: a pkt-line is at most 65,520 bytes, so no ref line is longer.
_MAX_LINE: Final = 66_000
# What is kept of git's stderr (its last message is what the user sees).
_MAX_STDERR: Final = 64 * 1024
_OUT_OF_MEMORY_PATTERNS: Final = ("out of memory", "cannot allocate memory")


class SourceUnreachable(Exception):  # noqa: N818 (the name the operator uses)
    """A repository could not be read. The message is safe to show users (never has secrets).

    ``reason`` is a short CamelCase word for conditions and events: ``AuthenticationFailed``,
    ``NotFound``, ``Timeout`` or ``Unreachable``.
    """

    def __init__(self, message: str, *, url: str, reason: str = Reason.UNREACHABLE) -> None:
        super().__init__(message)
        self.url = url
        self.reason = reason


class SourceTooLarge(SourceUnreachable):
    """The repository advertises more branches and tags, or longer ones, than autobuild reads
    (``reason`` ``SourceTooLarge``); git was stopped there. The message is safe to show."""

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message, url=url, reason=Reason.SOURCE_TOO_LARGE)


class SourceRedirected(SourceUnreachable):
    """The repository URL answers with an HTTP redirect, which no git of the operator follows
    (``reason`` ``Unreachable``). Kaniko's git client would follow it with the credentials."""


class GitFileError(Exception):
    """The repository answered, but the file is not there to read. The message is safe to show.

    ``reason``: ``CommitNotFound`` (the server has no such commit, or will not send it),
    ``PathNotFound`` (no such path in that commit) or ``NotAFile`` (a directory, a submodule
    or a symbolic link).
    """

    def __init__(self, message: str, *, url: str, reason: str) -> None:
        super().__init__(message)
        self.url = url
        self.reason = reason


def validate_url(url: str) -> None:
    """Raise ValueError unless ``url`` is a plain ``http://`` or ``https://`` URL with a host.

    Anything else (``ext::``, ``file://``, ``ssh``, ``--upload-pack=...``, embedded
    credentials, whitespace or control characters) is refused before git ever sees it.
    """
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"only http:// and https:// git URLs are supported, got {url[:100]!r}")
    if _CONTROL_CHARS.search(url):
        raise ValueError("git URL must not contain whitespace or control characters")
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise ValueError("git URL must not embed credentials; pass a token instead")
    if not parts.hostname:
        raise ValueError(f"git URL has no host: {url[:100]!r}")


def _auth_header(username: str, token: str) -> str:
    if ":" in username or _CONTROL_CHARS.search(username):
        raise ValueError("git username must not contain ':', whitespace or control characters")
    raw = f"{username}:{token}".encode()
    return "Authorization: Basic " + base64.b64encode(raw).decode("ascii")


def _git_env(home: str, header: str | None) -> dict[str, str]:
    env = {name: os.environ[name] for name in _PASSTHROUGH_ENV if name in os.environ}
    env.setdefault("PATH", os.defpath)
    env.update(
        {
            "HOME": home,
            "XDG_CONFIG_HOME": home,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CEILING_DIRECTORIES": os.path.dirname(home),
            "GIT_TERMINAL_PROMPT": "0",
            # An askpass that answers nothing and fails: git then gives up instead of asking.
            "GIT_ASKPASS": "/bin/false",
            "SSH_ASKPASS": "/bin/false",
            "GIT_ALLOW_PROTOCOL": "http:https",
            "GIT_PROTOCOL_FROM_USER": "0",
            "LC_ALL": "C",
            "LANGUAGE": "C",
        }
    )
    if header is not None:
        env.update(
            {
                "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": "http.extraHeader",
                "GIT_CONFIG_VALUE_0": header,
            }
        )
    return env


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _failure(url: str, stderr: str, secrets: list[str], what: str = "git") -> SourceUnreachable:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    detail = _scrub(lines[-1] if lines else f"{what} failed without a message", secrets)
    detail = detail.removeprefix("fatal: ").removeprefix("error: ")[:_MAX_DETAIL]
    lowered = stderr.lower()
    if redirect := _REDIRECT.search(lowered):
        return SourceRedirected(
            f"cannot read {url}: the server redirects (HTTP {redirect.group(1)}), and autobuild "
            "follows no git redirect (it would send the credentials to wherever it points); "
            "set the repository to the URL it redirects to",
            url=url,
            reason=Reason.UNREACHABLE,
        )
    if any(pattern in lowered for pattern in _AUTH_PATTERNS):
        return SourceUnreachable(
            f"authentication failed for {url}: check the token and its access to the repository",
            url=url,
            reason=Reason.AUTHENTICATION_FAILED,
        )
    if any(pattern in lowered for pattern in _NOT_FOUND_PATTERNS):
        return SourceUnreachable(
            f"repository not found: {url} ({detail})", url=url, reason=Reason.NOT_FOUND
        )
    return SourceUnreachable(f"cannot read {url}: {detail}", url=url, reason=Reason.UNREACHABLE)


def _too_large(url: str, what: str) -> SourceTooLarge:
    return SourceTooLarge(
        f"{url} advertises more branches and tags than autobuild reads (at most {MAX_REFS:,}, "
        f"{MAX_LISTING_BYTES // 2**20} MiB of them, with {GIT_MEMORY_BYTES // 2**20} MiB for "
        f"{what}): git was stopped",
        url=url,
    )


class _Listing:
    """The refs of an ls-remote, read line by line: only the ones ``keep`` wants are held,
    and counting stops the listing past the caps (:class:`_ListingTooLargeError`)."""

    def __init__(self, keep: Callable[[str], bool] | None) -> None:
        self.keep = keep
        self.refs: dict[str, str] = {}
        self.peeled: dict[str, str] = {}
        self.count = 0
        self.size = 0

    def add(self, line: bytes) -> None:
        self.size += len(line)
        if self.size > MAX_LISTING_BYTES:
            raise _ListingTooLargeError
        sha, sep, ref = line.decode("utf-8", "replace").rstrip("\n").partition("\t")
        if not sep or not _SHA.fullmatch(sha):
            return
        peeled = ref.endswith("^{}")
        name = ref[:-3] if peeled else ref
        if not peeled:
            self.count += 1
            if self.count > MAX_REFS:
                raise _ListingTooLargeError
        if not name.startswith(_BUILDABLE_PREFIXES):
            return
        if self.keep is not None and not self.keep(name):
            return
        (self.peeled if peeled else self.refs)[name] = sha

    def result(self) -> dict[str, str]:
        """Each ref's commit: an annotated tag's peeled commit, not the tag object."""
        refs = dict(self.refs)
        for ref, sha in self.peeled.items():
            if ref in refs:
                refs[ref] = sha
        return refs


class _ListingTooLargeError(Exception):
    """git printed more than :class:`_Listing` reads."""


def _limit_memory() -> None:
    """In the child before exec: cap the heap of git and of its remote helper."""
    resource.setrlimit(resource.RLIMIT_DATA, (GIT_MEMORY_BYTES, GIT_MEMORY_BYTES))


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        # git runs git-remote-http(s) as a child: end the whole process group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def _make_temp_dir(url: str, what: str, prefix: str = "autobuild-git-") -> str:
    try:
        return tempfile.mkdtemp(prefix=prefix)
    except OSError as e:
        # E.g. readOnlyRootFilesystem without a writable /tmp: no git can run at all.
        raise SourceUnreachable(
            f"cannot run {what} {url}: no writable temporary directory ({e}); "
            "mount a writable emptyDir at /tmp",
            url=url,
        ) from e


_home: str | None = None


def _scratch_home(url: str) -> str:
    """An empty directory for git's HOME and working directory, made once per process (the
    profile of 10,000 first reconciles showed a directory made and removed per call costing
    more than git itself); ``ls-remote`` writes nothing there."""
    global _home
    if _home is None or not os.path.isdir(_home):
        _home = _make_temp_dir(url, "git ls-remote")
        atexit.register(shutil.rmtree, _home, ignore_errors=True)
    return _home


async def _start_git(
    argv: list[str],
    url: str,
    home: str,
    header: str | None,
    what: str,
    limit_memory: bool = False,
) -> asyncio.subprocess.Process:
    """Start git in its own process group; any failure to start it is SourceUnreachable.
    ``limit_memory``: git (and its children) get :data:`GIT_MEMORY_BYTES` of heap."""
    try:
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=home,
            env=_git_env(home, header),
            start_new_session=True,
            limit=_MAX_LINE,
            # setrlimit is one system call in the child: nothing there takes a lock another
            # thread could hold (what makes preexec_fn unsafe in general).
            preexec_fn=_limit_memory if limit_memory else None,
        )
    except FileNotFoundError as e:
        raise SourceUnreachable(
            "cannot run git: the git executable is not installed", url=url
        ) from e
    except OSError as e:  # not executable, too many processes or open files, ...
        raise SourceUnreachable(f"cannot run {what} {url}: {e}", url=url) from e


class _GitExitError(Exception):
    """git ended with a non-zero status. ``stderr`` is git's own text and may hold secrets:
    turn it into a message with :func:`_failure` (which scrubs them), never show it as is."""

    def __init__(self, stderr: str) -> None:
        super().__init__("git exited with an error")
        self.stderr = stderr


async def _run_git(args: list[str], *, url: str, home: str, header: str | None, what: str) -> bytes:
    """Run ``git ARGS`` (no credential helper, no prompts) in ``home`` and return its stdout.

    Raises _GitExitError on a non-zero exit and SourceUnreachable when git cannot run. Bound it
    with ``asyncio.timeout``: on cancellation git's whole process group is killed.
    """
    argv = ["git", *_GIT_OPTIONS, *args]
    proc = await _start_git(argv, url, home, header, what)
    try:
        out, err = await proc.communicate()
    except OSError as e:
        _kill_group(proc)
        await proc.wait()
        raise SourceUnreachable(f"{what} {url} failed: {e}", url=url) from e
    except BaseException:  # cancelled (or timed out): leave no git behind
        _kill_group(proc)
        with contextlib.suppress(BaseException):
            await asyncio.shield(proc.wait())
        raise
    if proc.returncode != 0:
        raise _GitExitError(err.decode("utf-8", "replace"))
    return out


async def _tail(stream: asyncio.StreamReader) -> bytes:
    """Read a stream to its end, keeping only its last :data:`_MAX_STDERR` bytes."""
    kept = b""
    while block := await stream.read(65536):
        kept = (kept + block)[-_MAX_STDERR:]
    return kept


async def _reap(proc: asyncio.subprocess.Process, errors: asyncio.Future[bytes]) -> None:
    """Wait for a killed git: what is left in its stdout pipe is read and dropped (a paused
    pipe that is never read to its end would keep ``wait()`` waiting)."""
    assert proc.stdout is not None
    while await proc.stdout.read(65536):
        pass
    await errors
    await proc.wait()


async def _list_git(
    args: list[str], *, url: str, home: str, header: str | None, what: str, listing: _Listing
) -> None:
    """Run ``git ARGS`` with a memory limit, feeding each line it prints to ``listing``.

    Raises _ListingTooLargeError (git killed) past the listing's caps, _GitExitError on a
    non-zero exit and SourceUnreachable when git cannot run; cancellation kills git's group.
    """
    argv = ["git", *_GIT_OPTIONS, *args]
    proc = await _start_git(argv, url, home, header, what, limit_memory=True)
    assert proc.stdout is not None
    assert proc.stderr is not None
    errors = asyncio.ensure_future(_tail(proc.stderr))
    try:
        while line := await proc.stdout.readline():
            listing.add(line)
        await proc.wait()
        err = await errors
    except ValueError:  # a line longer than any pkt-line: no git server sends that
        _kill_group(proc)
        raise _ListingTooLargeError from None
    except OSError as e:
        raise SourceUnreachable(f"{what} {url} failed: {e}", url=url) from e
    finally:
        if proc.returncode is None:  # too large, cancelled or timed out: leave no git behind
            _kill_group(proc)
            with contextlib.suppress(BaseException):
                await asyncio.shield(_reap(proc, errors))
        errors.cancel()
    if proc.returncode != 0:
        raise _GitExitError(err.decode("utf-8", "replace"))


def _credentials(token: str | None, username: str | None) -> tuple[str | None, list[str]]:
    """The ``Authorization`` header for ``token`` (None without one), and every form of the
    token that must be scrubbed from messages."""
    if not token:
        return None, []
    if username is None:
        raise ValueError("a git token needs a username (credentials.git_username)")
    header = _auth_header(username, token)
    return header, [header, header.rpartition(" ")[2], f"{username}:{token}", token]


async def ls_remote(
    url: str,
    *,
    token: str | None = None,
    username: str | None = None,
    timeout: float = 30.0,
    keep: Callable[[str], bool] | None = None,
) -> dict[str, str]:
    """Map every refs/heads/* and refs/tags/* ref to its commit (annotated tags: the peeled commit).

    A ``token`` goes as HTTP Basic auth ``username:token``, as Kaniko sends ``GIT_USERNAME`` and
    ``GIT_PASSWORD``; take the username from ``autobuild.planning.credentials.git_username``.
    ``keep``: only the refs it answers True for are returned (and held while git prints).

    Raises ValueError for a URL that is not plain http(s) or a token without a username,
    SourceTooLarge past :data:`MAX_REFS` branches and tags (or :data:`MAX_LISTING_BYTES`, or
    git's memory limit), SourceUnreachable when git fails (network, authentication, missing
    repository, a redirect) or takes longer than ``timeout`` seconds.
    """
    validate_url(url)
    header, secrets = _credentials(token, username)
    what = "git ls-remote"
    home = _scratch_home(url)
    listing = _Listing(keep)
    try:
        async with asyncio.timeout(timeout):
            await _list_git(
                ["ls-remote", "--heads", "--tags", "--", url],
                url=url,
                home=home,
                header=header,
                what=what,
                listing=listing,
            )
    except TimeoutError:
        raise SourceUnreachable(
            f"{what} {url} timed out after {timeout:g}s", url=url, reason=Reason.TIMEOUT
        ) from None
    except _ListingTooLargeError:
        raise _too_large(url, what) from None
    except _GitExitError as e:
        if any(pattern in e.stderr.lower() for pattern in _OUT_OF_MEMORY_PATTERNS):
            raise _too_large(url, what) from None
        raise _failure(url, e.stderr, secrets, what) from None
    return listing.result()


class _WantRefusedError(Exception):
    """The server would not send an object asked for by id."""


class _RefMissingError(Exception):
    """The server has no such ref."""


@dataclass(frozen=True)
class _Remote:
    """One repository URL with its credentials, fetched into ``scratch`` (git's HOME too)."""

    url: str
    scratch: str
    header: str | None
    secrets: list[str]

    async def git(self, git_dir: str, *args: str, what: str) -> bytes:
        # The options reach git's children too (a partial clone's lazy fetch of a blob).
        return await _run_git(
            [f"--git-dir={git_dir}", *_NO_HOUSEKEEPING, *args],
            url=self.url,
            home=self.scratch,
            header=self.header,
            what=what,
        )

    def failure(self, error: _GitExitError, what: str) -> SourceUnreachable:
        return _failure(self.url, error.stderr, self.secrets, what)

    async def init(self, name: str, *, promisor: bool) -> str:
        """A new bare repository ``name`` with the URL as remote ``origin``. A promisor remote
        makes a partial clone: blobs left out by ``--filter`` are fetched when first read."""
        git_dir = os.path.join(self.scratch, name)
        settings = [("remote.origin.url", self.url)]
        if promisor:
            settings += [
                ("core.repositoryFormatVersion", "1"),
                ("extensions.partialClone", "origin"),
                ("remote.origin.promisor", "true"),
            ]
        try:
            await self.git(git_dir, "init", "-q", "--bare", "--template=", git_dir, what="git init")
            for key, value in settings:
                await self.git(git_dir, "config", key, value, what="git config")
        except _GitExitError as e:
            raise self.failure(e, "git init") from None
        return git_dir

    async def fetch(self, git_dir: str, *args: str) -> None:
        """``git fetch --no-tags ARGS`` from origin. Raises _WantRefusedError when the server
        will not send a wanted object, _RefMissingError when a wanted ref does not exist, and
        SourceUnreachable for anything else that goes wrong."""
        try:
            await self.git(git_dir, "fetch", "-q", "--no-tags", *args, what="git fetch")
        except _GitExitError as e:
            stderr = e.stderr.lower()
            if any(pattern in stderr for pattern in _WANT_REFUSED_PATTERNS):
                raise _WantRefusedError from None
            if _MISSING_REF_PATTERN in stderr:
                raise _RefMissingError from None
            raise self.failure(e, "git fetch") from None

    async def has_commit(self, git_dir: str, commit: str) -> bool:
        try:
            await self.git(git_dir, "cat-file", "-e", f"{commit}^{{commit}}", what="git cat-file")
        except _GitExitError:
            return False
        return True

    async def read(self, git_dir: str, commit: str, path: str) -> bytes:
        """The bytes of ``path`` in ``commit`` (fetched already); blobs of a partial clone are
        fetched now (_WantRefusedError when the server will not send them)."""
        where = f"{path} at commit {commit} in {self.url}"
        try:
            listing = await self.git(
                git_dir,
                "--literal-pathspecs",
                "ls-tree",
                "-z",
                commit,
                "--",
                path,
                what="git ls-tree",
            )
        except _GitExitError as e:
            raise self.failure(e, "git ls-tree") from None
        entries = (line.partition(b"\t") for line in listing.split(b"\0") if line)
        found = [info.split(b" ") for info, _, name in entries if name == path.encode()]
        if not found:
            raise GitFileError(f"{where}: no such file", url=self.url, reason=Reason.PATH_NOT_FOUND)
        mode, kind, blob = found[0]
        if kind != b"blob":
            what = "a directory" if kind == b"tree" else "a submodule"
            raise GitFileError(
                f"{where}: {what}, not a file", url=self.url, reason=Reason.NOT_A_FILE
            )
        content = await self._blob(git_dir, blob.decode("ascii"))
        if mode == _SYMLINK_MODE:
            target = content.decode("utf-8", "replace")[:_MAX_DETAIL]
            raise GitFileError(
                f"{where}: a symbolic link to {target!r}, not a file",
                url=self.url,
                reason=Reason.NOT_A_FILE,
            )
        return content

    async def _blob(self, git_dir: str, blob: str) -> bytes:
        try:
            return await self.git(git_dir, "cat-file", "blob", blob, what="git cat-file")
        except _GitExitError as e:
            if any(pattern in e.stderr.lower() for pattern in _WANT_REFUSED_PATTERNS):
                raise _WantRefusedError from None
            raise self.failure(e, "git fetch") from None


def _check_path(path: str) -> str:
    """The path as git names it in a tree: relative, normalized, inside the repository."""
    try:
        checks.check_repo_path(path, "path", allow_leading_slash=True)
    except checks.InputError as e:
        raise ValueError(str(e)) from None
    clean = posixpath.normpath(path.lstrip("/"))
    if clean in ("", "."):
        raise ValueError(f"path: {path!r} names the repository root, not a file")
    return clean


def _check_ref(ref: str) -> str:
    if not ref.startswith(_BUILDABLE_PREFIXES):
        raise ValueError(f"ref: {ref!r} is not a full refs/heads/* or refs/tags/* name")
    try:
        parse_ref(ref)
    except checks.InputError as e:
        raise ValueError(str(e)) from None
    return ref


async def _read_at_commit(remote: _Remote, commit: str, path: str, ref: str | None) -> bytes:
    """Fetch just the commit (trees only where the server can filter) and read the file; when
    the server will not send it by id, fetch the build's ref deeper and deeper instead."""
    try:
        by_id = await remote.init("by-id.git", promisor=True)
        await remote.fetch(by_id, "--depth=1", "--filter=blob:none", "origin", commit)
        return await remote.read(by_id, commit, path)
    except _WantRefusedError:
        pass
    if ref is None:
        raise GitFileError(
            f"commit {commit} not found in {remote.url}: the server does not have it, or does "
            "not send commits by id (and no branch or tag was given to fetch instead)",
            url=remote.url,
            reason=Reason.COMMIT_NOT_FOUND,
        )
    by_ref = await remote.init("by-ref.git", promisor=False)
    for depth in _REF_DEPTHS:
        try:
            await remote.fetch(by_ref, f"--depth={depth}", "origin", ref)
        except _WantRefusedError:  # a ref is always advertised: only a broken server says no
            raise SourceUnreachable(
                f"cannot read {remote.url}: the server refuses to send {ref}", url=remote.url
            ) from None
        except _RefMissingError:
            raise GitFileError(
                f"commit {commit} not found in {remote.url}: the server does not send commits "
                f"by id, and {ref} no longer exists to look for it there",
                url=remote.url,
                reason=Reason.COMMIT_NOT_FOUND,
            ) from None
        if await remote.has_commit(by_ref, commit):
            return await remote.read(by_ref, commit, path)
    raise GitFileError(
        f"commit {commit} not found in {remote.url}: the server has no such commit, or does not "
        f"send commits by id and it is not among the newest {_REF_DEPTHS[-1]} commits of {ref}",
        url=remote.url,
        reason=Reason.COMMIT_NOT_FOUND,
    )


async def read_file_at_commit(
    url: str,
    commit: str,
    path: str,
    *,
    ref: str | None = None,
    token: str | None = None,
    username: str | None = None,
    timeout: float = 60.0,
) -> bytes:
    """The bytes of ``path`` (relative to the repository root) exactly as committed in ``commit``.

    git fetches that one commit (``--depth=1``, and ``--filter=blob:none`` where the server
    filters, so only the file's blob is downloaded) into a temporary bare repository that is
    removed afterwards. A server that will not send a commit by id (protocol v0 without
    ``uploadpack.allowReachableSHA1InWant``) gets ``ref`` fetched instead (the build's
    ``refs/heads/...`` or ``refs/tags/...``), 1, 10 then 50 commits deep, until the commit is
    there. The token travels as for :func:`ls_remote`.

    Raises ValueError for a bad URL, commit id, path or ref, or a token without a username;
    GitFileError when the commit or the file is not there (``reason`` says which);
    SourceUnreachable when git cannot reach or read the repository (authentication, network,
    missing repository) or all of it takes longer than ``timeout`` seconds.
    """
    validate_url(url)
    if not _SHA.fullmatch(commit):
        raise ValueError(f"commit: expected a full commit id (hex), got {commit[:100]!r}")
    path = _check_path(path)
    if ref is not None:
        _check_ref(ref)
    header, secrets = _credentials(token, username)
    scratch = _make_temp_dir(url, "git fetch", "autobuild-git-read-")
    try:
        async with asyncio.timeout(timeout):
            return await _read_at_commit(_Remote(url, scratch, header, secrets), commit, path, ref)
    except TimeoutError:
        raise SourceUnreachable(
            f"reading {path} at commit {commit} from {url} timed out after {timeout:g}s",
            url=url,
            reason=Reason.TIMEOUT,
        ) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
