"""``autobuild.sources.git.ls_remote`` against a real smart-HTTP git server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from autobuild.sources import git as gitsource
from autobuild.sources.git import SourceUnreachable, ls_remote
from tests.support.gitserver import GitServer, Repo, git_env
from tests.support.processes import group_gone

TOKEN = "ghp_S3cretTokenValue0123456789abcdefABCD"
USERNAME = "x-access-token"


def _name() -> str:
    return f"r{uuid.uuid4().hex[:10]}"


@pytest.fixture
def repo(git_server: GitServer) -> Repo:
    return git_server.create_repo("acme", _name())


@pytest.fixture
def private_repo(git_server: GitServer) -> Repo:
    return git_server.create_repo("acme", _name(), private_token=TOKEN)


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- resolving refs -----------------------------------------------------------------------


def test_branches_and_tags_resolve_to_their_commits(repo: Repo) -> None:
    first = repo.commit("main", {"Dockerfile": "FROM scratch\n"}, "first")
    second = repo.commit("main", {"README.md": "hello\n"}, "second")
    feature = repo.commit("feature/login", {"app.py": "print(1)\n"}, "feature work")
    repo.tag("v1.0.0", first)
    repo.tag("v1.1.0", second, annotated=True)

    refs = asyncio.run(ls_remote(repo.clone_url))

    assert refs == {
        "refs/heads/main": second,
        "refs/heads/feature/login": feature,
        "refs/tags/v1.0.0": first,
        "refs/tags/v1.1.0": second,
    }
    assert refs == repo.heads()


def test_annotated_tag_resolves_to_the_peeled_commit(repo: Repo) -> None:
    commit = repo.commit("main", {"a": "1"}, "release")
    repo.tag("v2.0.0", commit, annotated=True)
    tag_object = subprocess.run(
        ["git", f"--git-dir={repo.path}", "rev-parse", "refs/tags/v2.0.0"],
        capture_output=True,
        text=True,
        check=True,
        env=git_env(),
    ).stdout.strip()
    assert tag_object != commit  # really an annotated tag object

    refs = asyncio.run(ls_remote(repo.clone_url))

    assert refs["refs/tags/v2.0.0"] == commit
    assert tag_object not in refs.values()
    assert not any(ref.endswith("^{}") for ref in refs)


def test_pushes_and_deletions_are_visible_to_the_next_call(repo: Repo) -> None:
    before = repo.commit("main", {"a": "1"}, "one")
    repo.commit("old", {"b": "2"}, "branch to delete")
    assert asyncio.run(ls_remote(repo.clone_url))["refs/heads/main"] == before

    after = repo.commit("main", {"a": "2"}, "two")
    repo.delete_ref("refs/heads/old")
    refs = asyncio.run(ls_remote(repo.clone_url))

    assert after != before
    assert refs == {"refs/heads/main": after}


def test_empty_repository_has_no_refs(repo: Repo) -> None:
    assert asyncio.run(ls_remote(repo.clone_url)) == {}


def test_missing_repository_is_reported_as_not_found(git_server: GitServer) -> None:
    url = f"{git_server.url}/acme/{_name()}.git"
    with pytest.raises(SourceUnreachable, match="not found") as info:
        asyncio.run(ls_remote(url))
    assert info.value.reason == "NotFound"
    assert info.value.url == url


# --- private repositories and the token -------------------------------------------------


def test_private_repository_resolves_with_the_token(private_repo: Repo) -> None:
    sha = private_repo.commit("main", {"a": "1"}, "private work")
    for username in ("x-access-token", "oauth2"):
        refs = asyncio.run(ls_remote(private_repo.clone_url, token=TOKEN, username=username))
        assert refs == {"refs/heads/main": sha}


def test_a_token_without_a_username_is_refused(private_repo: Repo) -> None:
    with pytest.raises(ValueError, match="username"):
        asyncio.run(ls_remote(private_repo.clone_url, token=TOKEN))


@pytest.mark.parametrize("token", [None, "", "wrong-token"])
def test_private_repository_without_a_good_token_fails_clearly(
    private_repo: Repo, token: str | None
) -> None:
    private_repo.commit("main", {"a": "1"}, "private work")
    started = time.monotonic()
    with pytest.raises(SourceUnreachable) as info:
        asyncio.run(ls_remote(private_repo.clone_url, token=token, username=USERNAME, timeout=20))
    assert time.monotonic() - started < 10  # no prompt, no hang
    assert "authentication failed" in str(info.value)
    assert private_repo.clone_url in str(info.value)
    assert info.value.reason == "AuthenticationFailed"


def test_the_token_never_reaches_argv_or_the_error(
    private_repo: Repo, spawned: list[dict[str, Any]]
) -> None:
    private_repo.commit("main", {"a": "1"}, "private work")
    asyncio.run(ls_remote(private_repo.clone_url, token=TOKEN, username=USERNAME))
    with pytest.raises(SourceUnreachable) as info:
        asyncio.run(ls_remote(private_repo.clone_url, token=TOKEN + "-revoked", username=USERNAME))

    encoded = base64.b64encode(f"{USERNAME}:{TOKEN}".encode()).decode()
    for text in (str(info.value), repr(info.value), repr(info.value.args), info.value.url):
        assert TOKEN not in text
        assert encoded not in text
    assert len(spawned) == 2
    for call in spawned:
        argv = call["argv"]
        assert argv[:1] == ["git"]
        assert argv[-2:] == ["--", private_repo.clone_url]
        assert "ls-remote" in argv
        assert not any(TOKEN in arg for arg in argv)
        assert not any("Authorization" in arg for arg in argv)
        env = call["env"]
        assert env["GIT_CONFIG_KEY_0"] == "http.extraHeader"
        assert env["GIT_CONFIG_VALUE_0"].startswith("Authorization: Basic ")
        assert not any(TOKEN in value for value in env.values())  # only base64-encoded
    assert spawned[0]["env"]["GIT_CONFIG_VALUE_0"] == f"Authorization: Basic {encoded}"


def test_hardened_environment(repo: Repo, spawned: list[dict[str, Any]]) -> None:
    asyncio.run(ls_remote(repo.clone_url))
    (call,) = spawned
    env = call["env"]
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert env["GIT_ALLOW_PROTOCOL"] == "http:https"
    assert env["GIT_CONFIG_NOSYSTEM"] == "1"
    assert env["GIT_CONFIG_GLOBAL"] == os.devnull
    assert env["LC_ALL"] == "C"
    assert env["HOME"] != os.environ.get("HOME")
    assert "GIT_CONFIG_COUNT" not in env  # no token, no header
    assert "credential.helper=" in call["argv"]


def test_a_token_in_git_stderr_is_scrubbed() -> None:
    header = "Authorization: Basic " + base64.b64encode(f"u:{TOKEN}".encode()).decode()
    error = gitsource._failure(
        "https://git.example.com/a/b.git",
        f"fatal: unable to access 'https://git.example.com/a/b.git': {TOKEN} {header} boom\n",
        [header, header.rpartition(" ")[2], f"u:{TOKEN}", TOKEN],
    )
    assert TOKEN not in str(error)
    assert "boom" in str(error)
    assert error.reason == "Unreachable"


# --- unreachable hosts, timeouts and cancellation ---------------------------------------


def test_closed_port_fails_fast() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/acme/app.git"
    started = time.monotonic()
    with pytest.raises(SourceUnreachable, match="cannot read") as info:
        asyncio.run(ls_remote(url, timeout=20))
    assert time.monotonic() - started < 10
    assert info.value.reason == "Unreachable"


def test_a_server_that_never_answers_times_out(
    silent_port: int, spawned: list[dict[str, Any]]
) -> None:
    url = f"http://127.0.0.1:{silent_port}/acme/app.git"
    started = time.monotonic()
    with pytest.raises(SourceUnreachable, match=r"timed out after 1\.5s") as info:
        asyncio.run(ls_remote(url, token=TOKEN, username=USERNAME, timeout=1.5))
    elapsed = time.monotonic() - started
    assert 1.5 <= elapsed < 5
    assert info.value.reason == "Timeout"
    assert TOKEN not in str(info.value)
    (call,) = spawned
    assert group_gone(call["pid"])  # git and git-remote-http were killed


def test_cancellation_kills_git(silent_port: int, spawned: list[dict[str, Any]]) -> None:
    url = f"http://127.0.0.1:{silent_port}/acme/app.git"

    async def cancel_soon() -> None:
        task = asyncio.create_task(ls_remote(url, timeout=30))
        while not spawned:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(asyncio.wait_for(cancel_soon(), 10))
    assert group_gone(spawned[0]["pid"])


# --- URLs that are refused --------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "--upload-pack=touch /tmp/autobuild-pwned",
        "ext::sh -c touch% /tmp/autobuild-pwned",
        "file:///etc",
        "/srv/git/repo.git",
        "ssh://git@github.com/acme/app.git",
        "git@github.com:acme/app.git",
        "git://github.com/acme/app.git",
        "HTTPS://github.com/acme/app.git",
        "https://x-access-token:secret@github.com/acme/app.git",
        "https://github.com/acme/app.git\n--upload-pack=touch",
        "https://github.com/acme/app .git",
        "https:///acme/app.git",
        "",
    ],
)
def test_urls_other_than_plain_http_are_refused(url: str, spawned: list[dict[str, Any]]) -> None:
    with pytest.raises(ValueError, match="URL"):
        asyncio.run(ls_remote(url))
    assert spawned == []
    assert not Path("/tmp/autobuild-pwned").exists()


def test_username_with_a_colon_is_refused(repo: Repo) -> None:
    with pytest.raises(ValueError, match="username"):
        asyncio.run(ls_remote(repo.clone_url, token=TOKEN, username="a:b"))


# --- the git server itself --------------------------------------------------------------


@pytest.mark.parametrize("version", ["0", "1", "2"])
def test_server_clones_with_every_protocol_version(
    repo: Repo, tmp_path: Path, version: str
) -> None:
    sha = repo.commit("main", {"Dockerfile": "FROM scratch\n"}, "first")
    env = git_env(tmp_path, {"GIT_TRACE_PACKET": str(tmp_path / "trace")})
    subprocess.run(
        ["git", "-c", f"protocol.version={version}", "clone", "-q", repo.clone_url, "work"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
    )
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"],
        cwd=tmp_path / "work",
        env=env,
        check=True,
        text=True,
        capture_output=True,
    ).stdout.strip()
    assert head == sha
    assert (tmp_path / "work" / "Dockerfile").read_text() == "FROM scratch\n"
    spoke_v2 = "version 2" in (tmp_path / "trace").read_text()
    assert spoke_v2 == (version == "2")


def test_server_accepts_large_chunked_pushes(repo: Repo) -> None:
    # More than http.postBuffer (1 MiB) of incompressible data: git sends it chunked.
    sha = repo.commit("main", {"blob.hex": os.urandom(1_500_000).hex()}, "big")
    assert repo.heads() == {"refs/heads/main": sha}


def test_server_asks_for_credentials_on_private_repositories(private_repo: Repo) -> None:
    import urllib.error
    import urllib.request

    url = private_repo.clone_url + "/info/refs?service=git-upload-pack"
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url, timeout=10)
    assert info.value.code == 401
    assert info.value.headers["WWW-Authenticate"].startswith("Basic")

    request = urllib.request.Request(
        url,
        headers={"Authorization": "Basic " + base64.b64encode(f"any:{TOKEN}".encode()).decode()},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/x-git-upload-pack-advertisement"


# --- git that cannot run at all ----------------------------------------------------------


def test_no_writable_temporary_directory_is_source_unreachable(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spawned: list[dict[str, Any]]
) -> None:
    """readOnlyRootFilesystem without a writable /tmp: a clear SourceUnreachable, no git run."""
    missing = tmp_path / "no-such-dir"
    monkeypatch.setenv("TMPDIR", str(missing))
    # What gettempdir() answers when $TMPDIR is set (it is cached after the first call).
    monkeypatch.setattr(tempfile, "tempdir", str(missing))
    monkeypatch.setattr(gitsource, "_home", None)  # the process's scratch HOME is made once
    with pytest.raises(SourceUnreachable, match="no writable temporary directory") as info:
        asyncio.run(ls_remote(repo.clone_url))
    assert "emptyDir at /tmp" in str(info.value)
    assert info.value.reason == "Unreachable"
    assert info.value.url == repo.clone_url
    assert spawned == []


def test_git_that_cannot_be_executed_is_source_unreachable(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "git").write_text("#!/bin/sh\nexit 0\n")  # not executable: exec fails with EACCES
    monkeypatch.setenv("PATH", str(fake))
    with pytest.raises(SourceUnreachable, match="cannot run git ls-remote") as info:
        asyncio.run(ls_remote(repo.clone_url))
    assert "Permission denied" in str(info.value)


def test_missing_git_is_source_unreachable(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SourceUnreachable, match="git executable is not installed"):
        asyncio.run(ls_remote(repo.clone_url))
