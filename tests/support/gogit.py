"""A go-git client that clones as Kaniko does, for the tests of where Kaniko's git sends the
build's credentials (redirects, submodules).

Kaniko's git build context is go-git's ``PlainClone`` with HTTP Basic auth; the probe in
``gogitprobe/main.go`` does exactly that, built against the go-git version that
``tests/controlplane/kaniko/go.mod`` pins (so it follows a Kaniko bump). The binary is built
once per machine from the Go module proxy into
``${AUTOBUILD_CACHE_DIR:-~/.cache/autobuild}/gogitprobe/<version>/probe``.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
from pathlib import Path

__all__ = ["GO_GIT_VERSION", "clone", "probe_binary"]

_HERE = Path(__file__).resolve().parent
_KANIKO_GO_MOD = _HERE.parent / "controlplane" / "kaniko" / "go.mod"
_PIN = re.compile(r"^\s*github\.com/go-git/go-git/v5 (v\S+)", re.MULTILINE)


def _pinned() -> str:
    found = _PIN.search(_KANIKO_GO_MOD.read_text())
    if found is None:
        raise RuntimeError(f"{_KANIKO_GO_MOD} pins no github.com/go-git/go-git/v5")
    return found.group(1)


GO_GIT_VERSION = _pinned()


def _cache_dir() -> Path:
    base = os.environ.get("AUTOBUILD_CACHE_DIR") or str(Path.home() / ".cache" / "autobuild")
    return Path(base) / "gogitprobe" / GO_GIT_VERSION


def _run(argv: list[str], cwd: Path, env: dict[str, str], what: str) -> None:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{proc.stderr.strip()[-4000:]}")


def probe_binary() -> Path:
    """The cached probe, built first (under a lock, in a staging directory) when missing."""
    target = _cache_dir() / "probe"
    if target.is_file():
        return target
    target.parent.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent.parent / f".{GO_GIT_VERSION}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():
            return target
        staging = target.parent.with_name(f"{GO_GIT_VERSION}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        shutil.copy(_HERE / "gogitprobe" / "main.go", staging / "main.go")
        requirement = f"require github.com/go-git/go-git/v5 {GO_GIT_VERSION}"
        (staging / "go.mod").write_text(f"module gogitprobe\n\ngo 1.24\n\n{requirement}\n")
        env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod -trimpath"}
        _run(["go", "mod", "tidy"], staging, env, "resolving go-git")
        _run(["go", "build", "-o", "probe", "."], staging, env, "building the go-git probe")
        shutil.rmtree(target.parent, ignore_errors=True)
        staging.rename(target.parent)
    return target


def clone(url: str, username: str, password: str, *, recurse_submodules: bool = False) -> str:
    """Clone ``url`` as Kaniko would (credentials as GIT_USERNAME/GIT_PASSWORD); go-git's
    answer (``clone: <nil>`` or the error)."""
    argv = [str(probe_binary()), url, *(["recurse"] if recurse_submodules else [])]
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(_cache_dir()),
        "GIT_USERNAME": username,
        "GIT_PASSWORD": password,
    }
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    return (proc.stdout + proc.stderr).strip()
