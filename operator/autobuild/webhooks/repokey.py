"""One comparable key per git repository, whatever URL form names it.

``spec.source.repo`` may be ``github.com/acme/app``, ``https://github.com/acme/app.git`` or
``http://127.0.0.1:8080/acme/app.git``; deliveries name the repository by ``html_url``,
``clone_url``, ``git_http_url`` or ``links.html.href``. All of them map to
``host[:port]/path`` without scheme, credentials, default port, trailing slash or ``.git``.

The key is lowercase throughout: hosts are case-insensitive, and GitHub, GitLab and Bitbucket
route owner and repository names case-insensitively. On a host whose paths are case-sensitive
two repositories may then share a key; that only makes a delivery a candidate for both
AutomatedBuilds, each of which still verifies it against its own secret.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import unquote, urlsplit

__all__ = ["repo_key"]

_SCHEME: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def repo_key(repo: str) -> str:
    """Normalise a repository reference (bare ``host/owner/name`` or an http(s) URL) to its key.

    Raises ValueError when ``repo`` names no host, no owner/name path, or another scheme.
    """
    text = repo.strip()
    if not _SCHEME.match(text):
        text = "https://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"not an http(s) repository URL: {repo[:100]!r}")
    host = parts.hostname  # lowercased, without credentials and brackets
    if not host:
        raise ValueError(f"repository URL has no host: {repo[:100]!r}")
    port = parts.port  # raises ValueError for a port that is not a number in range
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    path = unquote(parts.path).strip("/").lower().removesuffix(".git").rstrip("/")
    if "/" not in path:
        raise ValueError(f"repository URL needs an owner and a name: {repo[:100]!r}")
    return f"{host}/{path}"
