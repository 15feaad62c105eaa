"""Registry host names: Docker Hub's aliases, config-key forms, plain-HTTP registries (pure).

The one place that knows how `spec.image.registry` is written (as :mod:`autobuild.api.repos` for
`spec.source.repo`): the Job renderer, the credentials checks and the registry clients use it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

DOCKER_HUB: Final = "docker.io"
# The key `docker login` writes for Docker Hub (and the one Kaniko looks up): a v1 URL.
DOCKER_HUB_CONFIG_KEY: Final = "https://index.docker.io/v1/"
# Where Docker Hub's registry API (/v2/) is served; docker.io itself only redirects.
DOCKER_HUB_API_HOST: Final = "registry-1.docker.io"
DOCKER_HUB_ALIASES: Final = frozenset(
    {DOCKER_HUB, "index.docker.io", DOCKER_HUB_API_HOST, "registry.hub.docker.com"}
)


def normalize_registry(value: str) -> str:
    """The bare ``host[:port]`` of a registry name, config key or URL; Hub aliases → docker.io.

    ``https://index.docker.io/v1/`` → ``docker.io``; ``http://Registry.local:5000/v2/`` →
    ``registry.local:5000``. Host names are case-insensitive, ports are kept.
    """
    host = value.strip()
    scheme, sep, rest = host.partition("://")
    if sep and scheme.lower() in {"http", "https"}:
        host = rest
    host = host.split("/", 1)[0].lower()
    return DOCKER_HUB if host in DOCKER_HUB_ALIASES else host


def is_docker_hub(registry: str) -> bool:
    """Whether ``registry`` names Docker Hub (any of its aliases)."""
    return normalize_registry(registry) == DOCKER_HUB


def api_host(registry: str) -> str:
    """The ``host[:port]`` serving the registry's /v2/ API."""
    host = normalize_registry(registry)
    return DOCKER_HUB_API_HOST if host == DOCKER_HUB else host


def is_insecure(registry: str, insecure_registries: Iterable[str]) -> bool:
    """Whether ``registry`` is listed in AUTOBUILD_INSECURE_REGISTRIES (plain HTTP)."""
    host = normalize_registry(registry)
    return any(normalize_registry(item) == host for item in insecure_registries)


def base_url(registry: str, insecure_registries: Iterable[str]) -> str:
    """``https://host`` for the registry API, ``http://host`` for an insecure registry."""
    scheme = "http" if is_insecure(registry, insecure_registries) else "https"
    return f"{scheme}://{api_host(registry)}"
