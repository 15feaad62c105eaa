"""Operator-wide settings, read from the environment (``AUTOBUILD_*``): build Jobs, GitHub."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from string import Formatter
from typing import Any, Final
from urllib.parse import urlsplit

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
    # git ls-remote processes the poller (spec.source.pollInterval) runs at once.
    poll_concurrency: int = 4
    # Docker Hub's API (repository visibility and short description); a fake in tests.
    dockerhub_url: str = DEFAULT_DOCKERHUB_URL
    # Registries reached over plain HTTP or with self-signed certificates, comma-separated.
    insecure_registries: tuple[str, ...] = ()
    # Git hosts (names without port) that may receive a token over plain http://, comma-separated.
    insecure_git_hosts: tuple[str, ...] = ()
    # Registry token realm hosts (names without port, * for any) that may resolve to loopback,
    # private or link-local addresses; every other realm on such an address is refused.
    internal_realm_hosts: tuple[str, ...] = ()
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
            if spec.name in ("insecure_registries", "insecure_git_hosts", "internal_realm_hosts"):
                values[spec.name] = tuple(item.strip() for item in raw.split(",") if item.strip())
            elif spec.name == "node_selector":
                pairs = [item.split("=", 1) for item in raw.split(",") if item.strip()]
                if any(len(pair) != 2 for pair in pairs):
                    raise ValueError(f"AUTOBUILD_NODE_SELECTOR: expected key=value,...: {raw!r}")
                values[spec.name] = tuple((k.strip(), v.strip()) for k, v in pairs)
            elif spec.name == "build_pod_patch":
                values[spec.name] = parse_pod_patch(raw)
            elif spec.name in ("push_retry", "poll_concurrency"):
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


DEFAULT_GITHUB_URL: Final = "https://api.github.com"
# Placeholders AUTOBUILD_BUILD_URL_TEMPLATE may use, e.g.
# https://dash.example.com/{namespace}/{name}/builds/{build}?commit={commit}
BUILD_URL_FIELDS: Final = ("namespace", "name", "build", "commit")


@dataclass(frozen=True)
class GitHubSettings:
    """Where the GitHub API is and where GitHub reaches the operator (``AUTOBUILD_<FIELD>``)."""

    # https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server.
    github_url: str = DEFAULT_GITHUB_URL
    # Where git hosts reach the webhook server; empty: no webhook auto-registration.
    public_url: str = ""
    # Link of each commit status (placeholders: BUILD_URL_FIELDS); empty: no link.
    build_url_template: str = ""
    # Seconds a deleted AutomatedBuild waits for its webhook to be removed from GitHub.
    unhook_timeout: int = 300

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GitHubSettings:
        """Settings with ``AUTOBUILD_*`` overrides from ``env``; bad values raise ValueError."""
        source = os.environ if env is None else env
        values: dict[str, str | int] = {}
        for spec in fields(cls):
            variable = f"AUTOBUILD_{spec.name.upper()}"
            raw = source.get(variable, "").strip()
            if not raw:
                continue
            if spec.name == "unhook_timeout":
                if not raw.isdigit():
                    raise ValueError(f"{variable}: expected whole seconds, got {raw!r}")
                values[spec.name] = int(raw)
            elif spec.name == "build_url_template":
                check_build_url_template(raw, variable)
                values[spec.name] = raw
            else:
                values[spec.name] = check_http_url(raw, variable).rstrip("/")
        return cls(**values)  # type: ignore[arg-type]


def check_http_url(url: str, what: str) -> str:
    """``url`` if it is an ``http(s)://host...`` URL without credentials, else ValueError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what}: expected an http:// or https:// URL, got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{what}: credentials do not belong in the URL")
    if parts.query or parts.fragment:
        raise ValueError(f"{what}: expected no query or fragment in {url!r}")
    return url


def check_build_url_template(template: str, what: str) -> str:
    """``template`` if it is an http(s) URL whose ``{placeholders}`` are all known."""
    try:
        names = {name for _, name, _, _ in Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ValueError(f"{what}: {exc} in {template!r}") from exc
    unknown = sorted(names - set(BUILD_URL_FIELDS))
    if unknown:
        known = ", ".join("{" + name + "}" for name in BUILD_URL_FIELDS)
        raise ValueError(f"{what}: unknown placeholder(s) {unknown}; known: {known}")
    if not template.startswith(("http://", "https://")):
        raise ValueError(f"{what}: expected an http:// or https:// URL, got {template!r}")
    return template
