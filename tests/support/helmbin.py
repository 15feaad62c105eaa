#!/usr/bin/env python3
"""The real ``helm`` binary, built from its Go module through the Go module proxy.

Helm is ``helm.sh/helm/v3`` (command ``cmd/helm``). ``make helm`` (and the tests, through
:func:`ensure_helm`) build the pinned version once with ``go install`` and cache it, keyed by
the version, under::

    ${AUTOBUILD_CACHE_DIR:-~/.cache/autobuild}/helm/<version>-<recipe>/bin/helm

A second call is a no-op without any ``go`` invocation. The build goes to a temporary
directory renamed into place under a lock, so a crash or a concurrent run never leaves a
half-built binary. Command line: ``python tests/support/helmbin.py [--print-path]``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

HELM_MODULE: Final = "helm.sh/helm/v3"
# Pinned: bump deliberately (the cache key is the version; `go list -m -versions` lists them).
HELM_VERSION: Final = "v3.22.0"
# Bump when the way helm is built changes (flags): it is part of the cache key.
BUILD_RECIPE: Final = "2"


class HelmBuildError(RuntimeError):
    """``go install`` of helm failed; the message carries go's stderr."""


def cache_root() -> Path:
    """Where built tools are kept (shared with the control plane cache)."""
    base = os.environ.get("AUTOBUILD_CACHE_DIR") or str(Path.home() / ".cache" / "autobuild")
    return Path(base) / "helm"


def helm_path(version: str = HELM_VERSION) -> Path:
    """The cached binary of ``version`` (which may not be built yet)."""
    return cache_root() / f"{version}-{BUILD_RECIPE}" / "bin" / "helm"


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    # A static binary, the machine's Go toolchain (never a downloaded one), no workspace.
    env.update(CGO_ENABLED="0", GOWORK="off", GOTOOLCHAIN="local", GOFLAGS="-mod=mod")
    return env


def _go(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        ["go", *args],
        cwd=cwd,
        env=env or _go_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise HelmBuildError(
            f"go {' '.join(args)} failed (exit {proc.returncode}):\n{proc.stderr[-6000:]}"
        )
    return proc.stdout


def _release_stamps(version: str, scratch: Path) -> list[str]:
    """The ``-X`` flags helm's own Makefile sets: its version, and the Kubernetes version that
    ``helm template`` and ``helm lint`` assume without a cluster (client-go v0.X.Y -> 1.X;
    unstamped, helm assumes 1.20 and refuses charts that need newer)."""
    info = json.loads(_go("mod", "download", "-json", f"{HELM_MODULE}@{version}", cwd=scratch))
    found = re.search(
        r"^\s*k8s\.io/client-go v(\d+)\.(\d+)\.", Path(info["GoMod"]).read_text(), re.M
    )
    if found is None:
        raise HelmBuildError(f"{HELM_MODULE}@{version}: no k8s.io/client-go in its go.mod")
    major, minor = str(int(found[1]) + 1), found[2]
    stamps = [f"{HELM_MODULE}/internal/version.version={version}"]
    for package in ("pkg/lint/rules", "pkg/chartutil"):
        stamps += [
            f"{HELM_MODULE}/{package}.k8sVersionMajor={major}",
            f"{HELM_MODULE}/{package}.k8sVersionMinor={minor}",
        ]
    return [f"-X {stamp}" for stamp in stamps]


def build(version: str, target: Path) -> float:
    """``go install`` helm ``version`` into ``target`` (a bin directory); the seconds it took."""
    if shutil.which("go") is None:
        raise HelmBuildError("`go` is not on PATH: helm is built from its Go module")
    started = time.monotonic()
    ldflags = " ".join(["-s", "-w", *_release_stamps(version, target.parent)])
    _go(
        "install",
        "-trimpath",
        "-ldflags",
        ldflags,
        f"{HELM_MODULE}/cmd/helm@{version}",
        cwd=target.parent,
        env={**_go_env(), "GOBIN": str(target)},
    )
    return time.monotonic() - started


def ensure_helm(version: str = HELM_VERSION) -> Path:
    """The path of the cached helm ``version``, building it first when it is missing."""
    path = helm_path(version)
    if os.access(path, os.X_OK):
        return path
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.access(path, os.X_OK):
            return path
        staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=root))
        try:
            print(f"[helm] building {HELM_MODULE} {version} (cold: minutes)", file=sys.stderr)
            seconds = build(version, staging / "bin")
            print(f"[helm] built in {seconds:.0f}s", file=sys.stderr)
            staging.rename(path.parent.parent)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return path


def main() -> int:
    """``make helm``: build if needed; ``--print-path`` prints where the binary is."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print-path", action="store_true", help="print the binary's path")
    args = parser.parse_args()
    try:
        path = ensure_helm()
    except HelmBuildError as exc:
        print(f"[helm] {exc}", file=sys.stderr)
        return 1
    if args.print_path:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
