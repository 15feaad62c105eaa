"""Renders of the shipped installation (Helm chart, kustomize), for the packaging tests."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "autobuild"
MANIFESTS = ROOT / "manifests"
# The kustomize base is the chart installed as this release in this namespace.
RELEASE, NAMESPACE = "autobuild-operator", "autobuild-system"


def package_version() -> str:
    """The Python package's version (pyproject.toml)."""
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def helm_template(
    helm: Path, *args: str, values: dict[str, Any] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``helm template RELEASE CHART -n NAMESPACE --include-crds`` with ``values`` as a file
    (given on stdin)."""
    command = [
        str(helm),
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--include-crds",
        *args,
    ]
    if values is not None:
        command += ["--values", "-"]
    return subprocess.run(
        command,
        input=json.dumps(values) if values is not None else None,
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
        env=helm_env(),
    )


def helm_env() -> dict[str, str]:
    """An environment that keeps helm's config, cache and data out of the user's home."""
    scratch = Path(tempfile.gettempdir()) / "autobuild-helm-home"
    return {
        **os.environ,
        "HELM_CACHE_HOME": str(scratch / "cache"),
        "HELM_CONFIG_HOME": str(scratch / "config"),
        "HELM_DATA_HOME": str(scratch / "data"),
    }


def documents(text: str) -> list[dict[str, Any]]:
    """The non-empty documents of a YAML stream."""
    return [d for d in yaml.safe_load_all(text) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The documents of one kind."""
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The single document of ``kind``."""
    (found,) = by_kind(docs, kind)
    return found


def identities(docs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(kind, namespace, name) of each document."""
    return {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]) for d in docs}


def container_env(deployment: dict[str, Any]) -> dict[str, str]:
    """The operator container's literal environment variables."""
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
