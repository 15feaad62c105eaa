"""Git credentials: which username goes next to the linked account's token.

One rule for the Kaniko Job (``GIT_USERNAME`` + ``GIT_PASSWORD``, go-git's HTTP Basic auth) and
for the operator's own ``git ls-remote``, so what the operator checks is what Kaniko sends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from autobuild.api.models import Provider

# Keys of the ``credentialsSecret``: the token (sent as the password) and an optional username.
TOKEN_KEY: Final = "token"  # noqa: S105 (a key name, not a secret)
USERNAME_KEY: Final = "username"

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
