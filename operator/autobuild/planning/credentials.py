"""Git credentials: where the linked account's token may go, and which username goes with it.

One rule for the Kaniko Job (``GIT_USERNAME`` + ``GIT_PASSWORD``, go-git's HTTP Basic auth) and
for the operator's own ``git ls-remote``, so what the operator checks is what Kaniko sends.

No confused deputy: the operator may read any Secret, so a Secret is sent only to the hosts it
names itself (Argo CD's convention of repository credentials bound to URLs), and never over
plain http unless the operator's settings allow that host.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Final

from autobuild.api.models import Provider
from autobuild.api.repos import repo_host, repo_scheme

# Keys of the ``credentialsSecret``: the token (sent as the password) and an optional username.
TOKEN_KEY: Final = "token"  # noqa: S105 (a key name, not a secret)
USERNAME_KEY: Final = "username"
# The Secret's opt-in: comma-separated host names (no port) its token may be sent to; * for any.
ANNOTATION_GIT_HOSTS: Final = "autobuild.dev/git-hosts"
INSECURE_GIT_HOSTS_SETTING: Final = "AUTOBUILD_INSECURE_GIT_HOSTS"
REASON_NOT_ALLOWED: Final = "CredentialsNotAllowed"
_ANY_HOST: Final = "*"

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


def git_credentials_problem(
    repo: str,
    secret_name: str,
    secret_annotations: Mapping[str, str],
    insecure_git_hosts: Collection[str],
) -> tuple[str, str] | None:
    """Why the Secret's token must not be sent to ``repo``, as (reason, message); None if it may.

    It may when the Secret's annotation ``autobuild.dev/git-hosts`` lists the repo's host (or
    ``*``), and the repo is https, or http to a host in ``insecure_git_hosts``. The message names
    the Secret and the host, never a value from the Secret.
    """
    host = repo_host(repo)
    listed = secret_annotations.get(ANNOTATION_GIT_HOSTS)
    allowed = host_names((listed or "").split(","))
    if _ANY_HOST not in allowed and host not in allowed:
        if listed is None:
            why = f"it has no annotation {ANNOTATION_GIT_HOSTS}"
        else:
            shown = ", ".join(sorted(allowed)) or "no host"
            why = f"its annotation {ANNOTATION_GIT_HOSTS} lists {shown}, not {host}"
        return (
            REASON_NOT_ALLOWED,
            f"Secret {secret_name!r} may not be sent to {host}: {why}. To allow it, annotate the "
            f"Secret with {ANNOTATION_GIT_HOSTS}: {host} (comma-separated host names, * for any)",
        )
    if repo_scheme(repo) == "http" and host not in host_names(insecure_git_hosts):
        return (
            REASON_NOT_ALLOWED,
            f"Secret {secret_name!r} is not sent to {host} over plain http://: the token is never "
            f"sent unencrypted. Use an https:// repo, or add {host} to the operator setting "
            f"{INSECURE_GIT_HOSTS_SETTING}",
        )
    return None
