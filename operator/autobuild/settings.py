"""Operator-wide settings for build Jobs, read from the environment (``AUTOBUILD_*``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Final

# Maintained Kaniko fork (upstream GoogleContainerTools/kaniko was archived in 2025).
# Pin a digest in production: AUTOBUILD_EXECUTOR_IMAGE=ghcr.io/...:v1.28.3@sha256:...
DEFAULT_EXECUTOR_IMAGE: Final = "ghcr.io/osscontainertools/kaniko:v1.28.3"
DEFAULT_DOCKERHUB_URL: Final = "https://hub.docker.com"


@dataclass(frozen=True)
class BuildSettings:
    """How build Jobs are run; each field maps to the variable ``AUTOBUILD_<FIELD>``."""

    executor_image: str = DEFAULT_EXECUTOR_IMAGE
    cpu_request: str = "500m"
    memory_request: str = "1Gi"
    cpu_limit: str = "2"
    memory_limit: str = "4Gi"
    # Empty: no ephemeral-storage limit (a limit alone also becomes the request).
    ephemeral_storage_limit: str = ""
    cache_ttl: str = "168h"
    push_retry: int = 2
    # Docker Hub's API (repository visibility and short description); a fake in tests.
    dockerhub_url: str = DEFAULT_DOCKERHUB_URL
    # Registries reached over plain HTTP or with self-signed certificates, comma-separated.
    insecure_registries: tuple[str, ...] = ()
    # Git hosts (names without port) that may receive a token over plain http://, comma-separated.
    insecure_git_hosts: tuple[str, ...] = ()
    # Run builds only on these nodes (Docker Hub's "builder" nodes): key=value,key=value.
    node_selector: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BuildSettings:
        """Settings with ``AUTOBUILD_*`` overrides from ``env`` (default: the process env)."""
        source = os.environ if env is None else env
        values: dict[str, object] = {}
        for spec in fields(cls):
            raw = source.get(f"AUTOBUILD_{spec.name.upper()}")
            if raw is None or raw == "":
                continue
            if spec.name in ("insecure_registries", "insecure_git_hosts"):
                values[spec.name] = tuple(item.strip() for item in raw.split(",") if item.strip())
            elif spec.name == "node_selector":
                pairs = [item.split("=", 1) for item in raw.split(",") if item.strip()]
                if any(len(pair) != 2 for pair in pairs):
                    raise ValueError(f"AUTOBUILD_NODE_SELECTOR: expected key=value,...: {raw!r}")
                values[spec.name] = tuple((k.strip(), v.strip()) for k, v in pairs)
            elif spec.name == "push_retry":
                values[spec.name] = int(raw)
            elif spec.name == "dockerhub_url":
                if not raw.startswith(("https://", "http://")):
                    raise ValueError(f"AUTOBUILD_DOCKERHUB_URL: expected an http(s) URL: {raw!r}")
                values[spec.name] = raw.rstrip("/")
            else:
                values[spec.name] = raw
        return cls(**values)  # type: ignore[arg-type]
