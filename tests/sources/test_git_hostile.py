"""A repository URL is anyone's to choose: what its server answers must not exhaust the
operator (issue 17, item 7), and a redirect must not carry the token to another host (item 9).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from autobuild.sources import git as gitsource
from autobuild.sources.git import SourceTooLarge, SourceUnreachable, ls_remote, read_file_at_commit
from tests.support.hostilegit import COMMIT, ManyRefsServer, RecordingGitServer, RedirectServer

TOKEN = "ghp_S3cretTokenValue0123456789abcdefABCD"
USERNAME = "x-access-token"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def million_refs() -> Iterator[ManyRefsServer]:
    with ManyRefsServer(1_000_000) as server:
        yield server


def _measured_ls_remote(url: str) -> dict[str, Any]:
    """ls_remote in a fresh interpreter: its outcome and the peak RSS of it and of git."""
    script = textwrap.dedent(
        f"""
        import asyncio, json, resource
        from autobuild.sources.git import SourceUnreachable, ls_remote
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            refs = asyncio.run(ls_remote({url!r}, timeout=120))
            outcome = {{"refs": len(refs)}}
        except SourceUnreachable as e:
            outcome = {{"reason": e.reason, "message": str(e)}}
        outcome["before_kib"] = before
        outcome["self_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        outcome["git_kib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(json.dumps(outcome))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- item 7: a server that advertises too much ---------------------------------------------


def test_a_million_refs_is_source_too_large_with_bounded_memory(
    million_refs: ManyRefsServer,
) -> None:
    """Today's ls-remote read all 62 MB git printed: the operator at 492 MiB, git at 327 MiB."""
    outcome = _measured_ls_remote(f"{million_refs.url}/acme/app.git")
    assert outcome.get("reason") == "SourceTooLarge", outcome
    assert "20,000" in outcome["message"]
    # The interpreter grows by what it holds of the answer: a few MiB at most.
    assert (outcome["self_kib"] - outcome["before_kib"]) * 1024 < 40 * MIB, outcome
    # git (and git-remote-http) stop at their 32 MiB heap; text and libraries come on top.
    assert outcome["git_kib"] * 1024 < gitsource.GIT_MEMORY_BYTES + 32 * MIB, outcome


def test_more_refs_than_the_cap_is_source_too_large() -> None:
    """Fits git's memory, but more branches and tags than the operator reads."""
    with ManyRefsServer(gitsource.MAX_REFS + 10) as server, pytest.raises(SourceTooLarge) as info:
        asyncio.run(ls_remote(f"{server.url}/acme/app.git", timeout=60))
    assert info.value.reason == "SourceTooLarge"
    assert isinstance(info.value, SourceUnreachable)  # callers that catch it still do


def test_refs_up_to_the_cap_are_read_and_only_kept_ones_held() -> None:
    with ManyRefsServer(gitsource.MAX_REFS - 10) as server:
        url = f"{server.url}/acme/app.git"
        everything = asyncio.run(ls_remote(url, timeout=60))
        kept = asyncio.run(ls_remote(url, timeout=60, keep=lambda ref: ref == "refs/heads/main"))
    assert len(everything) == gitsource.MAX_REFS - 9  # the tags and main
    assert kept == {"refs/heads/main": COMMIT}


def test_a_listing_past_its_byte_cap_stops() -> None:
    """Few refs, long names: the byte cap stops them (a pkt-line may hold 65,516 bytes)."""
    listing = gitsource._Listing(None)
    line = f"{COMMIT}\trefs/heads/{'x' * 60_000}\n".encode()

    def feed() -> None:
        for _ in range(gitsource.MAX_LISTING_BYTES // len(line) + 2):
            listing.add(line)

    with pytest.raises(gitsource._ListingTooLargeError):
        feed()
    assert listing.count < 200


# --- item 9: redirects never carry the token -----------------------------------------------


@pytest.fixture
def other_host() -> Iterator[RecordingGitServer]:
    """Where the redirect points: another host to git (127.0.0.2)."""
    with RecordingGitServer(host="127.0.0.2") as server:
        yield server


@pytest.fixture
def same_host_other_port() -> Iterator[RecordingGitServer]:
    """Where the redirect points: the same host name on another port (Go's net/http and
    git's default both re-send credentials there)."""
    with RecordingGitServer(host="127.0.0.1") as server:
        yield server


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize("target", ["other_host", "same_host_other_port"])
def test_ls_remote_follows_no_redirect_and_the_token_stays(
    request: pytest.FixtureRequest, target: str, status: int
) -> None:
    destination: RecordingGitServer = request.getfixturevalue(target)
    with RedirectServer(destination.url, status=status) as redirecting:
        url = f"{redirecting.url}/acme/app.git"
        with pytest.raises(SourceUnreachable) as info:
            asyncio.run(ls_remote(url, token=TOKEN, username=USERNAME, timeout=20))
        assert redirecting.requests, "git never asked the allowed host"
    assert destination.requests == []  # nothing at all reached the other host
    assert f"redirects (HTTP {status})" in str(info.value)
    assert "URL it redirects to" in str(info.value)
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize("target", ["other_host", "same_host_other_port"])
def test_the_file_fetch_follows_no_redirect_either(
    request: pytest.FixtureRequest, target: str
) -> None:
    destination: RecordingGitServer = request.getfixturevalue(target)
    with RedirectServer(destination.url) as redirecting:
        reading = read_file_at_commit(
            f"{redirecting.url}/acme/app.git",
            COMMIT,
            "Dockerfile",
            ref="refs/heads/main",
            token=TOKEN,
            username=USERNAME,
            timeout=20,
        )
        with pytest.raises(SourceUnreachable, match="redirects"):
            asyncio.run(reading)
    assert destination.requests == []
