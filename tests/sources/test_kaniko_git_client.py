"""Where Kaniko's git client sends a build's credentials: go-git, at the version Kaniko pins,
cloning as Kaniko's git build context does (tests/support/gogit.py).

These tests pin what autobuild works around (issue 17, items 9 and 10), so that a Kaniko bump
that changes it is noticed: go-git follows a redirect and then sends the Basic auth to the new
host (Go's net/http already re-sends it on the redirect itself to the same host name on another
port), and it clones submodules with the same auth, to whatever host .gitmodules names. What
autobuild does about it: no submodules with credentials (tests/unit/test_job.py), and no build
with credentials from a URL that redirects (tests/k8s/test_hostile_git.py).
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gitserver import GitServer, git_env
from tests.support.gogit import clone
from tests.support.hostilegit import COMMIT, RecordingGitServer, RedirectServer

USERNAME = "x-access-token"
TOKEN = "kaniko-clone-t0ken"
BASIC = "Basic " + base64.b64encode(f"{USERNAME}:{TOKEN}".encode()).decode()


@pytest.fixture
def other_host() -> Iterator[RecordingGitServer]:
    with RecordingGitServer(host="127.0.0.2") as server:
        yield server


def test_go_git_sends_the_token_to_the_host_a_redirect_names(
    other_host: RecordingGitServer,
) -> None:
    with RedirectServer(other_host.url) as allowed:
        clone(f"{allowed.url}/acme/app.git", USERNAME, TOKEN)
    assert allowed.requests[0].authorization == BASIC
    # net/http drops it on the redirect to another host; go-git then moves its endpoint there
    # and sends it with git-upload-pack.
    posts = [r for r in other_host.requests if r.method == "POST"]
    assert posts, other_host.requests
    assert posts[0].path == "/acme/app.git/git-upload-pack"
    assert posts[0].authorization == BASIC


def test_go_git_sends_the_token_to_another_port_of_the_same_host() -> None:
    with RecordingGitServer() as other_port, RedirectServer(other_port.url) as allowed:
        clone(f"{allowed.url}/acme/app.git", USERNAME, TOKEN)
    assert [r.authorization for r in other_port.requests if r.method == "GET"] == [BASIC]


def test_go_git_clones_submodules_on_other_hosts_with_the_token(
    other_host: RecordingGitServer, tmp_path: Path
) -> None:
    with GitServer(tmp_path / "git") as server:
        repo = server.create_repo("acme", "app", private_token=TOKEN)
        work = tmp_path / "work"
        work.mkdir()
        env = git_env(tmp_path)

        def git(*args: str) -> None:
            argv = ["git", "-c", "init.defaultBranch=main", *args]
            subprocess.run(argv, cwd=work, env=env, check=True, capture_output=True)

        git("init", "-q")
        (work / ".gitmodules").write_text(
            f'[submodule "lib"]\n\tpath = lib\n\turl = {other_host.url}/evil/lib.git\n'
        )
        (work / "Dockerfile").write_text("FROM scratch\n")
        git("add", ".gitmodules", "Dockerfile")
        git("update-index", "--add", "--cacheinfo", f"160000,{COMMIT},lib")
        git("commit", "-qm", "a submodule elsewhere")
        git("push", "-q", repo.clone_url.replace("://", f"://u:{TOKEN}@"), "HEAD:refs/heads/main")

        clone(repo.clone_url, USERNAME, TOKEN)  # no recursion: the other host hears nothing
        assert other_host.requests == []
        clone(repo.clone_url, USERNAME, TOKEN, recurse_submodules=True)
    assert other_host.requests, "go-git did not fetch the submodule"
    assert {r.authorization for r in other_host.requests} == {BASIC}
