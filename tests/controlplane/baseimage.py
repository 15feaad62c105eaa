#!/usr/bin/env python3
"""The operator image's base, made here from Debian packages only (issue #20).

``debootstrap --variant=minbase`` of the host's Debian release plus ``python3``,
``python3-venv``, ``git`` and ``ca-certificates``, trimmed (no apt lists, docs, man pages,
device nodes), packed as one reproducible layer (fixed mtimes, sorted entries, gzip without a
timestamp) and cached like the real node's artifacts in
``${AUTOBUILD_CACHE_DIR:-~/.cache/autobuild}/controlplane/base-<key>/``. :func:`push` makes it
an OCI image with crane (one layer on an empty base, so the same layer gives the same digest)
and pushes it to a registry; the Dockerfile's ``BASE_IMAGE`` build arg then points at it.

The operator's Python dependencies come from a wheelhouse downloaded on the host with its own
pip settings (:func:`ensure_wheelhouse`, cached too) and served on loopback as a package index
(:func:`serve_index`) that the build reaches with ``--build-arg PIP_INDEX_URL=...``, as a user
with a private index does: the real node's pods resolve no names and reach nothing off the
host, and a build that needs no internet is reproducible.

CLI (``make base-image``)::

    baseimage.py build            # build layer and wheelhouse unless cached; prints their paths
    baseimage.py push REGISTRY    # build if needed, push REGISTRY/autobuild/debian-python:TAG
"""

from __future__ import annotations

import fcntl
import functools
import gzip
import hashlib
import html
import http.server
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Bump when the way the base image is made changes: part of its cache key.
BASE_RECIPE = "1"
PACKAGES = ("python3", "python3-venv", "git", "ca-certificates")
MIRROR = "http://deb.debian.org/debian"
REPOSITORY = "autobuild/debian-python"
# Paths dropped from the root file system: nothing the operator needs at run time, and the
# largest part of a minbase root that is not code (apt's lists alone are ~40 MB).
TRIM = (
    "var/lib/apt/lists",
    "var/cache/apt",
    "var/cache/debconf",
    "var/log",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "dev",
    "proc",
    "sys",
    "run",
    "tmp",
)
# Per-build files that would make two builds of the same packages differ.
VOLATILE = ("etc/machine-id", "etc/hostname", "etc/resolv.conf", "var/lib/dbus/machine-id")
ENV = (
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG=C.UTF-8",
)

Log = Callable[[str], None]


def _stderr_log(msg: str) -> None:
    print(f"[baseimage] {msg}", file=sys.stderr, flush=True)


class BaseImageError(RuntimeError):
    """The base image could not be built or pushed."""


def debian_release() -> str:
    """The host's Debian codename (``bookworm``), from /etc/os-release."""
    fields = dict(
        line.split("=", 1)
        for line in Path("/etc/os-release").read_text().splitlines()
        if "=" in line
    )
    codename = fields.get("VERSION_CODENAME", "").strip('"')
    if fields.get("ID", "").strip('"') != "debian" or not codename:
        raise BaseImageError("the base image is made with debootstrap on a Debian host")
    return codename


def cache_key(release: str) -> str:
    """``<release>-<hash>`` of everything that decides what the layer is."""
    h = hashlib.sha256()
    for item in (BASE_RECIPE, release, MIRROR, platform.machine(), *PACKAGES, *TRIM, *ENV):
        h.update(item.encode() + b"\n")
    return f"{release}-{h.hexdigest()[:12]}"


@dataclass(frozen=True)
class BaseImage:
    """The cached layer and what went into it."""

    root: Path

    @property
    def layer(self) -> Path:
        return self.root / "layer.tar.gz"

    @property
    def manifest_file(self) -> Path:
        return self.root / "manifest.json"

    @property
    def manifest(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.manifest_file.read_text())
        return data

    @property
    def tag(self) -> str:
        """``<release>-python<version>-<key hash>``: a tag that changes with the contents."""
        m = self.manifest
        python = m["packages"].get("python3", "0").split("-")[0]
        return f"{m['release']}-python{python}-{m['key'].rsplit('-', 1)[1]}"

    def complete(self) -> bool:
        return self.manifest_file.is_file() and self.layer.is_file()


def _cache_root() -> Path:
    base = os.environ.get("AUTOBUILD_CACHE_DIR") or str(Path.home() / ".cache" / "autobuild")
    return Path(base) / "controlplane"


def ensure(*, cache_root: Path | None = None, log: Log = _stderr_log) -> BaseImage:
    """The cached base layer, built under a lock if missing (a no-op when cached)."""
    root = cache_root or _cache_root()
    release = debian_release()
    key = cache_key(release)
    target = BaseImage(root / f"base-{key}")
    if target.complete():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".base.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.complete():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".base-{key}.", dir=root))
        try:
            manifest = _build(tmp, release, log)
            manifest["key"] = key
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            shutil.rmtree(tmp / "rootfs")
            tmp.chmod(0o755)
            if target.root.exists():
                shutil.rmtree(target.root)
            tmp.rename(target.root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _run(argv: list[str], log: Log) -> str:
    log("$ " + " ".join(argv))
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BaseImageError(
            f"`{' '.join(argv)}` failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}"
            f"\n{proc.stderr[-3000:]}"
        )
    return proc.stdout


def _build(out: Path, release: str, log: Log) -> dict[str, Any]:
    if os.geteuid() != 0:
        raise BaseImageError("debootstrap needs root")
    if shutil.which("debootstrap") is None:
        log("debootstrap is not installed: apt-get install debootstrap")
        _run(["apt-get", "update", "-q"], log)
        _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "debootstrap"], log)
    rootfs = out / "rootfs"
    timings: dict[str, float] = {}
    start = time.monotonic()
    _run(
        [
            "debootstrap",
            "--variant=minbase",
            "--include=" + ",".join(PACKAGES),
            release,
            str(rootfs),
            MIRROR,
        ],
        log,
    )
    timings["debootstrap"] = time.monotonic() - start
    packages = dict(
        line.split("\t", 1)
        for line in _run(
            ["chroot", str(rootfs), "dpkg-query", "-W", "-f", "${Package}\\t${Version}\\n"], log
        ).splitlines()
    )
    start = time.monotonic()
    _trim(rootfs)
    _write_layer(rootfs, out / "layer.tar.gz")
    timings["layer"] = time.monotonic() - start
    log(f"base layer built: { {k: round(v, 1) for k, v in timings.items()} }")
    return {
        "release": release,
        "mirror": MIRROR,
        "packages": packages,
        "layer_bytes": (out / "layer.tar.gz").stat().st_size,
        "build_seconds": {k: round(v, 1) for k, v in timings.items()},
    }


def _trim(rootfs: Path) -> None:
    for rel in TRIM:
        path = rootfs / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        # Keep the directory itself (an empty mount point or cache dir), world-writable /tmp.
        path.mkdir(mode=0o1777 if rel == "tmp" else 0o755, exist_ok=True)
        if rel == "tmp":
            path.chmod(0o1777)
    for rel in VOLATILE:
        (rootfs / rel).unlink(missing_ok=True)
    # Of usr/share/doc only the license texts stay (a distributed image carries them).
    doc = rootfs / "usr" / "share" / "doc"
    for path in sorted(doc.rglob("*"), reverse=True):
        if path.is_dir() and not path.is_symlink():
            if not any(path.iterdir()):
                path.rmdir()
        elif path.name != "copyright":
            path.unlink()
    # debootstrap's own log and ldconfig's cache vary per run.
    for rel in ("debootstrap", "var/cache/ldconfig/aux-cache"):
        path = rootfs / rel
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for pyc in rootfs.glob("usr/lib/python3*/**/__pycache__"):
        shutil.rmtree(pyc)


def _write_layer(rootfs: Path, target: Path) -> None:
    """A reproducible gzipped tar of ``rootfs``: sorted entries (tarfile.add sorts), mtime 0,
    numeric owners kept (no names), hard links kept, gzip header without a timestamp."""

    def fixed(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.mtime = 0
        info.uname = info.gname = ""
        return info

    with (
        open(target, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for child in sorted(os.listdir(rootfs)):
            tar.add(rootfs / child, arcname=child, filter=fixed)


def push(crane: Path, registry: str, image: BaseImage, log: Log = _stderr_log) -> str:
    """Push the base as ``REGISTRY/autobuild/debian-python:TAG``; returns ``ref@digest``."""
    ref = f"{registry}/{REPOSITORY}:{image.tag}"
    env = {**os.environ, "HOME": tempfile.gettempdir(), "NO_PROXY": "*"}

    def run(*args: str) -> str:
        proc = subprocess.run(
            [str(crane), *args], capture_output=True, text=True, env=env, check=False
        )
        if proc.returncode != 0:
            raise BaseImageError(f"crane {' '.join(args)} failed:\n{proc.stderr}")
        return proc.stdout.strip()

    run("append", "-f", str(image.layer), "-t", ref)
    run(
        "mutate",
        ref,
        "--set-platform",
        "linux/amd64",
        *(f"--env={e}" for e in ENV),
        "--cmd=/bin/bash",
        "-t",
        ref,
    )
    digest = run("digest", ref)
    log(f"pushed {ref}@{digest}")
    return f"{ref}@{digest}"


# --------------------------------------------------------------------------------------
# The operator's Python dependencies, for a build that reaches no package index
# --------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
WHEELHOUSE_RECIPE = "1"


@dataclass(frozen=True)
class Wheelhouse:
    """Wheels of the operator's dependencies (and its build backend) for the base's Python,
    laid out as a PEP 503 simple index: ``simple/<project>/index.html`` -> ``files/*.whl``."""

    root: Path

    @property
    def files(self) -> Path:
        return self.root / "files"

    @property
    def simple(self) -> Path:
        return self.root / "simple"

    def complete(self) -> bool:
        return (self.root / "manifest.json").is_file()


def requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """What ``pip install .`` fetches: the build system's requirements and the dependencies."""
    data = tomllib.loads(pyproject.read_text())
    return [*data["build-system"]["requires"], *data["project"]["dependencies"]]


def _normalize(name: str) -> str:
    """PEP 503's normalized project name."""
    return "-".join(part for part in name.lower().replace("_", "-").replace(".", "-").split("-"))


def ensure_wheelhouse(
    python_version: str, *, cache_root: Path | None = None, log: Log = _stderr_log
) -> Wheelhouse:
    """The cached wheelhouse for ``python_version`` (``3.11``), downloaded with the host's pip
    (its index, proxy and CA settings) when missing: binary wheels only, for manylinux x86_64
    and that CPython, so what the host resolves is what the base's Python installs."""
    reqs = requirements()
    h = hashlib.sha256()
    for item in (WHEELHOUSE_RECIPE, python_version, platform.machine(), *reqs):
        h.update(item.encode() + b"\n")
    root = cache_root or _cache_root()
    target = Wheelhouse(root / f"wheels-py{python_version}-{h.hexdigest()[:12]}")
    if target.complete():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".wheels.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.complete():
            return target
        tmp = Wheelhouse(Path(tempfile.mkdtemp(prefix=".wheels-", dir=root)))
        try:
            start = time.monotonic()
            _run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "-q",
                    "--no-cache-dir",
                    "--only-binary=:all:",
                    "--implementation=cp",
                    f"--python-version={python_version}",
                    "--platform=manylinux_2_36_x86_64",
                    "--platform=manylinux_2_28_x86_64",
                    "--platform=manylinux_2_17_x86_64",
                    "--platform=manylinux2014_x86_64",
                    "--dest",
                    str(tmp.files),
                    *reqs,
                ],
                log,
            )
            projects: dict[str, list[str]] = {}
            for wheel in sorted(tmp.files.glob("*.whl")):
                projects.setdefault(_normalize(wheel.name.split("-")[0]), []).append(wheel.name)
            for project, wheels in projects.items():
                (tmp.simple / project).mkdir(parents=True)
                links = "".join(
                    f'<a href="../../files/{html.escape(w)}">{html.escape(w)}</a><br>\n'
                    for w in wheels
                )
                (tmp.simple / project / "index.html").write_text(
                    f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n"
                )
            manifest = {
                "python": python_version,
                "requirements": reqs,
                "wheels": sorted(w for ws in projects.values() for w in ws),
                "download_seconds": round(time.monotonic() - start, 1),
            }
            (tmp.root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            tmp.root.chmod(0o755)
            if target.root.exists():
                shutil.rmtree(target.root)
            tmp.root.rename(target.root)
        finally:
            shutil.rmtree(tmp.root, ignore_errors=True)
    return target


@contextmanager
def serve_index(wheelhouse: Wheelhouse) -> Iterator[str]:
    """The wheelhouse as a package index on 127.0.0.1 (static files, GET only); yields its
    ``PIP_INDEX_URL`` (``http://127.0.0.1:PORT/simple/``). pip treats loopback over plain
    HTTP as a secure origin."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(wheelhouse.root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="wheel-index", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/simple/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def python_version(image: BaseImage) -> str:
    """``3.11`` for a base with python3 3.11.2-1+b1."""
    return ".".join(image.manifest["packages"]["python3"].split("-")[0].split(".")[:2])


def main(argv: list[str]) -> int:
    if argv == ["build"]:
        image = ensure()
        print(image.layer)
        print(ensure_wheelhouse(python_version(image)).root)
        return 0
    if len(argv) == 2 and argv[0] == "push":
        from tests.controlplane import localcluster

        print(push(localcluster.ensure_node_artifacts().crane, argv[1], ensure()))
        return 0
    raise SystemExit("usage: baseimage.py build | push REGISTRY")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
