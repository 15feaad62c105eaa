"""A real node beside the kwok nodes: kubelet -> containerd -> runc, and images for it.

``localcluster.py`` calls this module when a cluster is started with ``real_node=True``
(``localcluster.py up --real-node``, ``make cluster-up NODE=real``). What it adds:

* **artifacts**, built once per machine and cached like the control plane binaries in
  ``${AUTOBUILD_CACHE_DIR:-~/.cache/autobuild}/controlplane/node-<key>/``: the Kaniko executor
  and ``crane`` (from the wrapper modules ``kaniko/`` and ``crane/``), containerd, runc, the CNI
  plugins and busybox extracted from Debian packages (``apt-get download`` + ``dpkg-deb -x``:
  nothing is installed on the host), and the image layers made from them;
* **a registry** (Debian's ``docker-registry``, extracted like containerd) on 127.0.0.1
  holding three images pushed with crane at every start: the executor, a busybox base image
  for ``RUN`` steps and the pause image;
* **the node** ``localhost``: a mount-namespace holder (``unshare --mount --propagation
  private``) that bind-mounts the host paths the node hard-codes from the state dir, then
  containerd and the kubelet entered into that namespace (``nsenter``). The node is tainted
  ``autobuild.dev/real-node=true:NoSchedule`` so that only pods meant for it land there;
* **cleanup** that leaves the host as it was: processes in the node's cgroups and mount
  namespace, the ``kubepods`` cgroups, the CNI bridge and the mount points it created.

Only one real node can run per host (the ``kubepods`` cgroups are global); a lock file in the
cache dir, held by the namespace holder, enforces it.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
KANIKO_MODULE_DIR = HERE / "kaniko"
CRANE_MODULE_DIR = HERE / "crane"

# Bump when the way the node artifacts are made changes: part of their cache key.
NODE_RECIPE = "1"

DEBIAN_PACKAGES = (
    "containerd",
    "runc",
    "containernetworking-plugins",
    "busybox-static",
    "docker-registry",
)

NODE_NAME = "localhost"
NODE_LABEL = ("autobuild.dev/node", "real")
NODE_TAINT = ("autobuild.dev/real-node", "true", "NoSchedule")

# Paths the kubelet, containerd's shims and the CNI plugins use whatever their config says;
# inside the node's mount namespace they are bind mounts of dirs in the cluster's state dir.
HOST_PATHS = (
    "/run/containerd",
    "/run/netns",
    "/var/lib/cni",
    "/var/lib/kubelet",
    "/var/log/pods",
    "/var/log/containers",
)
# The kernel settings the kubelet insists on (it writes them unless protectKernelDefaults,
# which makes it exit instead). Inside the node's namespace these files are bind mounts of
# files that already hold the wanted values, so the host's own settings are never changed
# (a shared machine should not start rebooting 10 s after an oops).
KUBELET_KERNEL_TUNABLES = {
    "/proc/sys/vm/overcommit_memory": "1",
    "/proc/sys/vm/panic_on_oom": "0",
    "/proc/sys/kernel/panic": "10",
    "/proc/sys/kernel/panic_on_oops": "1",
    "/proc/sys/kernel/keys/root_maxkeys": "1000000",
    "/proc/sys/kernel/keys/root_maxbytes": "25000000",
}

CGROUP_ROOT = Path("/sys/fs/cgroup")
KUBEPODS_CGROUP = "kubepods"
BRIDGE = "autobuild0"
# Pods that are not hostNetwork get an address here, on a bridge without a gateway: they can
# reach each other and nothing else (no route out; loopback is the pod's own).
POD_SUBNET = "10.245.0.0/24"

EXECUTOR_REPOSITORY = "autobuild/kaniko-executor"
BUSYBOX_REPOSITORY = "autobuild/busybox"
PAUSE_REPOSITORY = "autobuild/pause"

Log = Callable[[str], None]


class NodeError(RuntimeError):
    """The real node could not be built, started or cleaned up."""


# --------------------------------------------------------------------------------------
# What the host must offer
# --------------------------------------------------------------------------------------


def host_problems() -> list[str]:
    """Why this host cannot run the real node (empty when it can)."""
    problems = []
    if sys.platform != "linux":
        problems.append(f"the real node needs Linux, not {sys.platform}")
    elif os.geteuid() != 0:
        problems.append("the real node needs root (mount namespaces, cgroups, containerd)")
    for tool in ("unshare", "nsenter", "mount", "ip"):
        if shutil.which(tool) is None:
            problems.append(f"`{tool}` is not on PATH")
    if not CGROUP_ROOT.is_dir():
        problems.append(f"{CGROUP_ROOT} is missing (no cgroups)")
    return problems


# --------------------------------------------------------------------------------------
# Artifacts: built once, cached
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeArtifacts:
    """The cached node artifacts: binaries, the extracted Debian root, image layers."""

    root: Path

    @property
    def executor(self) -> Path:
        return self.root / "bin" / "executor"

    @property
    def crane(self) -> Path:
        return self.root / "bin" / "crane"

    @property
    def debroot(self) -> Path:
        """Where the Debian packages are extracted (``usr/bin/containerd`` etc.)."""
        return self.root / "debroot"

    @property
    def containerd(self) -> Path:
        return self.debroot / "usr" / "bin" / "containerd"

    @property
    def runc(self) -> Path:
        return self.debroot / "usr" / "sbin" / "runc"

    @property
    def cni_bin_dir(self) -> Path:
        return self.debroot / "usr" / "lib" / "cni"

    @property
    def busybox(self) -> Path:
        return self.debroot / "bin" / "busybox"

    @property
    def registry(self) -> Path:
        return self.debroot / "usr" / "bin" / "docker-registry"

    def layer(self, name: str) -> Path:
        return self.root / "layers" / f"{name}.tar.gz"

    @property
    def manifest(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.root / "manifest.json").read_text())
        return data

    def complete(self) -> bool:
        paths = (
            self.executor,
            self.crane,
            self.containerd,
            self.runc,
            self.busybox,
            self.registry,
        )
        layers = (self.layer("executor"), self.layer("busybox"))
        return (self.root / "manifest.json").is_file() and all(
            p.is_file() for p in (*paths, *layers)
        )


def node_cache_key(versions: dict[str, str]) -> str:
    """``<kaniko version>-<hash>`` of everything that decides what the artifacts are."""
    h = hashlib.sha256()
    h.update(f"recipe={NODE_RECIPE}\n".encode())
    h.update(f"platform={sys.platform}/{platform.machine()}\n".encode())
    h.update(("debian=" + ",".join(DEBIAN_PACKAGES) + "\n").encode())
    for key in ("kaniko_module", "kaniko", "crane"):
        h.update(f"{key}={versions[key]}\n".encode())
    for directory in (KANIKO_MODULE_DIR, CRANE_MODULE_DIR):
        for name in ("go.mod", "go.sum"):
            h.update(f"{directory.name}/{name}\n".encode())
            h.update((directory / name).read_bytes())
    return f"{versions['kaniko']}-{h.hexdigest()[:12]}"


def ensure_node_artifacts(
    cache_root: Path,
    versions: dict[str, str],
    run_go: Callable[[Sequence[str], Path], str],
    log: Log,
    *,
    force: bool = False,
) -> NodeArtifacts:
    """The cached node artifacts for the current pins, built under a lock if missing.

    A no-op (no ``go``, no ``apt-get``) when cached. Built into a temp dir that is renamed
    into place, so an interrupted build never leaves a half-filled cache.
    """
    key = node_cache_key(versions)
    target = NodeArtifacts(cache_root / f"node-{key}")
    if target.complete() and not force:
        return target
    cache_root.mkdir(parents=True, exist_ok=True)
    with open(cache_root / ".node.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.complete() and not force:
            return target
        tmp = NodeArtifacts(Path(tempfile.mkdtemp(prefix=f".node-{key}.", dir=cache_root)))
        try:
            manifest = _build_node_artifacts(tmp, versions, run_go, log)
            manifest["key"] = key
            (tmp.root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            if target.root.exists():
                shutil.rmtree(target.root)
            tmp.root.rename(target.root)
        finally:
            shutil.rmtree(tmp.root, ignore_errors=True)
    return target


def _build_node_artifacts(
    out: NodeArtifacts,
    versions: dict[str, str],
    run_go: Callable[[Sequence[str], Path], str],
    log: Log,
) -> dict[str, Any]:
    log(f"building the real node's artifacts into {out.root} (cold: several minutes)")
    timings: dict[str, float] = {}
    (out.root / "bin").mkdir()

    start = time.monotonic()
    run_go(
        [
            "build",
            "-trimpath",
            "-ldflags",
            f"-s -w -X {versions['kaniko_module']}/pkg/version.version={versions['kaniko']}",
            "-o",
            str(out.executor),
            versions["kaniko_module"] + "/cmd/executor",
        ],
        KANIKO_MODULE_DIR,
    )
    timings["kaniko executor"] = time.monotonic() - start

    start = time.monotonic()
    run_go(
        [
            "build",
            "-trimpath",
            "-ldflags",
            "-s -w",
            "-o",
            str(out.crane),
            "github.com/google/go-containerregistry/cmd/crane",
        ],
        CRANE_MODULE_DIR,
    )
    timings["crane"] = time.monotonic() - start

    start = time.monotonic()
    debian = _extract_debian_packages(out.root / "debs", out.debroot, log)
    timings["debian packages"] = time.monotonic() - start

    start = time.monotonic()
    (out.root / "layers").mkdir()
    _write_layer(out.layer("executor"), _executor_layer_entries(out.executor))
    _write_layer(out.layer("busybox"), _busybox_layer_entries(out.busybox))
    shutil.rmtree(out.root / "debs")
    timings["image layers"] = time.monotonic() - start
    log(f"node artifacts built: { {k: round(v, 1) for k, v in timings.items()} }")
    return {
        "versions": {k: versions[k] for k in ("kaniko_module", "kaniko", "crane")},
        "debian": debian,
        "build_seconds": {k: round(v, 1) for k, v in timings.items()},
    }


def _extract_debian_packages(download_dir: Path, root: Path, log: Log) -> dict[str, str]:
    """``apt-get download`` the packages and unpack them into ``root``; {package: version}.

    Nothing is installed on the host: no maintainer scripts, no services. The package lists
    are refreshed (``apt-get update``) only when a download fails.
    """
    download_dir.mkdir(parents=True)
    root.mkdir(parents=True)
    download = ["apt-get", "download", "-q", *DEBIAN_PACKAGES]
    log("$ " + " ".join(download))
    proc = subprocess.run(download, cwd=download_dir, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        log("apt-get download failed; running apt-get update first")
        _run(["apt-get", "update", "-q"], log)
        _run(download, log, cwd=download_dir)
    versions = {}
    for deb in sorted(download_dir.glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(root)], log)
        fields = _run(["dpkg-deb", "-f", str(deb), "Package", "Version"], log)
        info = dict(line.split(": ", 1) for line in fields.splitlines() if ": " in line)
        versions[info["Package"]] = info["Version"]
    missing = set(DEBIAN_PACKAGES) - set(versions)
    if missing:
        raise NodeError(f"apt-get download did not fetch {sorted(missing)}")
    return versions


def _run(argv: Sequence[str], log: Log, *, cwd: Path | None = None) -> str:
    log("$ " + " ".join(argv))
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise NodeError(f"`{' '.join(argv)}` failed (exit {proc.returncode}):\n{proc.stderr}")
    return proc.stdout


# A layer entry: (path in the image, mode, content bytes | symlink target | None for a dir).
LayerEntry = tuple[str, int, bytes | str | None]


def _executor_layer_entries(executor: Path) -> list[LayerEntry]:
    """The executor at ``/kaniko/executor``, the host's CA bundle in ``/kaniko/ssl/certs``
    (as upstream's image keeps it: outside the paths Kaniko snapshots) and an empty
    ``/kaniko/.docker`` for the push credentials."""
    ca_bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    entries: list[LayerEntry] = [
        ("kaniko", 0o755, None),
        ("kaniko/executor", 0o755, executor.read_bytes()),
        ("kaniko/.docker", 0o755, None),
        ("kaniko/ssl", 0o755, None),
        ("kaniko/ssl/certs", 0o755, None),
        ("workspace", 0o755, None),
    ]
    if ca_bundle.is_file():
        entries.append(("kaniko/ssl/certs/ca-certificates.crt", 0o644, ca_bundle.read_bytes()))
    return entries


def _busybox_layer_entries(busybox: Path) -> list[LayerEntry]:
    """A minimal root file system: static busybox with a symlink per applet."""
    applets = subprocess.run(
        [str(busybox), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    entries: list[LayerEntry] = [
        ("bin", 0o755, None),
        ("bin/busybox", 0o755, busybox.read_bytes()),
        ("etc", 0o755, None),
        ("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n"),
        ("etc/group", 0o644, b"root:x:0:\n"),
        ("root", 0o700, None),
        ("tmp", 0o1777, None),
    ]
    entries += [(f"bin/{a}", 0o777, "busybox") for a in sorted(set(applets)) if a != "busybox"]
    return entries


def _write_layer(path: Path, entries: Sequence[LayerEntry]) -> None:
    """A reproducible gzipped tar layer (fixed mtime, owner root)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, mode, content in entries:
            info = tarfile.TarInfo(name)
            info.mode = mode
            info.mtime = 0
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(content, str):
                info.type = tarfile.SYMTYPE
                info.linkname = content
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    path.write_bytes(gzip.compress(buf.getvalue(), mtime=0))


# --------------------------------------------------------------------------------------
# Images: pushed into the cluster's registry at every start
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeImages:
    """References of the images the harness pushed (``127.0.0.1:PORT/autobuild/...:TAG``)."""

    executor: str
    busybox: str
    pause: str

    def to_json(self) -> dict[str, str]:
        return {"executor": self.executor, "busybox": self.busybox, "pause": self.pause}


def push_images(artifacts: NodeArtifacts, registry: str, log: Log) -> NodeImages:
    """Assemble the three images with crane (one layer each on an empty base) and push them."""
    manifest = artifacts.manifest
    busybox_version = manifest["debian"]["busybox-static"].split(":")[-1].split("-")[0]
    images = NodeImages(
        executor=f"{registry}/{EXECUTOR_REPOSITORY}:{manifest['versions']['kaniko']}",
        busybox=f"{registry}/{BUSYBOX_REPOSITORY}:{busybox_version}",
        pause=f"{registry}/{PAUSE_REPOSITORY}:busybox-{busybox_version}",
    )
    env = {**os.environ, "HOME": tempfile.gettempdir(), "NO_PROXY": "*"}

    def crane(*args: str) -> str:
        proc = subprocess.run(
            [str(artifacts.crane), *args], capture_output=True, text=True, env=env, check=False
        )
        if proc.returncode != 0:
            raise NodeError(f"crane {' '.join(args)} failed:\n{proc.stderr}")
        return proc.stdout.strip()

    def image(ref: str, layer: str, *mutations: str) -> None:
        crane("append", "-f", str(artifacts.layer(layer)), "-t", ref)
        crane("mutate", ref, "--set-platform", "linux/amd64", *mutations, "-t", ref)

    image(
        images.executor,
        "executor",
        "--entrypoint=/kaniko/executor",
        "--env=DOCKER_CONFIG=/kaniko/.docker/",
        "--env=SSL_CERT_DIR=/kaniko/ssl/certs",
        "--env=HOME=/root",
        "--env=PATH=/usr/local/bin:/usr/bin:/bin:/kaniko",
        "--workdir=/workspace",
    )
    image(images.busybox, "busybox", "--env=PATH=/bin", "--cmd=/bin/sh")
    image(images.pause, "busybox", "--entrypoint=/bin/sleep,2147483647")
    log(f"pushed {images.executor}, {images.busybox}, {images.pause}")
    return images


def operator_settings(images: NodeImages, insecure_registries: Sequence[str]) -> dict[str, str]:
    """The ``AUTOBUILD_*`` settings an operator needs to build on this node: the executor
    image, the loopback registries as insecure, and build pods on the node's host network
    (git and the registry are on 127.0.0.1), tolerating its taint."""
    patch = {
        "hostNetwork": True,
        "nodeSelector": {NODE_LABEL[0]: NODE_LABEL[1]},
        "tolerations": [{"key": NODE_TAINT[0], "operator": "Exists", "effect": NODE_TAINT[2]}],
    }
    return {
        "AUTOBUILD_EXECUTOR_IMAGE": images.executor,
        "AUTOBUILD_INSECURE_REGISTRIES": ",".join(insecure_registries),
        "AUTOBUILD_BUILD_POD_PATCH": json.dumps(patch),
        # Small requests: the node is a shared development machine.
        "AUTOBUILD_CPU_REQUEST": "100m",
        "AUTOBUILD_MEMORY_REQUEST": "128Mi",
    }


def crane_digest(artifacts: NodeArtifacts, ref: str) -> str:
    """The registry's digest of ``ref`` (``sha256:...``), as ``crane digest`` reads it."""
    proc = subprocess.run(
        [str(artifacts.crane), "digest", ref], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise NodeError(f"crane digest {ref} failed:\n{proc.stderr}")
    return proc.stdout.strip()


# --------------------------------------------------------------------------------------
# Config files
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeLayout:
    """The node's files inside the cluster's state dir."""

    dir: Path

    @property
    def host_sources(self) -> dict[str, Path]:
        """Host path -> the state dir's directory bind-mounted there."""
        return {p: self.dir / "host" / p.strip("/").replace("/", "-") for p in HOST_PATHS}

    @property
    def kernel_tunables(self) -> dict[str, Path]:
        """/proc/sys file -> the state dir's file bind-mounted over it."""
        return {
            p: self.dir / "sysctl" / p.removeprefix("/proc/sys/").replace("/", ".")
            for p in KUBELET_KERNEL_TUNABLES
        }

    @property
    def containerd_config(self) -> Path:
        return self.dir / "containerd.toml"

    @property
    def containerd_socket(self) -> Path:
        return self.dir / "containerd.sock"

    @property
    def kubelet_config(self) -> Path:
        return self.dir / "kubelet.yaml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.dir / "cni" / "net.d"

    @property
    def certs_d(self) -> Path:
        return self.dir / "certs.d"

    @property
    def resolv_conf(self) -> Path:
        return self.dir / "resolv.conf"

    @property
    def ready_file(self) -> Path:
        return self.dir / "namespace-ready"


def containerd_config(layout: NodeLayout, artifacts: NodeArtifacts, pause_image: str) -> str:
    """containerd 1.6's config (version 2): own root, state and socket; CRI tuned for here."""
    d = layout.dir
    return f"""version = 2
root = "{d / "containerd" / "root"}"
state = "{d / "containerd" / "state"}"
plugin_dir = ""

[grpc]
  address = "{layout.containerd_socket}"

[ttrpc]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d / "containerd" / "opt"}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_image}"
  # This machine lacks CAP_SYS_RESOURCE: without it runc cannot write oom_score_adj and fails
  # with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  max_container_log_line_size = 16384

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{artifacts.runc}"
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{artifacts.cni_bin_dir}"
    conf_dir = "{layout.cni_conf_dir}"

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{layout.certs_d}"
"""


def registry_hosts_toml(registry: str) -> str:
    """containerd's host config for the loopback registry: plain HTTP."""
    return f"""server = "http://{registry}"

[host."http://{registry}"]
  capabilities = ["pull", "resolve"]
"""


def cni_config() -> str:
    """A bridge without a gateway or masquerading: pod-to-pod only, no route off the node."""
    return json.dumps(
        {
            "cniVersion": "0.4.0",
            "name": "autobuild",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": False,
                    "isDefaultGateway": False,
                    "ipMasq": False,
                    "hairpinMode": False,
                    "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_SUBNET}]]},
                }
            ],
        },
        indent=2,
    )


def kubelet_config(
    layout: NodeLayout, pki: Path, *, port: int, healthz_port: int
) -> dict[str, Any]:
    """The KubeletConfiguration: loopback only, cgroupfs on cgroup v1, loose eviction."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": "127.0.0.1",
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "tlsCertFile": str(pki / "kubelet.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet.key"),
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        # 1.35+ refuses cgroup v1 unless told; this machine has only v1.
        "failCgroupV1": False,
        "failSwapOn": False,
        "resolvConf": str(layout.resolv_conf),
        "clusterDomain": "cluster.local",
        "registerWithTaints": [
            {"key": NODE_TAINT[0], "value": NODE_TAINT[1], "effect": NODE_TAINT[2]}
        ],
        # A shared development machine: do not evict builds because its disk is 80% full.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "maxPods": 30,
    }


# --------------------------------------------------------------------------------------
# Host state: what the node changes, and putting it back
# --------------------------------------------------------------------------------------


def create_mountpoints() -> list[str]:
    """Create the missing host paths (empty dirs, the bind mounts' targets); returns every
    directory created, parents first, so :func:`remove_mountpoints` can take them back."""
    created: list[str] = []
    for path in HOST_PATHS:
        missing = []
        p = Path(path)
        while not p.exists():
            missing.append(p)
            p = p.parent
        for directory in reversed(missing):
            directory.mkdir()
            created.append(str(directory))
    return created


def remove_mountpoints(created: Sequence[str]) -> None:
    """Remove the directories :func:`create_mountpoints` made (deepest first); they are
    empty on the host: everything went into the bind-mounted state dir."""
    for path in reversed(created):
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(path)


def mount_namespace(pid: int) -> str:
    """``mnt:[inode]`` of a process, or ``""`` when it is gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return ""


def _pids() -> Iterator[int]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def kubepods_cgroups() -> list[Path]:
    """Every ``kubepods`` cgroup (one per v1 hierarchy; the v2 root if unified)."""
    found = []
    for hierarchy in sorted(CGROUP_ROOT.iterdir()) if CGROUP_ROOT.is_dir() else []:
        candidate = hierarchy / KUBEPODS_CGROUP
        if candidate.is_dir():
            found.append(candidate)
    top = CGROUP_ROOT / KUBEPODS_CGROUP
    if top.is_dir() and top not in found:
        found.append(top)
    return found


def _cgroup_tree(top: Path) -> list[Path]:
    """``top`` and every cgroup below it, deepest first (the order rmdir needs)."""
    tree = [Path(root) for root, _dirs, _files in os.walk(top)]
    return sorted(tree, key=lambda p: len(p.parts), reverse=True)


def _cgroup_pids(cgroup: Path) -> list[int]:
    for name in ("cgroup.procs", "tasks"):
        with contextlib.suppress(OSError):
            return [int(x) for x in (cgroup / name).read_text().split()]
    return []


def clean_host(namespace: str, created_dirs: Sequence[str], log: Log, timeout: float = 30) -> None:
    """Undo what the node did to the host, after its components stopped:

    1. SIGKILL every process in the ``kubepods`` cgroups (the pods' containers) and in the
       node's mount namespace ``namespace`` (containerd's shims, which outlive containerd);
       once the last one is gone the namespace and all its mounts disappear with it;
    2. remove the ``kubepods`` cgroup trees, the CNI bridge and the created mount points.
    """
    deadline = time.monotonic() + timeout
    while True:
        victims = {
            pid
            for top in kubepods_cgroups()
            for cg in _cgroup_tree(top)
            for pid in _cgroup_pids(cg)
        }
        if namespace:
            victims |= {pid for pid in _pids() if mount_namespace(pid) == namespace}
        victims.discard(os.getpid())
        if not victims:
            break
        for pid in victims:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise NodeError(f"processes of the real node would not die: {sorted(victims)}")
        time.sleep(0.1)
    for top in kubepods_cgroups():
        for cgroup in _cgroup_tree(top):
            while True:
                try:
                    cgroup.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    # A killed process leaves its cgroup a moment after it is reaped.
                    if time.monotonic() > deadline:
                        raise NodeError(f"cannot remove cgroup {cgroup}: {e}") from e
                    time.sleep(0.1)
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        subprocess.run(["ip", "link", "delete", BRIDGE], check=False, capture_output=True)
    remove_mountpoints(created_dirs)
    log("real node: host cleaned (processes, cgroups, bridge, mount points)")


@dataclass(frozen=True)
class HostSnapshot:
    """What the real node may touch on the host, for before/after comparisons."""

    mounts: frozenset[str]
    cgroups: frozenset[str]
    links: frozenset[str]
    host_paths: frozenset[str]
    node_processes: frozenset[str]
    kernel_tunables: frozenset[str]

    def differences(self, other: HostSnapshot) -> dict[str, tuple[list[str], list[str]]]:
        """{field: (only in self, only in other)} for each field that differs."""
        out = {}
        for name in (
            "mounts",
            "cgroups",
            "links",
            "host_paths",
            "node_processes",
            "kernel_tunables",
        ):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                out[name] = (sorted(mine - theirs), sorted(theirs - mine))
        return out


def write_kernel_tunables(layout: NodeLayout) -> None:
    """The files holding the values the kubelet wants (see ``KUBELET_KERNEL_TUNABLES``)."""
    for host, source in layout.kernel_tunables.items():
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(KUBELET_KERNEL_TUNABLES[host] + "\n")


def host_snapshot(node_binaries: Sequence[Path]) -> HostSnapshot:
    """The host's mounts, cgroup dirs (two levels), network links, host paths of the node,
    the processes running any of ``node_binaries`` (containerd, its shim, runc, kubelet) and
    the kernel settings the kubelet cares about."""
    mounts = frozenset(
        line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
    )
    cgroups = set()
    if CGROUP_ROOT.is_dir():
        for hierarchy in CGROUP_ROOT.iterdir():
            with contextlib.suppress(OSError):
                for child in hierarchy.iterdir():
                    if child.is_dir():
                        cgroups.add(str(child))
    links = (
        frozenset(os.listdir("/sys/class/net")) if Path("/sys/class/net").is_dir() else frozenset()
    )
    exes = {str(p) for p in node_binaries}
    processes = set()
    for pid in _pids():
        with contextlib.suppress(OSError):
            exe = os.readlink(f"/proc/{pid}/exe")
            if exe in exes:
                processes.add(f"{pid} {exe}")
    return HostSnapshot(
        mounts=mounts,
        cgroups=frozenset(cgroups),
        links=links,
        host_paths=frozenset(p for p in HOST_PATHS if os.path.lexists(p)),
        node_processes=frozenset(processes),
        kernel_tunables=frozenset(
            f"{p}={Path(p).read_text().strip()}" for p in KUBELET_KERNEL_TUNABLES
        ),
    )


def acquire_host_lock(cache_root: Path) -> int:
    """An exclusive lock (an fd) meaning "a real node runs on this host"; the namespace holder
    inherits it, so it is held exactly as long as the node runs."""
    cache_root.mkdir(parents=True, exist_ok=True)
    path = cache_root / "realnode.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise NodeError(
            f"another real node runs on this host (lock {path} is held): stop it first "
            "(`make cluster-down`); the kubepods cgroups are global"
        ) from None
    return fd


def holder_argv(layout: NodeLayout) -> list[str]:
    """The mount-namespace holder: bind-mount the state dir over the host paths (and the
    kernel tunables' files) inside a private mount namespace, say so, then sleep, holding the
    namespace and the host lock."""
    script = (
        "set -e\n"
        'while [ "$#" -gt 1 ]; do mount --bind "$1" "$2"; shift 2; done\n'
        ': > "$1"\n'
        "exec sleep infinity\n"
    )
    binds = {**layout.host_sources, **layout.kernel_tunables}
    pairs = [str(x) for host, src in binds.items() for x in (src, host)]
    return [
        shutil.which("unshare") or "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        script,
        "realnode-namespace",
        *pairs,
        str(layout.ready_file),
    ]


def in_namespace(holder_pid: int, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside the holder's mount namespace."""
    return [shutil.which("nsenter") or "nsenter", f"--mount=/proc/{holder_pid}/ns/mnt", "--", *argv]
