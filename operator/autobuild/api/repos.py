"""The parts of ``spec.source.repo`` (``host[:port]/path`` or an ``http(s)://`` URL).

The one place that knows how a repo is written: the models, the Job renderer and the
credentials checks all take the scheme, host and path from here.
"""

from __future__ import annotations

import re
from typing import Final, Literal

_SCHEME: Final = re.compile(r"^(https?)://")


def repo_scheme(repo: str) -> Literal["http", "https"]:
    """``http`` only when the repo is written as an ``http://`` URL; ``https`` otherwise."""
    found = _SCHEME.match(repo)
    return "http" if found is not None and found.group(1) == "http" else "https"


def strip_scheme(repo: str) -> str:
    """The repo without a leading ``http://`` or ``https://``: ``host[:port]/path``."""
    return _SCHEME.sub("", repo, count=1)


def repo_host(repo: str) -> str:
    """The host name, lowercased, without the port: ``GitHub.com:443/a/b`` -> ``github.com``."""
    return strip_scheme(repo).split("/", 1)[0].rsplit(":", 1)[0].lower()


def repo_path_segments(repo: str) -> list[str]:
    """The path after the host, split at '/' (a trailing '/' is ignored): ``['acme', 'app']``."""
    return strip_scheme(repo).rstrip("/").split("/")[1:]
