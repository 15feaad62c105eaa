"""Operator-wide settings for build Jobs, read from the environment (``AUTOBUILD_*``)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final

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
    # Run builds only on these nodes (Docker Hub's "builder" nodes): key=value,key=value.
    node_selector: tuple[tuple[str, str], ...] = ()
    # A JSON merge patch (RFC 7386) applied to every build pod's spec: tolerations,
    # serviceAccountName, hostNetwork, priorityClassName, ... (not the containers: the
    # operator owns the Kaniko container).
    build_pod_patch: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BuildSettings:
        """Settings with ``AUTOBUILD_*`` overrides from ``env`` (default: the process env)."""
        source = os.environ if env is None else env
        values: dict[str, object] = {}
        for spec in fields(cls):
            raw = source.get(f"AUTOBUILD_{spec.name.upper()}")
            if raw is None or raw == "":
                continue
            if spec.name == "insecure_registries":
                values[spec.name] = tuple(item.strip() for item in raw.split(",") if item.strip())
            elif spec.name == "node_selector":
                pairs = [item.split("=", 1) for item in raw.split(",") if item.strip()]
                if any(len(pair) != 2 for pair in pairs):
                    raise ValueError(f"AUTOBUILD_NODE_SELECTOR: expected key=value,...: {raw!r}")
                values[spec.name] = tuple((k.strip(), v.strip()) for k, v in pairs)
            elif spec.name == "build_pod_patch":
                values[spec.name] = parse_pod_patch(raw)
            elif spec.name == "push_retry":
                values[spec.name] = int(raw)
            elif spec.name == "dockerhub_url":
                if not raw.startswith(("https://", "http://")):
                    raise ValueError(f"AUTOBUILD_DOCKERHUB_URL: expected an http(s) URL: {raw!r}")
                values[spec.name] = raw.rstrip("/")
            else:
                values[spec.name] = raw
        return cls(**values)  # type: ignore[arg-type]


def parse_pod_patch(raw: str) -> dict[str, Any]:
    """``AUTOBUILD_BUILD_POD_PATCH``: a JSON object, not touching ``containers``."""
    try:
        patch = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"AUTOBUILD_BUILD_POD_PATCH: not JSON: {e}") from None
    if not isinstance(patch, dict):
        raise ValueError(f"AUTOBUILD_BUILD_POD_PATCH: expected a JSON object, got {raw!r}")
    if "containers" in patch:
        raise ValueError(
            "AUTOBUILD_BUILD_POD_PATCH: must not set containers (the operator renders the "
            "Kaniko container); use the AUTOBUILD_* settings for its image and resources"
        )
    return patch
