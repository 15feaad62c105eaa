"""Plain git over HTTP(S): branch and tag heads of any host, with ``git ls-remote``.

The token never reaches argv, the URL or a log line: it travels as an ``Authorization`` header
in environment-only git config (``GIT_CONFIG_COUNT``/``KEY``/``VALUE``), and git runs with an
empty HOME, no system or global config, no credential helper and no prompts.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import os
import re
import shutil
import signal
import tempfile
from typing import Final
from urllib.parse import urlsplit

from autobuild.planning.planner import REF_PREFIXES

__all__ = [
    "SourceUnreachable",
    "ls_remote",
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


class SourceUnreachable(Exception):  # noqa: N818 (the name the operator uses)
    """A repository could not be read. The message is safe to show users (never has secrets).

    ``reason`` is a short CamelCase word for conditions and events: ``AuthenticationFailed``,
    ``NotFound``, ``Timeout`` or ``Unreachable``.
    """

    def __init__(self, message: str, *, url: str, reason: str = "Unreachable") -> None:
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


def _failure(url: str, stderr: str, secrets: list[str]) -> SourceUnreachable:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    detail = _scrub(lines[-1] if lines else "git ls-remote failed without a message", secrets)
    detail = detail.removeprefix("fatal: ").removeprefix("error: ")[:_MAX_DETAIL]
    lowered = stderr.lower()
    if any(pattern in lowered for pattern in _AUTH_PATTERNS):
        return SourceUnreachable(
            f"authentication failed for {url}: check the token and its access to the repository",
            url=url,
            reason="AuthenticationFailed",
        )
    if any(pattern in lowered for pattern in _NOT_FOUND_PATTERNS):
        return SourceUnreachable(
            f"repository not found: {url} ({detail})", url=url, reason="NotFound"
        )
    return SourceUnreachable(f"cannot read {url}: {detail}", url=url, reason="Unreachable")


def _parse(stdout: str) -> dict[str, str]:
    refs: dict[str, str] = {}
    peeled: dict[str, str] = {}
    for line in stdout.splitlines():
        sha, sep, ref = line.partition("\t")
        if not sep or not _SHA.fullmatch(sha):
            continue
        if ref.endswith("^{}"):
            peeled[ref[:-3]] = sha
        elif ref.startswith(_BUILDABLE_PREFIXES):
            refs[ref] = sha
    for ref, sha in peeled.items():
        if ref in refs:
            refs[ref] = sha
    return refs


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        # git runs git-remote-http(s) as a child: end the whole process group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


_home: str | None = None


def _scratch_home(url: str) -> str:
    """An empty directory for git's HOME and working directory, made once per process (the
    profile of 10,000 first reconciles showed a directory made and removed per call costing
    more than git itself); ``ls-remote`` writes nothing there."""
    global _home
    if _home is None or not os.path.isdir(_home):
        try:
            _home = tempfile.mkdtemp(prefix="autobuild-git-")
        except OSError as e:
            # E.g. readOnlyRootFilesystem without a writable /tmp: no git can run at all.
            raise SourceUnreachable(
                f"cannot run git ls-remote {url}: no writable temporary directory ({e}); "
                "mount a writable emptyDir at /tmp",
                url=url,
            ) from e
        atexit.register(shutil.rmtree, _home, ignore_errors=True)
    return _home


async def _start_git(
    argv: list[str], url: str, home: str, header: str | None
) -> asyncio.subprocess.Process:
    """Start git in its own process group; any failure to start it is SourceUnreachable."""
    try:
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=home,
            env=_git_env(home, header),
            start_new_session=True,
        )
    except FileNotFoundError as e:
        raise SourceUnreachable(
            "cannot run git: the git executable is not installed", url=url
        ) from e
    except OSError as e:  # not executable, too many processes or open files, ...
        raise SourceUnreachable(f"cannot run git ls-remote {url}: {e}", url=url) from e


async def ls_remote(
    url: str,
    *,
    token: str | None = None,
    username: str | None = None,
    timeout: float = 30.0,
) -> dict[str, str]:
    """Map every refs/heads/* and refs/tags/* ref to its commit (annotated tags: the peeled commit).

    A ``token`` goes as HTTP Basic auth ``username:token``, as Kaniko sends ``GIT_USERNAME`` and
    ``GIT_PASSWORD``; take the username from ``autobuild.planning.credentials.git_username``.

    Raises ValueError for a URL that is not plain http(s) or a token without a username,
    SourceUnreachable when git fails (network, authentication, missing repository) or takes
    longer than ``timeout`` seconds.
    """
    validate_url(url)
    header = None
    secrets: list[str] = []
    if token:
        if username is None:
            raise ValueError("a git token needs a username (credentials.git_username)")
        header = _auth_header(username, token)
        secrets = [header, header.rpartition(" ")[2], f"{username}:{token}", token]
    argv = [
        "git",
        "-c",
        "credential.helper=",
        "-c",
        "core.askPass=/bin/false",
        "ls-remote",
        "--heads",
        "--tags",
        "--",
        url,
    ]
    home = _scratch_home(url)
    proc = await _start_git(argv, url, home, header)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        _kill_group(proc)
        await proc.wait()
        raise SourceUnreachable(
            f"git ls-remote {url} timed out after {timeout:g}s", url=url, reason="Timeout"
        ) from None
    except OSError as e:
        _kill_group(proc)
        await proc.wait()
        raise SourceUnreachable(f"git ls-remote {url} failed: {e}", url=url) from e
    except BaseException:  # cancelled: leave no git behind
        _kill_group(proc)
        with contextlib.suppress(BaseException):
            await asyncio.shield(proc.wait())
        raise
    if proc.returncode != 0:
        raise _failure(url, err.decode("utf-8", "replace"), secrets)
    return _parse(out.decode("utf-8", "replace"))
