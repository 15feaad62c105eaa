"""Git credentials: the username rule, and where a token may be sent (no confused deputy)."""

from __future__ import annotations

import pytest

from autobuild.api.models import Provider
from autobuild.planning.credentials import (
    default_username,
    git_credentials_problem,
    git_username,
    push_credentials_problem,
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


REPOS = "autobuild.dev/git-repos"
IMAGES = "autobuild.dev/image-repos"


@pytest.mark.parametrize(
    ("repo", "patterns"),
    [
        ("github.com/acme/app", "github.com/acme/*"),
        ("https://github.com/Acme/App.git", "github.com/acme/*"),
        ("github.com/acme/app", "github.com/acme/app"),
        ("github.com/acme/app", "gitlab.com/acme/*, github.com/acme/app"),
        ("gitlab.com/acme/group/app", "gitlab.com/acme/*"),
        ("https://ghe.example.com:8443/acme/app", "ghe.example.com/acme/*"),
        ("github.com/acme/app", "https://github.com/acme/app.git"),
    ],
)
def test_a_secret_bound_to_repositories_goes_to_those(repo: str, patterns: str) -> None:
    annotations = {HOSTS: "github.com,gitlab.com,ghe.example.com", REPOS: patterns}
    assert git_credentials_problem(repo, "link", annotations, ()) is None
    # git-repos alone is enough: each of its patterns names its host.
    assert git_credentials_problem(repo, "link", {REPOS: patterns}, ()) is None


@pytest.mark.parametrize(
    ("repo", "patterns"),
    [
        # The attack: the organisation's token, bound to github.com, sent to another owner.
        ("github.com/evil/app", "github.com/acme/*"),
        ("github.com/acme-evil/app", "github.com/acme/*"),
        ("github.com/acme", "github.com/acme/*"),
        ("github.com/acme/app2", "github.com/acme/app"),
        ("github.com/acme/app/../../evil/app", "github.com/acme/*"),
        ("github.com/acme/%2e%2e/evil", "github.com/acme/*"),
        ("gitlab.com/acme/app", "github.com/acme/*"),
        ("github.com/acme/app", "github.com/*/app"),
        ("github.com/acme/app", ""),
    ],
)
def test_a_secret_bound_to_repositories_goes_to_no_other(repo: str, patterns: str) -> None:
    annotations = {HOSTS: "github.com,gitlab.com", REPOS: patterns}
    problem = git_credentials_problem(repo, "link", annotations, ())
    assert problem is not None
    reason, message = problem
    assert reason == "CredentialsNotAllowed"
    assert REPOS in message
    assert "Secret 'link' may not be used for" in message


def test_git_repos_narrows_git_hosts_and_never_widens_it() -> None:
    # Both present: both must allow the repository.
    annotations = {HOSTS: "gitlab.com", REPOS: "github.com/acme/*"}
    problem = git_credentials_problem("github.com/acme/app", "link", annotations, ())
    assert problem is not None
    assert "lists gitlab.com, not github.com" in problem[1]
    # Plain http stays refused whatever the patterns say.
    problem = git_credentials_problem("http://gitea.local/acme/app", "link", {REPOS: "*"}, ())
    assert problem is not None
    assert "lists *" in problem[1]
    http = git_credentials_problem(
        "http://gitea.local/acme/app", "link", {REPOS: "gitea.local/acme/*"}, ()
    )
    assert http is not None
    assert "plain http://" in http[1]


@pytest.mark.parametrize(
    ("image", "patterns", "allowed"),
    [
        ("docker.io/acme/app", "docker.io/acme/*", True),
        ("docker.io/acme/app", "index.docker.io/acme/*", True),
        ("docker.io/acme/app", "docker.io/acme/app", True),
        ("registry.local:5000/team/app", "registry.local:5000/team/*", True),
        ("registry.local:5000/team/sub/app", "registry.local:5000/team/*", True),
        # The attack: the namespace's push Secret used for another repository of its account.
        ("docker.io/acme/private-tools", "docker.io/acme/app", False),
        ("docker.io/other/app", "docker.io/acme/*", False),
        ("registry.local:5001/team/app", "registry.local:5000/team/*", False),
        ("ghcr.io/acme/app", "docker.io/acme/*", False),
    ],
)
def test_push_secrets_bound_to_image_repositories(image: str, patterns: str, allowed: bool) -> None:
    problem = push_credentials_problem((image,), "regcred", {IMAGES: patterns})
    assert (problem is None) is allowed
    if problem is not None:
        assert problem[0] == "CredentialsNotAllowed"
        assert IMAGES in problem[1]
        assert "Secret 'regcred'" in problem[1]


def test_a_push_secret_without_image_repos_is_bound_to_its_registry_only() -> None:
    # Before image-repos existed: the registry entry is the binding (dockerconfig's lookup).
    assert push_credentials_problem(("docker.io/acme/app",), "regcred", {}) is None
