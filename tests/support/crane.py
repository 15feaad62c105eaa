"""``crane`` (go-containerregistry) for tests: pushes real images into the loopback registry.

The binary is built once per machine from the Go module proxy (``go install``) into
``${AUTOBUILD_CACHE_DIR:-~/.cache/autobuild}/crane/<version>/crane``; ``CRANE_BINARY`` overrides.

Use::

    crane = Crane(home=tmp_path, credentials={registry.host: ("alice", "pw")})
    digest = crane.push_random_image(f"{registry.host}/alice/app:v1")
"""

from __future__ import annotations

import base64
import fcntl
import gzip
import io
import json
import os
import secrets
import shutil
import subprocess
import tarfile
from collections.abc import Mapping
from pathlib import Path

__all__ = ["CRANE_VERSION", "Crane", "crane_binary"]

CRANE_VERSION = "v0.22.1"
CRANE_MODULE = "github.com/google/go-containerregistry/cmd/crane"


def _cache_dir() -> Path:
    base = os.environ.get("AUTOBUILD_CACHE_DIR") or str(Path.home() / ".cache" / "autobuild")
    return Path(base) / "crane" / CRANE_VERSION


def _run(argv: list[str], env: Mapping[str, str], what: str) -> str:
    """Run ``argv``; its stdout, or RuntimeError naming ``what`` with the end of its stderr."""
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{proc.stderr.strip()[-4000:]}")
    return proc.stdout.strip()


def crane_binary() -> Path:
    """The cached crane binary, built first (under a lock, into a temp dir) when missing."""
    override = os.environ.get("CRANE_BINARY")
    if override:
        return Path(override)
    target = _cache_dir() / "crane"
    if target.is_file():
        return target
    target.parent.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent.parent / f".{CRANE_VERSION}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():
            return target
        staging = target.parent.with_name(f"{CRANE_VERSION}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        env = {**os.environ, "GOBIN": str(staging), "CGO_ENABLED": "0", "GOFLAGS": "-trimpath"}
        _run(["go", "install", f"{CRANE_MODULE}@{CRANE_VERSION}"], env, "building crane")
        shutil.rmtree(target.parent, ignore_errors=True)
        staging.rename(target.parent)
    return target


class Crane:
    """Runs crane with its own docker config (credentials per registry host) and plain HTTP."""

    def __init__(self, home: Path, credentials: Mapping[str, tuple[str, str]] | None = None):
        self.binary = crane_binary()
        self.config_dir = home / "docker-config"
        self.config_dir.mkdir(parents=True, exist_ok=True)
        auths = {
            host: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
            for host, (user, password) in (credentials or {}).items()
        }
        (self.config_dir / "config.json").write_text(json.dumps({"auths": auths}))
        self.home = home

    def run(self, *args: str) -> str:
        """Run ``crane ARGS --insecure`` and return stdout; raise with stderr on failure."""
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(self.home),
            "DOCKER_CONFIG": str(self.config_dir),
        }
        return _run([str(self.binary), *args, "--insecure"], env, f"crane {' '.join(args)}")

    def push_random_image(self, reference: str) -> str:
        """Push a one-layer image with random content to ``reference``; return its digest."""
        layer = self.home / f"layer-{secrets.token_hex(4)}.tar.gz"
        layer.write_bytes(_layer({"hello.txt": secrets.token_bytes(64)}))
        self.run("append", "--new_layer", str(layer), "--new_tag", reference)
        layer.unlink()
        return self.run("digest", reference)

    def tag(self, reference: str, tag: str) -> None:
        """Add ``tag`` to the image at ``reference`` (same digest)."""
        self.run("tag", reference, tag)


def _layer(files: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return gzip.compress(buffer.getvalue(), mtime=0)
