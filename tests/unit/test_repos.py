"""The parts of ``spec.source.repo``: one place for the scheme, the host and the path."""

from __future__ import annotations

import pytest

from autobuild.api.repos import repo_host, repo_path_segments, repo_scheme, strip_scheme


@pytest.mark.parametrize(
    ("repo", "scheme", "host", "bare", "path"),
    [
        ("github.com/acme/app", "https", "github.com", "github.com/acme/app", ["acme", "app"]),
        ("GitHub.com/acme/app/", "https", "github.com", "GitHub.com/acme/app/", ["acme", "app"]),
        (
            "https://gitlab.com/g/sub/app.git",
            "https",
            "gitlab.com",
            "gitlab.com/g/sub/app.git",
            ["g", "sub", "app.git"],
        ),
        (
            "http://127.0.0.1:3000/acme/app.git",
            "http",
            "127.0.0.1",
            "127.0.0.1:3000/acme/app.git",
            ["acme", "app.git"],
        ),
        (
            "https://Gitea.Local:8443/acme/app",
            "https",
            "gitea.local",
            "Gitea.Local:8443/acme/app",
            ["acme", "app"],
        ),
        (
            "git.acme.io:22/acme/app",
            "https",
            "git.acme.io",
            "git.acme.io:22/acme/app",
            ["acme", "app"],
        ),
    ],
)
def test_repo_parts(repo: str, scheme: str, host: str, bare: str, path: list[str]) -> None:
    assert repo_scheme(repo) == scheme
    assert repo_host(repo) == host
    assert strip_scheme(repo) == bare
    assert repo_path_segments(repo) == path


def test_only_a_leading_scheme_is_stripped() -> None:
    assert strip_scheme("github.com/acme/http://x") == "github.com/acme/http://x"
    assert repo_scheme("github.com/acme/http://x") == "https"
