"""Git credentials: the username rule, and where a token may be sent (no confused deputy)."""

from __future__ import annotations

import pytest

from autobuild.api.models import Provider
from autobuild.planning.credentials import (
    default_username,
    git_credentials_problem,
    git_username,
)
from autobuild.settings import BuildSettings

HOSTS = "autobuild.dev/git-hosts"


@pytest.mark.parametrize(
    ("provider", "username"),
    [
        (Provider.GITHUB, "x-access-token"),
        (Provider.GIT, "x-access-token"),
        (Provider.GITLAB, "oauth2"),
        (Provider.BITBUCKET, "x-token-auth"),
    ],
)
def test_git_username(provider: Provider, username: str) -> None:
    assert default_username(provider) == username
    assert git_username(provider, {"token": "t"}) == username
    assert git_username(provider, {"token": "t", "username": "gitea-bot"}) == "gitea-bot"
    # The key's presence decides, exactly as the Job's secretKeyRef does.
    assert git_username(provider, {"token": "t", "username": ""}) == ""


@pytest.mark.parametrize(
    ("repo", "annotation", "insecure"),
    [
        ("github.com/acme/app", "github.com", ()),
        ("https://github.com/acme/app.git", "github.com", ()),
        ("GitHub.COM/acme/app", "github.com", ()),
        ("github.com/acme/app", "GITHUB.com", ()),
        ("github.com/acme/app", " gitlab.com , github.com ", ()),
        ("github.com/acme/app", "gitlab.com,,github.com,", ()),
        ("https://ghe.example.com:8443/acme/app", "ghe.example.com", ()),
        ("https://ghe.example.com:8443/acme/app", "ghe.example.com:9999", ()),
        ("gitea.local/acme/app", "*", ()),
        ("gitea.local/acme/app", "github.com, *", ()),
        ("http://127.0.0.1:3000/acme/app.git", "127.0.0.1", ("127.0.0.1",)),
        ("http://127.0.0.1:3000/acme/app.git", "*", ("127.0.0.1:3000",)),
        ("http://Gitea.Local/acme/app", "gitea.local", (" GITEA.local ",)),
    ],
)
def test_credentials_allowed(repo: str, annotation: str, insecure: tuple[str, ...]) -> None:
    assert git_credentials_problem(repo, "link", {HOSTS: annotation}, insecure) is None


@pytest.mark.parametrize(
    ("repo", "annotations", "host", "words"),
    [
        ("github.com/acme/app", {}, "github.com", f"it has no annotation {HOSTS}"),
        (
            "github.com/acme/app",
            {"other": "github.com", "autobuild.dev/git-host": "github.com"},
            "github.com",
            "it has no annotation",
        ),
        ("github.com/acme/app", {HOSTS: ""}, "github.com", "lists no host, not github.com"),
        ("github.com/acme/app", {HOSTS: " , "}, "github.com", "lists no host"),
        (
            "evil.example.com/acme/app",
            {HOSTS: "github.com"},
            "evil.example.com",
            "lists github.com, not evil.example.com",
        ),
        ("git.example.com/a/b", {HOSTS: "example.com"}, "git.example.com", "not git.example.com"),
        ("github.com.evil.io/a/b", {HOSTS: "github.com"}, "github.com.evil.io", "lists github.com"),
        ("https://evil.io:443/a/b", {HOSTS: "evil.io.x, *.io"}, "evil.io", "not evil.io"),
    ],
)
def test_hosts_the_secret_does_not_list(
    repo: str, annotations: dict[str, str], host: str, words: str
) -> None:
    problem = git_credentials_problem(repo, "link", annotations, ("github.com", "evil.io"))
    assert problem is not None
    reason, message = problem
    assert reason == "CredentialsNotAllowed"
    assert words in message
    assert "Secret 'link'" in message
    assert HOSTS in message
    assert f"may not be sent to {host}:" in message


@pytest.mark.parametrize(
    ("repo", "insecure"),
    [
        ("http://127.0.0.1:3000/acme/app.git", ()),
        ("http://127.0.0.1:3000/acme/app.git", ("localhost", "127.0.0.2")),
        ("http://gitea.local/acme/app", ("gitea.local.evil",)),
    ],
)
def test_tokens_never_go_over_plain_http_unless_the_host_is_allowed(
    repo: str, insecure: tuple[str, ...]
) -> None:
    problem = git_credentials_problem(repo, "link", {HOSTS: "*"}, insecure)
    assert problem is not None
    reason, message = problem
    assert reason == "CredentialsNotAllowed"
    assert "plain http://" in message
    assert "AUTOBUILD_INSECURE_GIT_HOSTS" in message
    assert "Secret 'link'" in message


def test_the_host_list_is_checked_before_the_scheme() -> None:
    problem = git_credentials_problem("http://127.0.0.1:3000/a/b", "link", {}, ())
    assert problem is not None
    assert "no annotation" in problem[1]


def test_insecure_git_hosts_setting() -> None:
    assert BuildSettings().insecure_git_hosts == ()
    settings = BuildSettings.from_env(
        {"AUTOBUILD_INSECURE_GIT_HOSTS": " gitea.local , 127.0.0.1,,"}
    )
    assert settings.insecure_git_hosts == ("gitea.local", "127.0.0.1")
    allowed = git_credentials_problem(
        "http://127.0.0.1:3000/a/b", "link", {HOSTS: "127.0.0.1"}, settings.insecure_git_hosts
    )
    assert allowed is None
