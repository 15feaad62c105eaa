"""The fake GitHub API checked against PyGithub itself (it parses every answer) and against
GitHub's documented wire format: routes PyGithub uses beyond autobuild's wrapper included."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from github import Auth, BadCredentialsException, Github, UnknownObjectException

from tests.support.fakegithub import FakeGitHub

TOKEN = "ghp_fakeT0kenValue0123456789abcdefABCDEFG"


@pytest.fixture(params=["", "/api/v3"], ids=["github.com", "enterprise"])
def fake(request: pytest.FixtureRequest) -> Iterator[FakeGitHub]:
    with FakeGitHub(prefix=request.param) as server:
        server.add_user("octo", token=TOKEN)
        yield server


def client(fake: FakeGitHub, token: str | None = TOKEN, **options: object) -> Github:
    return Github(
        auth=Auth.Token(token) if token else None,
        base_url=fake.base_url,
        seconds_between_requests=None,
        seconds_between_writes=None,
        retry=None,
        **options,  # type: ignore[arg-type]
    )


def get(
    fake: FakeGitHub, path: str, authorization: str | None, etag: str | None = None
) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(fake.base_url + path)
    if etag:
        request.add_header("If-None-Match", etag)
    if authorization:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def test_user_and_rate_limit_headers(fake: FakeGitHub) -> None:
    github = client(fake)
    user = github.get_user()
    assert (user.login, user.type) == ("octo", "User")
    remaining, limit = github.rate_limiting
    assert (limit, remaining) == (5000, 4999)
    assert github.rate_limiting_resettime > 0
    assert github.oauth_scopes == ["repo", "admin:repo_hook"]


def test_token_and_bearer_schemes_and_bad_credentials(fake: FakeGitHub) -> None:
    for scheme in ("token", "Bearer"):
        status, headers, body = get(fake, "/user", f"{scheme} {TOKEN}")
        assert (status, json.loads(body)["login"]) == (200, "octo")
        assert headers["X-RateLimit-Resource"] == "core"
    status, headers, body = get(fake, "/user", "token nope")
    assert status == 401
    assert json.loads(body)["message"] == "Bad credentials"
    assert "X-RateLimit-Remaining" in headers
    assert get(fake, "/user", None)[0] == 401
    with pytest.raises(BadCredentialsException):
        _ = client(fake, "nope").get_user().login


def test_repos_pagination_follows_link_headers(fake: FakeGitHub) -> None:
    for number in range(7):
        fake.add_repo(f"octo/r{number}")
    github = client(fake, per_page=3)
    repos = github.get_user().get_repos()
    assert repos.totalCount == 7  # read from the rel="last" link
    assert [r.name for r in repos] == [f"r{n}" for n in range(7)]
    status, headers, _ = get(fake, "/user/repos?per_page=3&page=2", f"token {TOKEN}")
    assert status == 200
    links = dict(
        (part.split("; ")[1], part.split("; ")[0].strip("<>"))
        for part in headers["Link"].split(", ")
    )
    assert set(links) == {'rel="prev"', 'rel="first"', 'rel="next"', 'rel="last"'}
    assert links['rel="last"'] == f"{fake.base_url}/user/repos?per_page=3&page=3"


def test_private_repositories_are_hidden(fake: FakeGitHub) -> None:
    fake.add_repo("other/secret", private=True)
    with pytest.raises(UnknownObjectException):
        client(fake).get_repo("other/secret")
    with pytest.raises(UnknownObjectException):
        client(fake, None).get_repo("other/secret")


def test_conditional_requests_answer_304(fake: FakeGitHub) -> None:
    fake.add_repo("octo/app", description="before")
    repo = client(fake).get_repo("octo/app")
    assert repo.etag
    assert repo.update() is False  # 304: nothing changed
    fake.repos["octo/app"].description = "after"
    assert repo.update() is True
    assert repo.description == "after"
    assert [r.status for r in fake.requests_to("GET", "/repos/octo/app")] == [200, 304, 200]


def test_a_304_costs_nothing_when_authenticated(fake: FakeGitHub) -> None:
    fake.add_repo("octo/app")
    for authorization, costs in ((f"token {TOKEN}", 0), (None, 1)):
        status, headers, _ = get(fake, "/repos/octo/app", authorization)
        assert status == 200
        before = int(headers["X-RateLimit-Remaining"])
        status, headers, body = get(fake, "/repos/octo/app", authorization, headers["ETag"])
        assert (status, body) == (304, "")
        assert int(headers["X-RateLimit-Remaining"]) == before - costs
    recorded = fake.requests_to("GET", "/repos/octo/app")
    assert [(r.status, r.if_none_match is not None) for r in recorded] == [
        (200, False),
        (304, True),
        (200, False),
        (304, True),
    ]


def test_a_delivery_changes_the_hook_and_its_etag(fake: FakeGitHub) -> None:
    repo = fake.add_repo("octo/app")
    repo.add_hook(7, "https://h/1")
    hook = client(fake).get_repo("octo/app").get_hook(7)
    assert hook.last_response.code == 200
    repo.set_hook_last_response(7, 502, "failed", "Invalid HTTP Response: 502")
    assert hook.update() is True
    assert (hook.last_response.code, hook.last_response.status) == (502, "failed")
    assert hook.last_response.message == "Invalid HTTP Response: 502"
    assert hook.update() is False


def test_hooks_commits_contents_and_statuses_parse(fake: FakeGitHub) -> None:
    repo_state = fake.add_repo("octo/app")
    sha = repo_state.add_commit({"Dockerfile": b"FROM scratch\n", "sub/x": b"x"})
    repo = client(fake).get_repo("octo/app")

    hook = repo.create_hook("web", {"url": "https://h/1", "content_type": "json", "secret": "s"})
    assert (hook.name, hook.events, hook.active) == ("web", ["push"], True)
    assert hook.config["secret"] == "********"
    assert hook.last_response.status == "unused"
    fetched = repo.get_hook(hook.id)
    assert fetched.config["url"] == "https://h/1"
    fetched.edit("web", {"url": "https://h/2"}, add_events=["create"])
    assert fetched.events == ["push", "create"]

    commit = repo.get_commit(sha)
    assert (commit.sha, [f.filename for f in commit.files]) == (sha, ["Dockerfile", "sub/x"])
    status = commit.create_status("success", "https://ci/1", "done", "autobuild/a:b")
    assert (status.state, status.target_url, status.context) == (
        "success",
        "https://ci/1",
        "autobuild/a:b",
    )

    listing = repo.get_contents("", ref=sha)
    assert isinstance(listing, list)
    assert sorted((c.type, c.path) for c in listing) == [("dir", "sub"), ("file", "Dockerfile")]
    file = repo.get_contents("Dockerfile", ref="main")
    assert not isinstance(file, list)
    assert file.decoded_content == b"FROM scratch\n"
    # The blob id is git's own.
    git = subprocess.run(
        ["git", "hash-object", "--stdin"], input=b"FROM scratch\n", capture_output=True, check=True
    )
    assert file.sha == git.stdout.decode().strip()

    hook.delete()
    assert list(repo.get_hooks()) == []
