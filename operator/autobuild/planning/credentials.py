"""Git credentials: where the linked account's token may go, and which username goes with it.

One rule for the Kaniko Job (``GIT_USERNAME`` + ``GIT_PASSWORD``, go-git's HTTP Basic auth) and
for the operator's own ``git ls-remote``, so what the operator checks is what Kaniko sends.

No confused deputy: the operator may read any Secret, so a Secret is sent only to the hosts it
names itself (Argo CD's convention of repository credentials bound to URLs), and never over
plain http unless the operator's settings allow that host. A Secret may bind itself closer:
to repository prefixes (``autobuild.dev/git-repos``), and a push Secret to image prefixes
(``autobuild.dev/image-repos``); without those annotations the binding is by host (git) or by
registry (push) alone, as before they existed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Final

from autobuild.api.conditions import Reason
from autobuild.api.models import Provider
from autobuild.api.registries import normalize_registry
from autobuild.api.repos import repo_host, repo_scheme, strip_scheme

# Keys of the ``credentialsSecret``: the token (sent as the password) and an optional username.
TOKEN_KEY: Final = "token"  # noqa: S105 (a key name, not a secret)
USERNAME_KEY: Final = "username"
# The Secret's opt-in: comma-separated host names (no port) its token may be sent to; * for any.
ANNOTATION_GIT_HOSTS: Final = "autobuild.dev/git-hosts"
# The closer binding: comma-separated repository patterns, ``host/owner/name`` or a prefix
# ending in ``/*`` (``github.com/acme/*``: every repository under acme).
ANNOTATION_GIT_REPOS: Final = "autobuild.dev/git-repos"
# A push Secret's binding to image repositories: ``docker.io/acme/*``, ``harbor.local/team/app``.
ANNOTATION_IMAGE_REPOS: Final = "autobuild.dev/image-repos"
# A push Secret's consent to change visibility and description of repositories that existed
# before autobuild (value "true"); without it only repositories autobuild created are changed.
ANNOTATION_MANAGE_EXISTING: Final = "autobuild.dev/manage-existing-repos"
INSECURE_GIT_HOSTS_SETTING: Final = "AUTOBUILD_INSECURE_GIT_HOSTS"
_ANY_HOST: Final = "*"
_ANY_BELOW: Final = "*"

# The username each host expects next to an access token used as the password. GitHub accepts
# any username with a token; plain git hosts (Gitea, Forgejo, ...) need their own: the Secret's
# ``username`` key.
_TOKEN_USERNAMES: Final = {
    Provider.GITHUB: "x-access-token",
    Provider.GIT: "x-access-token",
    Provider.GITLAB: "oauth2",
    Provider.BITBUCKET: "x-token-auth",
}


def default_username(provider: Provider) -> str:
    """The username a provider expects next to an access token."""
    return _TOKEN_USERNAMES[provider]


def git_username(provider: Provider, secret_data: Mapping[str, str]) -> str:
    """The username to send with the token: the Secret's ``username`` key when it has one.

    ``secret_data`` holds the Secret's decoded values (its ``stringData`` form). The key's
    presence decides, exactly as the Job's ``secretKeyRef`` does.
    """
    if USERNAME_KEY in secret_data:
        return secret_data[USERNAME_KEY]
    return default_username(provider)


def host_names(items: Iterable[str]) -> frozenset[str]:
    """Host names as compared: trimmed, lowercased, without a port; empty items dropped."""
    names = (item.strip().rsplit(":", 1)[0].strip().lower() for item in items)
    return frozenset(name for name in names if name)


def _path_key(text: str, *, git: bool) -> tuple[str, ...] | None:
    """``host/seg/...`` as compared, segments lowercased (the hosts route owner and repository
    names case-insensitively). Git: the host without its port (as ``git-hosts``), ``.git``
    dropped from the last segment. Images: the registry as :func:`normalize_registry` has it
    (port kept: another port is another registry; Docker Hub's aliases are docker.io).
    None when a segment could point elsewhere after normalisation ('.', '..', percent-escapes,
    empty): such a name never matches."""
    parts = strip_scheme(text.strip()).rstrip("/").split("/")
    host = parts[0].rsplit(":", 1)[0].lower() if git else normalize_registry(parts[0])
    segments = [segment.lower() for segment in parts[1:]]
    if git and segments:
        segments[-1] = segments[-1].removesuffix(".git")
    if not host or any(s in ("", ".", "..") or "%" in s or "\\" in s for s in segments):
        return None
    return (host, *segments)


def repository_patterns(annotation: str) -> list[str]:
    """The patterns of a ``git-repos`` / ``image-repos`` annotation (trimmed, empty dropped)."""
    return [item.strip() for item in annotation.split(",") if item.strip()]


def matches_repository(name: str, pattern: str, *, git: bool) -> bool:
    """Whether the repository ``name`` (``host/path``, any URL form) is covered by ``pattern``:
    the same path, or, for a pattern ending in ``/*``, any path below its prefix. A ``*``
    elsewhere in a pattern is no wildcard (it matches nothing real)."""
    key = _path_key(name, git=git)
    below = pattern.endswith("/" + _ANY_BELOW)
    wanted = _path_key(pattern[: -len(_ANY_BELOW) - 1] if below else pattern, git=git)
    if key is None or wanted is None:
        return False
    if below:
        return len(key) > len(wanted) and key[: len(wanted)] == wanted
    return key == wanted


def _bound_problem(
    name: str, secret_name: str, annotation: str, listed: str | None, *, git: bool
) -> tuple[str, str] | None:
    """Refusal when a binding annotation is present and covers not ``name``; None otherwise."""
    if listed is None:
        return None
    patterns = repository_patterns(listed)
    if any(matches_repository(name, pattern, git=git) for pattern in patterns):
        return None
    shown = ", ".join(patterns) or "nothing"
    shown_name = "/".join(_path_key(name, git=git) or (strip_scheme(name),))
    return (
        Reason.CREDENTIALS_NOT_ALLOWED,
        f"Secret {secret_name!r} may not be used for {shown_name}: its annotation {annotation} "
        f"lists {shown}. To allow it, add {shown_name} (or a prefix such as "
        f"{shown_name.rsplit('/', 1)[0]}/*) to that annotation",
    )


def git_credentials_problem(
    repo: str,
    secret_name: str,
    secret_annotations: Mapping[str, str],
    insecure_git_hosts: Collection[str],
) -> tuple[str, str] | None:
    """Why the Secret's token must not be sent to ``repo``, as (reason, message); None if it may.

    It may when the Secret's annotation ``autobuild.dev/git-hosts`` lists the repo's host (or
    ``*``), or its annotation ``autobuild.dev/git-repos`` covers the repo; when both are there,
    both must allow it (git-repos binds closer, never wider). And the repo is https, or http to a
    host in ``insecure_git_hosts``. The message names the Secret and the host or repository,
    never a value from the Secret.
    """
    host = repo_host(repo)
    listed = secret_annotations.get(ANNOTATION_GIT_HOSTS)
    repos_listed = secret_annotations.get(ANNOTATION_GIT_REPOS)
    allowed = host_names((listed or "").split(","))
    if listed is not None or repos_listed is None:
        host_refused = _ANY_HOST not in allowed and host not in allowed
    else:
        host_refused = False  # git-repos alone: each of its patterns names its host
    if host_refused:
        if listed is None:
            why = f"it has no annotation {ANNOTATION_GIT_HOSTS}"
        else:
            shown = ", ".join(sorted(allowed)) or "no host"
            why = f"its annotation {ANNOTATION_GIT_HOSTS} lists {shown}, not {host}"
        return (
            Reason.CREDENTIALS_NOT_ALLOWED,
            f"Secret {secret_name!r} may not be sent to {host}: {why}. To allow it, annotate the "
            f"Secret with {ANNOTATION_GIT_HOSTS}: {host} (comma-separated host names, * for any)",
        )
    bound = _bound_problem(repo, secret_name, ANNOTATION_GIT_REPOS, repos_listed, git=True)
    if bound is not None:
        return bound
    if repo_scheme(repo) == "http" and host not in host_names(insecure_git_hosts):
        return (
            Reason.CREDENTIALS_NOT_ALLOWED,
            f"Secret {secret_name!r} is not sent to {host} over plain http://: the token is never "
            f"sent unencrypted. Use an https:// repo, or add {host} to the operator setting "
            f"{INSECURE_GIT_HOSTS_SETTING}",
        )
    return None


def push_credentials_problem(
    repositories: Sequence[str], secret_name: str, secret_annotations: Mapping[str, str]
) -> tuple[str, str] | None:
    """Why the push Secret must not push to ``repositories`` (full names such as
    ``docker.io/acme/app``), as (reason, message); None if it may.

    Without the annotation ``autobuild.dev/image-repos`` the Secret is bound to the registry
    its entry names (the only lookup :mod:`autobuild.registry.dockerconfig` offers); with it,
    every repository must be covered by one of its patterns. The image's build cache goes with
    its image (the caller passes the image only): it is autobuild's own sibling of it.
    """
    listed = secret_annotations.get(ANNOTATION_IMAGE_REPOS)
    for repository in repositories:
        bound = _bound_problem(repository, secret_name, ANNOTATION_IMAGE_REPOS, listed, git=False)
        if bound is not None:
            return bound
    return None


def manages_existing_repositories(secret_annotations: Mapping[str, str]) -> bool:
    """Whether the push Secret allows changing repositories autobuild did not create."""
    return secret_annotations.get(ANNOTATION_MANAGE_EXISTING, "").strip().lower() == "true"
