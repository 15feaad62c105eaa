"""``autobuild.sources.github.GitHub`` against the fake GitHub API (real HTTP, real PyGithub)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from autobuild.api.conditions import Reason
from autobuild.planning.github import CommitState
from autobuild.sources.github import (
    ClientOptions,
    GitHub,
    GitHubError,
    HookRefresh,
)
from tests.support.fakegithub import HOOK_LIMIT, FakeGitHub, FakeRepo

TOKEN = "ghp_0wnerT0kenValue0123456789abcdefABCD"
WRITER_TOKEN = "ghp_wr1terT0kenValue0123456789abcdefABC"
HOOK = "https://autobuild.example.com/hooks/github?automatedbuild=ci/app"
# No throttle in tests: the throttle is PyGithub's own (seconds between requests and writes).
FAST = ClientOptions(seconds_between_requests=0, seconds_between_writes=0, max_wait=5)


@pytest.fixture(params=["", "/api/v3"], ids=["github.com", "enterprise"])
def fake(request: pytest.FixtureRequest) -> Iterator[FakeGitHub]:
    with FakeGitHub(prefix=request.param) as server:
        server.add_user("octo", token=TOKEN)
        server.add_user("writer", token=WRITER_TOKEN)
        yield server


@pytest.fixture
def repo(fake: FakeGitHub) -> FakeRepo:
    return fake.add_repo("octo/app", description="The app", writers={"writer"})


def call(fake: FakeGitHub, coroutine: Any, options: ClientOptions = FAST) -> Any:
    """Run one call of a fresh client (the coroutine factory takes the client)."""

    async def run() -> Any:
        github = GitHub(fake.base_url, options)
        try:
            return await coroutine(github)
        finally:
            github.close()

    return asyncio.run(run())


def failure(fake: FakeGitHub, coroutine: Any, options: ClientOptions = FAST) -> GitHubError:
    with pytest.raises(GitHubError) as caught:
        call(fake, coroutine, options)
    for token in (TOKEN, WRITER_TOKEN):
        assert token not in str(caught.value)
    return caught.value


def test_repositories_are_listed_across_pages(fake: FakeGitHub) -> None:
    for number in range(5):
        fake.add_repo(f"octo/r{number}", private=number % 2 == 1, description=f"repo {number}")
    fake.add_repo("other/hidden", private=True)
    fake.add_repo("other/shared", readers={"octo"}, default_branch="trunk")

    found = call(fake, lambda gh: gh.list_repositories(TOKEN), ClientOptions(per_page=2))

    assert [r.full_name for r in found] == [f"octo/r{n}" for n in range(5)] + ["other/shared"]
    assert [r.private for r in found[:5]] == [False, True, False, True, False]
    shared = found[-1]
    assert (shared.admin, shared.default_branch) == (False, "trunk")
    assert found[0].admin is True
    assert found[0].description == "repo 0"
    assert found[0].clone_url.endswith("/octo/r0.git")
    # Three pages of two, following the Link header; no extra request per repository.
    listed = fake.requests_to("GET", "/user/repos")
    assert [r.query.get("page", "1") for r in listed] == ["1", "2", "3"]
    assert all(r.query["per_page"] == "2" for r in listed)
    assert len(fake.requests) == 3


def test_a_refused_token_is_authentication_failed(fake: FakeGitHub) -> None:
    error = failure(fake, lambda gh: gh.list_repositories("ghp_revoked"))
    assert error.reason == Reason.AUTHENTICATION_FAILED
    assert error.status == 401
    assert not error.retryable


def test_a_private_repository_is_invisible_to_others(fake: FakeGitHub) -> None:
    fake.add_repo("other/secret", private=True)
    error = failure(fake, lambda gh: gh.get_repository(TOKEN, "other/secret"))
    assert error.reason == Reason.NOT_FOUND


def test_public_repository_without_token(fake: FakeGitHub, repo: FakeRepo) -> None:
    found = call(fake, lambda gh: gh.get_repository(None, "octo/app"))
    assert (found.full_name, found.description, found.admin) == ("octo/app", "The app", False)
    assert fake.requests[-1].login is None


def test_files_are_read_as_they_were_at_the_commit(fake: FakeGitHub, repo: FakeRepo) -> None:
    old = repo.add_commit({"Dockerfile": b"FROM scratch\n", "docker/Dockerfile": b"old\r\n"})
    content = bytes(range(256)) * 10  # not text, longer than one base64 line
    new = repo.add_commit({"Dockerfile": b"FROM alpine\n", "docker/Dockerfile": content})

    at_old = call(fake, lambda gh: gh.read_file(TOKEN, "octo/app", "docker/Dockerfile", old))
    at_new = call(fake, lambda gh: gh.read_file(TOKEN, "octo/app", "docker/Dockerfile", new))

    assert (at_old.content, at_old.path, at_old.commit) == (b"old\r\n", "docker/Dockerfile", old)
    assert at_new.content == content
    assert fake.requests_to("GET", "/contents/docker/Dockerfile")[0].query == {"ref": old}


def test_missing_file_and_directory(fake: FakeGitHub, repo: FakeRepo) -> None:
    sha = repo.add_commit({"docker/Dockerfile": b"FROM scratch\n"})
    missing = failure(fake, lambda gh: gh.read_file(TOKEN, "octo/app", "Dockerfile", sha))
    assert missing.reason == Reason.NOT_FOUND
    assert "Dockerfile" in str(missing)
    directory = failure(fake, lambda gh: gh.read_file(TOKEN, "octo/app", "docker", sha))
    assert directory.reason == Reason.NOT_A_FILE


def test_hook_is_created_then_updated_and_other_hooks_are_untouched(
    fake: FakeGitHub, repo: FakeRepo
) -> None:
    other = call(fake, lambda gh: gh.ensure_hook(TOKEN, "octo/app", "https://ci.example/x", "o"))

    first = call(fake, lambda gh: gh.ensure_hook(TOKEN, "octo/app", HOOK, "s3cret-1"))
    second = call(fake, lambda gh: gh.ensure_hook(TOKEN, "octo/app", HOOK, "s3cret-2"))

    assert first.created
    assert not second.created
    assert first.id == second.id != other.id
    assert (second.url, second.active, second.last_response_status) == (HOOK, True, "unused")
    hook = repo.hooks[second.id]
    assert hook["events"] == ["push"]
    assert hook["config"]["content_type"] == "json"
    assert repo.hook_secrets == {other.id: "o", second.id: "s3cret-2"}
    assert repo.hooks[other.id]["config"]["url"] == "https://ci.example/x"
    assert len(fake.requests_to("PATCH", f"/hooks/{other.id}")) == 0


def test_hook_needs_admin_rights(fake: FakeGitHub, repo: FakeRepo) -> None:
    error = failure(fake, lambda gh: gh.ensure_hook(WRITER_TOKEN, "octo/app", HOOK, "s"))
    assert error.reason == Reason.WEBHOOK_FORBIDDEN
    assert "admin" in str(error)
    assert not fake.requests_to("GET", "/hooks")
    assert repo.hooks == {}


def test_hook_limit_is_a_clear_error(fake: FakeGitHub, repo: FakeRepo) -> None:
    for number in range(HOOK_LIMIT):
        call(fake, lambda gh, n=number: gh.ensure_hook(TOKEN, "octo/app", f"https://h{n}", "s"))
    error = failure(fake, lambda gh: gh.ensure_hook(TOKEN, "octo/app", HOOK, "s"))
    assert error.reason == Reason.WEBHOOK_LIMIT_REACHED
    assert error.status == 422
    assert "20 push webhooks" in str(error)
    assert len(repo.hooks) == HOOK_LIMIT


def test_delete_removes_exactly_that_hook(fake: FakeGitHub, repo: FakeRepo) -> None:
    mine = call(fake, lambda gh: gh.ensure_hook(TOKEN, "octo/app", HOOK, "s"))
    theirs = call(fake, lambda gh: gh.ensure_hook(TOKEN, "octo/app", "https://ci.example/", "t"))

    wrong_url = call(fake, lambda gh: gh.delete_hook(TOKEN, "octo/app", theirs.id, url=HOOK))
    deleted = call(fake, lambda gh: gh.delete_hook(TOKEN, "octo/app", mine.id, url=HOOK))
    again = call(fake, lambda gh: gh.delete_hook(TOKEN, "octo/app", mine.id, url=HOOK))

    assert (wrong_url, deleted, again) == (False, True, False)
    assert list(repo.hooks) == [theirs.id]


def test_status_is_one_post(fake: FakeGitHub, repo: FakeRepo) -> None:
    sha = repo.add_commit({"Dockerfile": b"FROM scratch\n"})
    long_text = "Build failed after 1m 2s: " + "x" * 200

    call(
        fake,
        lambda gh: gh.post_status(
            WRITER_TOKEN,
            "octo/app",
            sha,
            CommitState.FAILURE,
            "autobuild/acme/app:latest",
            long_text,
            "https://dash.example/ci/app/b1",
        ),
    )

    assert [(r.method, r.status) for r in fake.requests] == [("POST", 201)]
    (status,) = repo.statuses
    assert status["state"] == "failure"
    assert status["context"] == "autobuild/acme/app:latest"
    assert status["target_url"] == "https://dash.example/ci/app/b1"
    assert len(status["description"]) == 140
    assert status["description"].startswith("Build failed after 1m 2s: xxx")


def test_status_errors(fake: FakeGitHub, repo: FakeRepo) -> None:
    sha = repo.add_commit({"Dockerfile": b"FROM scratch\n"})
    fake.add_user("reader", token="ghp_reader")
    repo.roles["reader"] = "read"

    def post(token: str, commit: str) -> Any:
        return lambda gh: gh.post_status(token, "octo/app", commit, CommitState.PENDING, "c", "d")

    assert failure(fake, post("ghp_reader", sha)).reason == Reason.STATUS_FORBIDDEN
    unknown = failure(fake, post(TOKEN, "f" * 40))
    assert (unknown.reason, unknown.status) == (Reason.REJECTED, 422)
    assert failure(fake, post(TOKEN, "main")).reason == Reason.REJECTED
    assert repo.statuses == []


def test_secondary_rate_limit_and_429_are_waited_out(fake: FakeGitHub, repo: FakeRepo) -> None:
    sha = repo.add_commit({"Dockerfile": b"FROM scratch\n"})
    fake.fail_next("secondary", wait=1)
    fake.fail_next("too-many", wait=1)
    fake.fail_next("server-error")

    call(fake, lambda gh: gh.post_status(TOKEN, "octo/app", sha, CommitState.PENDING, "c", "d"))

    assert [r.status for r in fake.requests] == [403, 429, 502, 201]
    assert len(repo.statuses) == 1


def test_primary_rate_limit_far_away_is_not_slept_through(fake: FakeGitHub, repo: FakeRepo) -> None:
    fake.fail_next("primary", wait=3600)
    error = failure(fake, lambda gh: gh.list_repositories(TOKEN))
    assert error.reason == Reason.RATE_LIMITED
    assert error.retryable
    assert error.retry_after is not None
    assert error.retry_after > 3000
    assert len(fake.requests) == 1


def test_server_errors_until_retries_run_out_are_unreachable(
    fake: FakeGitHub, repo: FakeRepo
) -> None:
    fake.fail_next("server-error", count=3)
    error = failure(fake, lambda gh: gh.list_repositories(TOKEN), ClientOptions(retries=2))
    assert error.reason == Reason.UNREACHABLE
    assert error.retryable
    assert len(fake.requests) == 3


def test_a_closed_port_is_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def run() -> None:
        github = GitHub(f"http://127.0.0.1:{port}", ClientOptions(retries=0, timeout=5))
        try:
            await github.list_repositories(TOKEN)
        finally:
            github.close()

    with pytest.raises(GitHubError) as caught:
        asyncio.run(run())
    assert caught.value.reason == Reason.UNREACHABLE
    assert f"127.0.0.1:{port}" in str(caught.value)


def test_calls_do_not_block_the_event_loop(fake: FakeGitHub, repo: FakeRepo) -> None:
    async def run() -> int:
        github = GitHub(fake.base_url, FAST)
        fake.pause()
        try:
            pending = asyncio.ensure_future(github.list_repositories(TOKEN))
            ticks = 0
            # The loop keeps running while GitHub holds the request.
            while not fake.held:
                await asyncio.sleep(0.01)
                ticks += 1
            assert not pending.done()
            fake.resume()
            await pending
            return ticks
        finally:
            fake.resume()
            github.close()

    assert asyncio.run(run()) >= 1


def test_one_client_per_token_is_reused(fake: FakeGitHub, repo: FakeRepo) -> None:
    async def run(github: GitHub) -> None:
        await asyncio.gather(*(github.get_repository(TOKEN, "octo/app") for _ in range(4)))
        await github.get_repository(WRITER_TOKEN, "octo/app")

    github = GitHub(fake.base_url, FAST)
    try:
        asyncio.run(run(github))
        assert len(github._clients) == 2
    finally:
        github.close()
    assert [r.login for r in fake.requests].count("octo") == 4


def test_hook_created_concurrently_is_updated_not_duplicated(
    fake: FakeGitHub, repo: FakeRepo
) -> None:
    # Another replica creates the same hook between our listing and our POST.
    fake.before_next("POST", "/hooks", lambda: repo.add_hook(900, HOOK, "theirs"))

    state = call(fake, lambda gh: gh.ensure_hook(TOKEN, "octo/app", HOOK, "mine"))

    assert (state.id, state.created) == (900, False)
    assert (state.last_response_code, state.last_response_status) == (200, "active")
    assert repo.hook_secrets == {900: "mine"}
    assert [r.status for r in fake.requests_to("POST", "/hooks")] == [422]


def test_hook_secret_and_token_stay_out_of_debug_logs(
    fake: FakeGitHub, repo: FakeRepo, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # As a verbose operator would: PyGithub's own logger at DEBUG logs request bodies.
    caplog.set_level(logging.DEBUG, logger="github")
    call(fake, lambda gh: gh.ensure_hook(TOKEN, "octo/app", HOOK, "hook-s3cret-value"))
    assert "POST" in caplog.text
    assert repo.hook_secrets
    assert "hook-s3cret-value" not in caplog.text
    assert TOKEN not in caplog.text


def test_secondary_limits_until_retries_run_out_are_rate_limited(
    fake: FakeGitHub, repo: FakeRepo
) -> None:
    fake.fail_next("too-many", count=2, wait=0)
    error = failure(fake, lambda gh: gh.list_repositories(TOKEN), ClientOptions(retries=1))
    assert error.reason == Reason.RATE_LIMITED
    assert error.retryable
    # GitHub said "now" (Retry-After: 0) twice: come back in a second, not in a busy loop.
    assert error.retry_after == 1
    assert [r.status for r in fake.requests] == [429, 429]


def test_a_busy_token_does_not_take_the_workers_of_others(fake: FakeGitHub, repo: FakeRepo) -> None:
    async def run() -> None:
        # Requests wait in the fake far longer than the test polls: no timeout, no retry.
        options = ClientOptions(seconds_between_requests=0, timeout=300)
        github = GitHub(fake.base_url, options, workers=2)
        fake.pause()
        try:
            busy = [
                asyncio.ensure_future(github.get_repository(TOKEN, "octo/app")) for _ in range(3)
            ]
            await asyncio.sleep(0)
            other = asyncio.ensure_future(github.get_repository(WRITER_TOKEN, "octo/app"))
            # The other token's call reaches GitHub while the busy token's calls queue.
            for _ in range(6000):
                if "writer" in fake.held:
                    break
                await asyncio.sleep(0.01)
            assert sorted(fake.held, key=str) == ["octo", "writer"]
            fake.resume()
            await asyncio.gather(*busy, other)
        finally:
            fake.resume()
            github.close()

    asyncio.run(run())
    assert [r.login for r in fake.requests].count("octo") == 3


def test_hook_state_is_a_free_304_until_a_delivery_changes_it(
    fake: FakeGitHub, repo: FakeRepo
) -> None:
    hook = call(fake, lambda gh: gh.ensure_hook(TOKEN, "octo/app", HOOK, "s"))

    first = call(fake, lambda gh: gh.hook_state(TOKEN, "octo/app", hook.id, url=HOOK))
    unchanged = call(
        fake, lambda gh: gh.hook_state(TOKEN, "octo/app", hook.id, url=HOOK, etag=first.etag)
    )
    repo.set_hook_last_response(hook.id, 502, "failed", "Invalid HTTP Response: 502")
    delivered = call(
        fake, lambda gh: gh.hook_state(TOKEN, "octo/app", hook.id, url=HOOK, etag=first.etag)
    )

    assert first.state is not None
    assert (first.state.id, first.state.url, first.state.active) == (hook.id, HOOK, True)
    assert (first.state.last_response_code, first.state.last_response_status) == (None, "unused")
    assert first.etag
    assert not first.gone
    assert unchanged == HookRefresh(state=None, etag=first.etag, gone=False)
    assert delivered.state is not None
    assert delivered.state.last_response_code == 502
    assert delivered.state.last_response_status == "failed"
    assert delivered.state.last_response_message == "Invalid HTTP Response: 502"
    assert delivered.etag not in (None, first.etag)
    reads = fake.requests_to("GET", f"/hooks/{hook.id}")
    assert [(r.status, r.if_none_match) for r in reads] == [
        (200, None),
        (304, first.etag),
        (200, first.etag),
    ]


def test_hook_state_of_a_deleted_or_repointed_hook_is_gone(
    fake: FakeGitHub, repo: FakeRepo
) -> None:
    hook = call(fake, lambda gh: gh.ensure_hook(TOKEN, "octo/app", HOOK, "s"))
    first = call(fake, lambda gh: gh.hook_state(TOKEN, "octo/app", hook.id, url=HOOK))

    repo.hooks[hook.id]["config"]["url"] = "https://elsewhere.example/hook"
    repointed = call(
        fake, lambda gh: gh.hook_state(TOKEN, "octo/app", hook.id, url=HOOK, etag=first.etag)
    )
    del repo.hooks[hook.id]
    deleted = call(
        fake, lambda gh: gh.hook_state(TOKEN, "octo/app", hook.id, url=HOOK, etag=first.etag)
    )

    assert repointed == HookRefresh(state=None, etag=None, gone=True)
    assert deleted == HookRefresh(state=None, etag=None, gone=True)
    assert [r.status for r in fake.requests_to("GET", f"/hooks/{hook.id}")] == [200, 200, 404]


def test_hook_state_without_admin_rights_is_forbidden(fake: FakeGitHub, repo: FakeRepo) -> None:
    repo.add_hook(900, HOOK)
    error = failure(fake, lambda gh: gh.hook_state(WRITER_TOKEN, "octo/app", 900, url=HOOK))
    # GitHub answers the hook with 404 to non-admins, as if it were deleted: it is not gone.
    assert error.reason == Reason.WEBHOOK_FORBIDDEN
    assert "admin rights" in str(error)
    assert [r.status for r in fake.requests] == [404, 200]


@pytest.mark.parametrize("hook_id", [900, None])
def test_delete_without_admin_rights_is_forbidden_not_gone(
    fake: FakeGitHub, repo: FakeRepo, hook_id: int | None
) -> None:
    repo.add_hook(900, HOOK)
    error = failure(fake, lambda gh: gh.delete_hook(WRITER_TOKEN, "octo/app", hook_id, url=HOOK))
    assert error.reason == Reason.WEBHOOK_FORBIDDEN
    assert list(repo.hooks) == [900]


def test_delete_without_id_finds_the_hook_by_its_url(fake: FakeGitHub, repo: FakeRepo) -> None:
    # The operator created the hook, then crashed before it recorded the id.
    mine = call(fake, lambda gh: gh.ensure_hook(TOKEN, "octo/app", HOOK, "s"))
    theirs = call(fake, lambda gh: gh.ensure_hook(TOKEN, "octo/app", HOOK + "-other", "t"))

    deleted = call(fake, lambda gh: gh.delete_hook(TOKEN, "octo/app", None, url=HOOK))
    again = call(fake, lambda gh: gh.delete_hook(TOKEN, "octo/app", None, url=HOOK))

    assert (deleted, again) == (True, False)
    assert list(repo.hooks) == [theirs.id]
    assert [r.status for r in fake.requests_to("DELETE", "/hooks/" + str(mine.id))] == [204]
    assert fake.requests_to("DELETE", f"/hooks/{theirs.id}") == []


# -- the calls the operator makes, rate-limited and unreachable --------------------------------

HOOK_ID = 900
OperatorCall = Callable[[GitHub], Any]


def operator_calls(sha: str) -> dict[str, OperatorCall]:
    """The operator's calls on octo/app, whose hook HOOK_ID points to HOOK."""
    return {
        "ensure_hook": lambda gh: gh.ensure_hook(TOKEN, "octo/app", HOOK, "s"),
        "post_status": lambda gh: gh.post_status(
            TOKEN, "octo/app", sha, CommitState.PENDING, "c", "d"
        ),
        "delete_hook": lambda gh: gh.delete_hook(TOKEN, "octo/app", HOOK_ID, url=HOOK),
        "hook_state": lambda gh: gh.hook_state(TOKEN, "octo/app", HOOK_ID, url=HOOK),
    }


OPERATOR_CALLS = list(operator_calls("0" * 40))


@pytest.fixture
def sha(repo: FakeRepo) -> str:
    repo.add_hook(HOOK_ID, HOOK, "s")
    return repo.add_commit({"Dockerfile": b"FROM scratch\n"})


@pytest.mark.parametrize("name", OPERATOR_CALLS)
def test_primary_rate_limit_gives_the_seconds_until_reset(
    fake: FakeGitHub, sha: str, name: str
) -> None:
    fake.fail_next("primary", wait=3600)
    asked = time.time()
    error = failure(fake, operator_calls(sha)[name])
    answered = time.time()
    assert (error.reason, error.status) == (Reason.RATE_LIMITED, 403)
    assert error.retryable
    # X-RateLimit-Reset is a whole second, plus one second of margin.
    assert error.retry_after is not None
    assert 3600 - (answered - asked) - 1 <= error.retry_after <= 3600 + 1
    assert "resets in" in str(error)
    assert len(fake.requests) == 1


@pytest.mark.parametrize("kind", ["secondary", "too-many"])
def test_a_long_retry_after_is_returned_not_slept(fake: FakeGitHub, sha: str, kind: str) -> None:
    # urllib3 would cut 3600 s down to its maximum and retry into the same limit.
    fake.fail_next(kind, wait=3600)
    error = failure(fake, operator_calls(sha)["post_status"])
    assert (error.reason, error.retry_after) == (Reason.RATE_LIMITED, 3600)
    assert len(fake.requests) == 1


@pytest.mark.parametrize("name", OPERATOR_CALLS)
def test_short_secondary_limits_are_waited_out_inside_the_call(
    fake: FakeGitHub, repo: FakeRepo, sha: str, name: str
) -> None:
    fake.fail_next("secondary", wait=1)
    fake.fail_next("too-many", wait=1)

    result = call(fake, operator_calls(sha)[name])

    statuses = [r.status for r in fake.requests]
    assert statuses[:2] == [403, 429]
    assert all(status < 400 for status in statuses[2:])
    if name == "post_status":
        assert len(repo.statuses) == 1
    elif name == "delete_hook":
        assert result is True
        assert repo.hooks == {}
    elif name == "hook_state":
        assert result.state.id == HOOK_ID
    else:
        assert (result.id, result.created) == (HOOK_ID, False)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("name", OPERATOR_CALLS)
def test_a_github_that_is_down_is_unreachable(name: str) -> None:
    port = closed_port()

    async def run() -> None:
        github = GitHub(f"http://127.0.0.1:{port}", ClientOptions(retries=1, timeout=5))
        try:
            await operator_calls("a" * 40)[name](github)
        finally:
            github.close()

    with pytest.raises(GitHubError) as caught:
        asyncio.run(run())
    assert caught.value.reason == Reason.UNREACHABLE
    assert caught.value.retryable
    assert caught.value.retry_after is None
    assert f"127.0.0.1:{port}" in str(caught.value)


@pytest.mark.parametrize("name", OPERATOR_CALLS)
def test_a_github_that_does_not_answer_times_out(fake: FakeGitHub, sha: str, name: str) -> None:
    fake.pause()
    try:
        error = failure(
            fake, operator_calls(sha)[name], ClientOptions(retries=0, timeout=1, max_wait=5)
        )
    finally:
        fake.resume()
    assert error.reason == Reason.UNREACHABLE
    assert "did not answer (timed out after 1s)" in str(error)
