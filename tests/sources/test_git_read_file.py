"""``autobuild.sources.git.read_file_at_commit`` against a real smart-HTTP git server on 127.0.0.1.

Two servers: one that speaks protocol v2 (where any commit may be fetched by id, whatever
``uploadpack.allowReachableSHA1InWant`` says) and one that predates v2 and answers in protocol
v0, where a repository with ``allowReachableSHA1InWant=false`` refuses every commit that is not
a ref's tip: the path that makes the reader fetch the build's ref instead.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autobuild.sources.git import GitFileError, SourceUnreachable, read_file_at_commit
from tests.support.gitserver import GitServer, Repo, git_env
from tests.support.processes import group_gone

TOKEN = "glpat-S3cretTokenValue0123456789abcdefAB"
USERNAME = "oauth2"
CRLF_DOCKERFILE = b"FROM scratch\r\nCOPY app /app\r\n# trailing spaces   \r\n"
BINARY = bytes(range(256)) + b"\x00\r\n\x1b[0m\xff\xfe"
NEW_DOCKERFILE = "FROM alpine:3.20\n# caf\u00e9 \u2615\n".encode()


def _name() -> str:
    return f"r{uuid.uuid4().hex[:10]}"


def read(url: str, commit: str, path: str, **kwargs: Any) -> bytes:
    return asyncio.run(read_file_at_commit(url, commit, path, **kwargs))


@pytest.fixture(scope="module")
def v0_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    """A server that ignores the Git-Protocol header: protocol v0 only."""
    with GitServer(tmp_path_factory.mktemp("gitserver-v0"), protocol_v2=False) as server:
        yield server


@pytest.fixture(autouse=True)
def scratch_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Where the reader makes its temporary repositories; nothing may be left there."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    yield root
    assert list(root.iterdir()) == []


def _history(repo: Repo) -> tuple[str, str]:
    """An old commit (Dockerfile with CRLF, a binary file, docker/Dockerfile) and a newer tip
    that changes all of them and adds a file; returns (old, tip)."""
    old = repo.commit(
        "main",
        {"Dockerfile": CRLF_DOCKERFILE, "blob.bin": BINARY, "docker/build/Dockerfile": b"FROM a\n"},
        "old",
    )
    repo.commit("main", {"Dockerfile": b"FROM middle\n"}, "middle")
    tip = repo.commit(
        "main",
        {
            "Dockerfile": NEW_DOCKERFILE,
            "blob.bin": b"changed\n",
            "docker/build/Dockerfile": b"FROM b\n",
            "added.txt": "new\n",
        },
        "tip",
    )
    return old, tip


def _fast_import(repo: Repo, stream: bytes) -> None:
    subprocess.run(
        ["git", f"--git-dir={repo.path}", "fast-import", "--quiet"],
        input=stream,
        env=git_env(),
        check=True,
        capture_output=True,
    )


def _add_commits(repo: Repo, count: int) -> None:
    """``count`` more commits on main, straight into the bare repository (fast)."""
    stream = b""
    for number in range(count):
        parent = b"from refs/heads/main^0\n" if number == 0 else b""
        stream += (
            b"commit refs/heads/main\n"
            b"committer Test <t@example.invalid> 1700000000 +0000\n"
            b"data 5\nmore\n" + parent + b"M 644 inline counter\n"
            b"data %d\n%d\n" % (len(str(number)) + 1, number)
        )
    _fast_import(repo, stream)


def _fetched_refs(spawned: list[dict[str, Any]]) -> list[str]:
    """The refs (not commit ids) the reader fetched, in order."""
    return [
        call["argv"][-1]
        for call in spawned
        if "fetch" in call["argv"] and call["argv"][-1].startswith("refs/")
    ]


@pytest.fixture
def repo(git_server: GitServer) -> Repo:
    return git_server.create_repo("acme", _name())


# --- reading files ------------------------------------------------------------------------


@pytest.mark.parametrize("allow_filter", [True, False], ids=["filtered", "unfiltered"])
def test_files_at_an_old_commit_are_byte_exact(
    repo: Repo, allow_filter: bool, spawned: list[dict[str, Any]]
) -> None:
    repo.configure("uploadpack.allowFilter", str(allow_filter).lower())
    old, tip = _history(repo)

    assert read(repo.clone_url, old, "Dockerfile") == CRLF_DOCKERFILE
    assert read(repo.clone_url, old, "blob.bin") == BINARY
    assert read(repo.clone_url, tip, "Dockerfile") == NEW_DOCKERFILE
    assert read(repo.clone_url, tip, "blob.bin") == b"changed\n"
    assert _fetched_refs(spawned) == []  # by commit id, never through a ref


def test_a_path_in_a_subdirectory(repo: Repo) -> None:
    old, tip = _history(repo)
    assert read(repo.clone_url, old, "docker/build/Dockerfile") == b"FROM a\n"
    # As dockerfile_path joins a context and a dockerfile: leading '/' and './' are fine.
    assert read(repo.clone_url, tip, "/docker/./build/Dockerfile") == b"FROM b\n"


def test_a_missing_path_is_path_not_found(repo: Repo) -> None:
    old, _ = _history(repo)
    for path in ("nope/Dockerfile", "added.txt", "dockerfile"):  # added.txt: only at the tip
        with pytest.raises(GitFileError, match=r"no such file") as info:
            read(repo.clone_url, old, path)
        assert info.value.reason == "PathNotFound"
        assert old in str(info.value)
        assert repo.clone_url in str(info.value)


@pytest.mark.parametrize("path", ["docker", "docker/build"])
def test_a_directory_is_not_a_file(repo: Repo, path: str) -> None:
    old, _ = _history(repo)
    with pytest.raises(GitFileError, match=rf"^{path} at commit {old} .*: a directory, not a file"):
        read(repo.clone_url, old, path)


def test_a_symbolic_link_is_not_a_file(repo: Repo) -> None:
    base = repo.commit("main", {"docker/Dockerfile": b"FROM real\n"}, "real")
    _fast_import(
        repo,
        b"commit refs/heads/main\ncommitter Test <t@example.invalid> 1700000000 +0000\n"
        b"data 5\nlink\nfrom " + base.encode() + b"\n"
        b"M 120000 inline Dockerfile\ndata 17\ndocker/Dockerfile\n",
    )
    link_commit = repo.heads()["refs/heads/main"]
    with pytest.raises(GitFileError, match="a symbolic link to 'docker/Dockerfile'") as info:
        read(repo.clone_url, link_commit, "Dockerfile")
    assert info.value.reason == "NotAFile"


@pytest.mark.parametrize("ref", [None, "refs/heads/main"])
def test_an_unknown_commit_is_commit_not_found(repo: Repo, ref: str | None) -> None:
    _history(repo)
    unknown = "0123456789abcdef0123456789abcdef01234567"
    with pytest.raises(GitFileError, match=f"commit {unknown} not found in") as info:
        read(repo.clone_url, unknown, "Dockerfile", ref=ref)
    assert info.value.reason == "CommitNotFound"


def test_a_missing_repository_is_not_found(git_server: GitServer) -> None:
    url = f"{git_server.url}/acme/{_name()}.git"
    with pytest.raises(SourceUnreachable, match="repository not found") as info:
        read(url, "a" * 40, "Dockerfile")
    assert info.value.reason == "NotFound"


# --- private repositories and the token -------------------------------------------------


def test_private_repository_with_the_right_token(git_server: GitServer) -> None:
    private = git_server.create_repo(
        "acme", _name(), private_token=TOKEN, private_username=USERNAME
    )
    private.configure("uploadpack.allowFilter", "true")  # the blob comes in a lazy fetch
    old, _ = _history(private)
    content = read(private.clone_url, old, "Dockerfile", token=TOKEN, username=USERNAME)
    assert content == CRLF_DOCKERFILE


@pytest.mark.parametrize(
    ("token", "username"),
    [(None, None), ("wrong-token", USERNAME), (TOKEN, "x-access-token")],
    ids=["no-token", "wrong-token", "wrong-username"],
)
def test_private_repository_without_good_credentials(
    git_server: GitServer, token: str | None, username: str | None
) -> None:
    private = git_server.create_repo(
        "acme", _name(), private_token=TOKEN, private_username=USERNAME
    )
    old, _ = _history(private)
    with pytest.raises(SourceUnreachable, match="authentication failed") as info:
        read(private.clone_url, old, "Dockerfile", token=token, username=username)
    assert info.value.reason == "AuthenticationFailed"


def test_the_token_never_reaches_argv_or_the_error(
    git_server: GitServer, spawned: list[dict[str, Any]]
) -> None:
    private = git_server.create_repo("acme", _name(), private_token=TOKEN)
    old, _ = _history(private)
    read(private.clone_url, old, "Dockerfile", token=TOKEN, username=USERNAME)
    with pytest.raises(SourceUnreachable) as info:
        read(private.clone_url, old, "Dockerfile", token=TOKEN + "-revoked", username=USERNAME)

    encoded = base64.b64encode(f"{USERNAME}:{TOKEN}".encode()).decode()
    for text in (str(info.value), repr(info.value), info.value.url):
        assert TOKEN not in text
        assert encoded not in text
    assert spawned
    for call in spawned:
        assert not any(TOKEN in arg or "Authorization" in arg for arg in call["argv"])
        assert "credential.helper=" in call["argv"]
        assert not any(TOKEN in value for value in call["env"].values())
        assert call["env"]["GIT_TERMINAL_PROMPT"] == "0"


# --- servers that will not send a commit by id -------------------------------------------


def test_protocol_v2_fetches_by_id_even_without_allow_reachable_sha1_in_want(
    repo: Repo, spawned: list[dict[str, Any]]
) -> None:
    repo.configure("uploadpack.allowReachableSHA1InWant", "false")
    old, _ = _history(repo)
    assert read(repo.clone_url, old, "Dockerfile", ref="refs/heads/main") == CRLF_DOCKERFILE
    assert _fetched_refs(spawned) == []


@pytest.fixture
def refusing(v0_server: GitServer) -> Repo:
    """A protocol v0 repository that sends only what it advertises (ref tips)."""
    repo = v0_server.create_repo("acme", _name())
    repo.configure("uploadpack.allowReachableSHA1InWant", "false")
    return repo


@pytest.mark.parametrize("allow_filter", [True, False], ids=["filtered", "unfiltered"])
def test_a_server_refusing_commit_ids_is_read_through_the_ref(
    refusing: Repo, allow_filter: bool, spawned: list[dict[str, Any]]
) -> None:
    refusing.configure("uploadpack.allowFilter", str(allow_filter).lower())
    old, tip = _history(refusing)

    assert read(refusing.clone_url, old, "Dockerfile", ref="refs/heads/main") == CRLF_DOCKERFILE
    assert _fetched_refs(spawned) == ["refs/heads/main", "refs/heads/main"]  # depth 1, then 10
    spawned.clear()
    # The tip is advertised: fetched by id; its blob too, unless the blob is left for a lazy
    # fetch (filtered), which this server refuses: then through the ref at depth 1.
    assert read(refusing.clone_url, tip, "blob.bin", ref="refs/heads/main") == b"changed\n"
    assert _fetched_refs(spawned) == (["refs/heads/main"] if allow_filter else [])


def test_a_refused_commit_without_a_ref_is_commit_not_found(refusing: Repo) -> None:
    old, _ = _history(refusing)
    with pytest.raises(GitFileError, match="no branch or tag was given") as info:
        read(refusing.clone_url, old, "Dockerfile")
    assert info.value.reason == "CommitNotFound"


def test_a_refused_commit_deeper_than_50_is_commit_not_found(
    refusing: Repo, spawned: list[dict[str, Any]]
) -> None:
    old, _ = _history(refusing)
    _add_commits(refusing, 50)
    with pytest.raises(GitFileError, match="not among the newest 50 commits of refs/heads/main"):
        read(refusing.clone_url, old, "Dockerfile", ref="refs/heads/main")
    assert _fetched_refs(spawned) == ["refs/heads/main"] * 3


def test_a_refused_commit_on_a_deleted_ref_is_commit_not_found(refusing: Repo) -> None:
    old, _ = _history(refusing)
    refusing.commit("release", {"x": "1"}, "on a branch", base=old)
    refusing.delete_ref("refs/heads/release")
    with pytest.raises(GitFileError, match="refs/heads/release no longer exists") as info:
        read(refusing.clone_url, old, "Dockerfile", ref="refs/heads/release")
    assert info.value.reason == "CommitNotFound"


def test_a_tag_is_a_ref_to_fall_back_on(refusing: Repo) -> None:
    old, _ = _history(refusing)
    refusing.tag("v1.0.0", old, annotated=True)
    assert read(refusing.clone_url, old, "Dockerfile", ref="refs/tags/v1.0.0") == CRLF_DOCKERFILE


# --- timeouts, bad input ----------------------------------------------------------------


def test_a_server_that_never_answers_times_out(
    silent_port: int, spawned: list[dict[str, Any]]
) -> None:
    url = f"http://127.0.0.1:{silent_port}/acme/app.git"
    with pytest.raises(SourceUnreachable, match=r"timed out after 1\.5s") as info:
        read(url, "a" * 40, "Dockerfile", token=TOKEN, username=USERNAME, timeout=1.5)
    assert info.value.reason == "Timeout"
    assert TOKEN not in str(info.value)
    fetch = next(call for call in spawned if "fetch" in call["argv"])
    assert group_gone(fetch["pid"])  # git and git-remote-http were killed


@pytest.mark.parametrize(
    ("commit", "path", "ref", "problem"),
    [
        ("main", "Dockerfile", None, "full commit id"),
        ("--upload-pack=touch", "Dockerfile", None, "full commit id"),
        ("A" * 40, "Dockerfile", None, "full commit id"),
        ("a" * 40, "../Dockerfile", None, "escapes the repository"),
        ("a" * 40, "docker/../../x", None, "escapes the repository"),
        ("a" * 40, "/", None, "repository root"),
        ("a" * 40, "bad\nname", None, "control character"),
        ("a" * 40, "Dockerfile", "main", "refs/heads"),
        ("a" * 40, "Dockerfile", "refs/pull/1/head", "refs/heads"),
        ("a" * 40, "Dockerfile", "refs/heads/-x", "not a safe git ref name"),
    ],
)
def test_bad_input_is_refused_before_git_runs(
    repo: Repo,
    commit: str,
    path: str,
    ref: str | None,
    problem: str,
    spawned: list[dict[str, Any]],
) -> None:
    with pytest.raises(ValueError, match=problem):
        read(repo.clone_url, commit, path, ref=ref)
    assert spawned == []


def test_no_writable_temporary_directory_is_source_unreachable(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spawned: list[dict[str, Any]]
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-dir"))
    with pytest.raises(SourceUnreachable, match="no writable temporary directory"):
        read(repo.clone_url, "a" * 40, "Dockerfile")
    assert spawned == []


def test_a_token_without_a_username_is_refused(repo: Repo) -> None:
    with pytest.raises(ValueError, match="username"):
        read(repo.clone_url, "a" * 40, "Dockerfile", token=TOKEN)


def test_a_url_other_than_plain_http_is_refused(spawned: list[dict[str, Any]]) -> None:
    with pytest.raises(ValueError, match="URL"):
        read("file:///etc", "a" * 40, "Dockerfile")
    assert spawned == []


def test_the_v0_server_never_speaks_protocol_v2(refusing: Repo, tmp_path: Path) -> None:
    refusing.commit("main", {"a": "1"}, "one")
    trace = tmp_path / "trace"
    env = git_env(tmp_path, {"GIT_TRACE_PACKET": str(trace)})
    subprocess.run(
        ["git", "-c", "protocol.version=2", "ls-remote", refusing.clone_url],
        env=env,
        check=True,
        capture_output=True,
    )
    assert "version 2" not in trace.read_text()
    assert "allow-reachable-sha1-in-want" not in trace.read_text()
