#!/usr/bin/env python3
"""A real local Kubernetes control plane for tests, the demo and benchmarks.

The binaries (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok)
are built from the Go modules pinned in ``versions.json`` (see ``gen_gomod.py``) and cached
outside the repository, keyed by the pins:

    ${AUTOBUILD_CACHE_DIR:-~/.cache/autobuild}/controlplane/<key>/bin/

Command line (``make controlplane``, ``make cluster-up``, ``make cluster-down`` call it)::

    python -m tests.controlplane.localcluster build              # build what is missing
    python -m tests.controlplane.localcluster up --state-dir .cluster
    python -m tests.controlplane.localcluster status --state-dir .cluster
    python -m tests.controlplane.localcluster down --state-dir .cluster

From Python::

    from localcluster import LocalCluster
    with LocalCluster() as cluster:          # a fresh temp dir, torn down on exit
        cluster.kubectl("get", "nodes")
        print(cluster.kubeconfig, cluster.server)

Everything listens on 127.0.0.1 only, on free ports. Only the standard library is needed to
build; starting a cluster also needs ``cryptography`` (for the PKI).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.controlplane import realnode

HERE = Path(__file__).resolve().parent
VERSIONS_FILE = HERE / "versions.json"
KWOK_MODULE_DIR = HERE / "kwok"

# Bump when the way the binaries are built changes (flags, stages, layout): it is part of
# the cache key, so every machine rebuilds once.
BUILD_RECIPE = "1"

KUBE_PACKAGES = {
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
    "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
    "kubectl": "k8s.io/kubernetes/cmd/kubectl",
    # Only the real node (``--real-node``) runs it; built with the others, which share
    # most of its packages.
    "kubelet": "k8s.io/kubernetes/cmd/kubelet",
}
ETCD_PACKAGE = "go.etcd.io/etcd/server/v3"
KWOK_PACKAGE = "sigs.k8s.io/kwok/cmd/kwok"
BINARIES = ("etcd", *KUBE_PACKAGES, "kwok")

# The stages kwok plays, taken from the pinned kwok module (kwok has no default stages).
KWOK_STAGE_FILES = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
)

LOOPBACK = "127.0.0.1"
SERVICE_CIDR = "127.0.100.0/24"
SERVICE_IP = "127.0.100.1"
POD_CIDR = "10.244.0.0/16"
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
FAKE_NODE_VALUE = "fake"

Log = Callable[[str], None]


def _stderr_log(msg: str) -> None:
    print(f"[controlplane] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# Versions, cache key, build
# --------------------------------------------------------------------------------------


def load_versions() -> dict[str, str]:
    """The pins: ``kubernetes`` (v1.X.Y), ``etcd`` (v3.X.Y), ``kwok`` (v0.X.Y)."""
    data = json.loads(VERSIONS_FILE.read_text())
    return {k: str(v) for k, v in data.items() if not k.startswith("_")}


def cache_root() -> Path:
    base = os.environ.get("AUTOBUILD_CACHE_DIR") or str(Path.home() / ".cache" / "autobuild")
    return Path(base) / "controlplane"


def cache_key() -> str:
    """``<kubernetes version>-<hash>`` of everything that decides what gets built."""
    h = hashlib.sha256()
    h.update(f"recipe={BUILD_RECIPE}\n".encode())
    h.update(f"platform={sys.platform}/{platform.machine()}\n".encode())
    h.update(("stages=" + ",".join(KWOK_STAGE_FILES) + "\n").encode())
    for path in (
        VERSIONS_FILE,
        HERE / "go.mod",
        HERE / "go.sum",
        KWOK_MODULE_DIR / "go.mod",
        KWOK_MODULE_DIR / "go.sum",
    ):
        h.update(f"{path.relative_to(HERE)}\n".encode())
        h.update(path.read_bytes())
    return f"{load_versions()['kubernetes']}-{h.hexdigest()[:12]}"


@dataclass(frozen=True)
class Binaries:
    """The built control plane: ``bin_dir`` holds the six binaries."""

    root: Path

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    @property
    def kwok_stages(self) -> Path:
        return self.root / "kwok" / "stages.yaml"

    @property
    def manifest(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.root / "manifest.json").read_text())
        return data

    def path(self, name: str) -> Path:
        return self.bin_dir / name

    @property
    def kubectl(self) -> Path:
        return self.path("kubectl")

    def complete(self) -> bool:
        return (self.root / "manifest.json").is_file() and all(
            os.access(self.path(b), os.X_OK) for b in BINARIES
        )


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CGO_ENABLED="0",
        GOWORK="off",
        GOFLAGS="-mod=readonly",
        # Never switch or download a Go toolchain: build with the machine's Go.
        GOTOOLCHAIN="local",
    )
    return env


def _run_go(args: Sequence[str], cwd: Path, log: Log) -> str:
    log("$ go " + " ".join(args))
    proc = subprocess.run(
        ["go", *args], cwd=cwd, env=_go_env(), capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise BuildError(
            f"`go {' '.join(args)}` in {cwd} failed (exit {proc.returncode}):\n"
            f"{proc.stderr[-8000:]}"
        )
    return proc.stdout


class BuildError(RuntimeError):
    pass


def _module_info(module: str, cwd: Path, log: Log) -> dict[str, Any]:
    out = _run_go(["list", "-m", "-json", module], cwd, log)
    info: dict[str, Any] = json.loads(out)
    return info


def _kube_ldflags(version: str, build_date: str) -> str:
    major, minor = version.lstrip("v").split(".")[:2]
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=archive",
            f"-X {pkg}.buildDate={build_date}",
        ]
    return " ".join(flags)


def ensure_node_artifacts(*, force: bool = False, log: Log = _stderr_log) -> realnode.NodeArtifacts:
    """The real node's executor, crane, Debian packages and image layers (built if missing)."""
    return realnode.ensure_node_artifacts(
        cache_root(),
        load_versions(),
        lambda args, cwd: _run_go(args, cwd, log),
        log,
        force=force,
    )


def ensure_binaries(*, force: bool = False, log: Log = _stderr_log) -> Binaries:
    """Return the cached binaries for the current pins, building them first if missing.

    Fast no-op when cached (no ``go`` invocation). Builds under an exclusive lock into a
    temporary directory that is renamed into place, so a crash never leaves a half cache.
    """
    key = cache_key()
    root = cache_root()
    target = Binaries(root / key)
    if target.complete() and not force:
        return target
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.complete() and not force:
            return target
        _build(target, key, log)
    return target


def _build(target: Binaries, key: str, log: Log) -> None:
    if shutil.which("go") is None:
        raise BuildError("`go` is not on PATH: the control plane is built from Go modules")
    versions = load_versions()
    tmp = Binaries(Path(tempfile.mkdtemp(prefix=f".{key}.", dir=target.root.parent)))
    tmp.bin_dir.mkdir()
    log(f"building the control plane {key} into {target.root} (cold: tens of minutes)")
    timings: dict[str, float] = {}
    try:
        go_version = _run_go(["version"], HERE, log).strip()
        kube = _module_info("k8s.io/kubernetes", HERE, log)
        if kube["Version"] != versions["kubernetes"]:
            raise BuildError(
                f"go.mod pins k8s.io/kubernetes {kube['Version']}, versions.json says "
                f"{versions['kubernetes']}: run tests/controlplane/gen_gomod.py"
            )
        build_date = str(kube.get("Time") or "1970-01-01T00:00:00Z")

        start = time.monotonic()
        _run_go(
            [
                "build",
                "-trimpath",
                "-ldflags",
                _kube_ldflags(versions["kubernetes"], build_date),
                "-o",
                f"{tmp.bin_dir}/",
                *KUBE_PACKAGES.values(),
            ],
            HERE,
            log,
        )
        timings["kubernetes"] = time.monotonic() - start

        etcd = _module_info("go.etcd.io/etcd/server/v3", HERE, log)
        if etcd["Version"] != versions["etcd"]:
            raise BuildError(
                f"go.mod resolves etcd server {etcd['Version']}, versions.json says "
                f"{versions['etcd']}: run tests/controlplane/gen_gomod.py"
            )
        start = time.monotonic()
        _run_go(
            [
                "build",
                "-trimpath",
                "-ldflags",
                f"-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=module-{versions['etcd']}",
                "-o",
                str(tmp.path("etcd")),
                ETCD_PACKAGE,
            ],
            HERE,
            log,
        )
        timings["etcd"] = time.monotonic() - start

        start = time.monotonic()
        kwok_version = versions["kwok"].lstrip("v")
        _run_go(
            [
                "build",
                "-trimpath",
                "-ldflags",
                f"-s -w -X sigs.k8s.io/kwok/pkg/consts.Version={kwok_version}",
                "-o",
                str(tmp.path("kwok")),
                KWOK_PACKAGE,
            ],
            KWOK_MODULE_DIR,
            log,
        )
        timings["kwok"] = time.monotonic() - start

        kwok_dir = Path(_module_info("sigs.k8s.io/kwok", KWOK_MODULE_DIR, log)["Dir"])
        tmp.kwok_stages.parent.mkdir()
        docs = []
        for rel in KWOK_STAGE_FILES:
            docs.append(f"# from sigs.k8s.io/kwok@{versions['kwok']}/{rel}\n")
            docs.append((kwok_dir / rel).read_text().rstrip("\n") + "\n---\n")
        tmp.kwok_stages.write_text("".join(docs))

        manifest = {
            "key": key,
            "versions": versions,
            "go": go_version,
            "build_seconds": {k: round(v, 1) for k, v in timings.items()},
            "built_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        (tmp.root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if target.root.exists():
            shutil.rmtree(target.root)
        tmp.root.rename(target.root)
        log(f"built in {sum(timings.values()):.0f}s: {manifest['build_seconds']}")
    finally:
        if tmp.root.exists():
            shutil.rmtree(tmp.root, ignore_errors=True)


# --------------------------------------------------------------------------------------
# PKI and kubeconfigs
# --------------------------------------------------------------------------------------


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _make_pki(pki: Path) -> None:
    """Cluster CA, front-proxy CA, apiserver serving cert, client certs and the
    service-account key pair; all ECDSA P-256 (fast to generate)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    pki.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    until = now + datetime.timedelta(days=365)

    def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def name(cn: str, orgs: Sequence[str] = ()) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
        return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def signed(
        stem: str,
        subject: x509.Name,
        key: ec.EllipticCurvePrivateKey,
        issuer: tuple[ec.EllipticCurvePrivateKey, x509.Name],
        *,
        is_ca: bool,
        extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
    ) -> None:
        """Sign ``key``'s certificate with ``issuer`` and write STEM.crt / STEM.key."""
        issuer_key, issuer_name = issuer
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=is_ca,
                    crl_sign=is_ca,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        cert = builder.sign(issuer_key, hashes.SHA256())
        (pki / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_private(pki / f"{stem}.key", key_pem(key))

    def make_ca(stem: str, cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Name]:
        key = ec.generate_private_key(ec.SECP256R1())
        ca_name = name(cn)
        subject_key_id = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        signed(stem, ca_name, key, (key, ca_name), is_ca=True, extensions=[(subject_key_id, False)])
        return key, ca_name

    cluster_ca = make_ca("ca", "autobuild-local-ca")
    front_proxy_ca = make_ca("front-proxy-ca", "autobuild-local-front-proxy-ca")

    def issue(
        stem: str,
        cn: str,
        orgs: Sequence[str] = (),
        *,
        server: bool = False,
        dns: Sequence[str] = (),
        ips: Sequence[str] = (),
        ca: tuple[ec.EllipticCurvePrivateKey, x509.Name] = cluster_ca,
    ) -> None:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        extensions: list[tuple[x509.ExtensionType, bool]] = [
            (x509.ExtendedKeyUsage([usage]), False),
            (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca[0].public_key()), False),
        ]
        if server:
            sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
            sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
            extensions.append((x509.SubjectAlternativeName(sans), False))
        key = ec.generate_private_key(ec.SECP256R1())
        signed(stem, name(cn, orgs), key, ca, is_ca=False, extensions=extensions)

    issue(
        "apiserver",
        "kube-apiserver",
        server=True,
        dns=(
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ),
        ips=(LOOPBACK, SERVICE_IP),
    )
    issue("admin", "admin", ["system:masters"])
    # The aggregation layer's client cert (requestheader authentication), as kubeadm sets up.
    issue("front-proxy-client", "front-proxy-client", ca=front_proxy_ca)
    issue("controller-manager", "system:kube-controller-manager")
    issue("scheduler", "system:kube-scheduler")
    # kwok plays every kubelet: it updates Nodes, Leases and Pod status, and deletes Pods.
    issue("kwok", "kwok-controller", ["system:masters"])
    # The real node: the kubelet's client identity (also system:masters: the cluster
    # authorizes with RBAC only, no Node authorizer), its serving cert (the apiserver checks
    # it when it reaches the kubelet as `localhost`) and the apiserver's client cert for the
    # kubelet API (logs, exec, attach).
    issue("kubelet-client", "system:node:localhost", ["system:nodes", "system:masters"])
    issue("kubelet", "localhost", server=True, dns=("localhost",), ips=(LOOPBACK,))
    issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ["system:masters"])

    sa_key = ec.generate_private_key(ec.SECP256R1())
    _write_private(pki / "sa.key", key_pem(sa_key))
    (pki / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _kubeconfig_text(server: str, pki: Path, user: str) -> str:
    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    return f"""apiVersion: v1
kind: Config
clusters:
- name: autobuild-local
  cluster:
    server: {server}
    certificate-authority-data: {b64(pki / "ca.crt")}
users:
- name: {user}
  user:
    client-certificate-data: {b64(pki / f"{user}.crt")}
    client-key-data: {b64(pki / f"{user}.key")}
contexts:
- name: autobuild-local
  context:
    cluster: autobuild-local
    user: {user}
current-context: autobuild-local
"""


# --------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (bound to port 0, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _set_pdeathsig() -> None:  # pragma: no cover - runs in the child
    """Make the child die (SIGKILL) with the (test) process that started it: a throwaway
    cluster needs no graceful shutdown, and SIGTERM to all at once leaves the apiserver
    waiting for its dead etcd."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def _pid_alive(pid: int, exe: str | None = None) -> bool:
    """True if ``pid`` runs (and, if ``exe`` is given, runs that binary; guards PID reuse)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    if exe is None:
        return True
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode()
    except OSError:
        return False
    return argv0 == exe


def _pgid(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except OSError:
        return -1


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Component:
    name: str
    argv: list[str]
    log: Path
    pid: int = 0
    proc: subprocess.Popen[bytes] | None = None
    # What the process finally runs when argv[0] execs another program (nsenter, unshare).
    exe: str = ""

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return self.pid > 0 and _pid_alive(self.pid, self.exe or self.argv[0])

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "argv": self.argv,
            "log": str(self.log),
            "pid": self.pid,
            "exe": self.exe,
        }


class ClusterError(RuntimeError):
    pass


class KubectlError(subprocess.CalledProcessError):
    """A failed kubectl run; unlike CalledProcessError its message shows kubectl's stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr: {self.stderr}\nstdout: {self.output}"


def run_kubectl(
    kubectl: Path,
    kubeconfig: Path,
    *args: str,
    input: str | None = None,
    check: bool = True,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``kubectl --kubeconfig=... ARGS``; text output; KubectlError if check and failed."""
    proc = subprocess.run(
        [str(kubectl), f"--kubeconfig={kubeconfig}", *args],
        input=input,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise KubectlError(proc.returncode, proc.args, proc.stdout, proc.stderr)
    return proc


def wait_crd_established(kubectl: Path, kubeconfig: Path, crd: str, timeout: float = 60) -> None:
    """Wait until a CRD is Established. ``kubectl wait`` fails at once (rather than waiting)
    while a just-created CRD has no status yet, which a loaded machine makes likely."""
    deadline = time.monotonic() + timeout
    jsonpath = "jsonpath={.status.conditions[?(@.type=='Established')].status}"
    while True:
        found = run_kubectl(kubectl, kubeconfig, "get", f"crd/{crd}", "-o", jsonpath, check=False)
        if found.returncode == 0 and found.stdout.strip() == "True":
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"CRD {crd} not Established after {timeout:g}s: {found.stderr}")
        time.sleep(0.2)


def cluster_env(kubeconfig: Path, bin_dir: Path) -> dict[str, str]:
    """``os.environ`` with KUBECONFIG set and the built binaries first on PATH."""
    env = dict(os.environ)
    env["KUBECONFIG"] = str(kubeconfig)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


# --------------------------------------------------------------------------------------
# The cluster
# --------------------------------------------------------------------------------------


@dataclass
class Ports:
    etcd_client: int = 0
    etcd_peer: int = 0
    apiserver: int = 0
    controller_manager: int = 0
    scheduler: int = 0
    kwok: int = 0
    # The real node's (0 without one).
    registry: int = 0
    kubelet: int = 0
    kubelet_healthz: int = 0


@dataclass
class LocalCluster:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok on loopback.

    ``state_dir`` (created if missing; a fresh temp dir if None) receives the PKI,
    kubeconfigs, etcd data, ``logs/<component>.log`` and ``state.json``. After
    :meth:`start`: ``kubeconfig`` (admin, client cert CN=admin O=system:masters), ``server``
    (https URL), ``kubectl`` (the built kubectl) and ``bin_dir`` are usable.
    """

    state_dir: Path | None = None
    binaries: Binaries | None = None
    nodes: int = 1
    # Also run a real node (kubelet, containerd, runc) and a registry with its images.
    real_node: bool = False
    # In tests the components die with the process that started them (PR_SET_PDEATHSIG);
    # ``up`` turns that off so the cluster outlives the command.
    die_with_parent: bool = True
    log: Log = _stderr_log
    verbosity: int = 1
    # An audit policy (YAML text) for kube-apiserver, off when None: the API server then writes
    # JSON lines to ``audit_log``, so a benchmark can count one client's requests server-side.
    audit_policy: str | None = None
    ports: Ports = field(default_factory=Ports)
    components: list[Component] = field(default_factory=list)
    startup_seconds: float = 0.0
    # Seconds from start() to each readiness milestone (for the docs and benchmarks).
    milestones: dict[str, float] = field(default_factory=dict)
    # The real node's record (state.json "real_node"): namespace holder, created host dirs,
    # images; empty without one.
    node: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._t0 = 0.0
        if self.state_dir is None:
            self.state_dir = Path(tempfile.mkdtemp(prefix="autobuild-cluster-"))
        self.state_dir = Path(self.state_dir).resolve()

    # ---- paths -------------------------------------------------------------------------
    @property
    def dir(self) -> Path:
        assert self.state_dir is not None
        return self.state_dir

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def log_dir(self) -> Path:
        return self.dir / "logs"

    @property
    def pki(self) -> Path:
        return self.dir / "pki"

    @property
    def audit_log(self) -> Path:
        return self.log_dir / "audit.log"

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    @property
    def server(self) -> str:
        return f"https://{LOOPBACK}:{self.ports.apiserver}"

    @property
    def bin_dir(self) -> Path:
        return self._bins().bin_dir

    @property
    def kubectl_path(self) -> Path:
        return self._bins().kubectl

    def _bins(self) -> Binaries:
        if self.binaries is None:
            self.binaries = ensure_binaries(log=self.log)
        return self.binaries

    # ---- helpers for users -------------------------------------------------------------
    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl against this cluster (see :func:`run_kubectl`)."""
        return run_kubectl(
            self.kubectl_path,
            self.kubeconfig,
            *args,
            input=input,
            check=check,
            timeout=timeout,
        )

    def env(self) -> dict[str, str]:
        """``os.environ`` plus KUBECONFIG for this cluster and the binaries on PATH."""
        return cluster_env(self.kubeconfig, self.bin_dir)

    def rss_bytes(self) -> dict[str, int]:
        """Resident memory of each component now."""
        return {c.name: _rss_bytes(c.pid) for c in self.components if c.alive()}

    def is_running(self) -> bool:
        return bool(self.components) and all(c.alive() for c in self.components)

    def api_raw(self, method: str, path: str, body: Any = None, timeout: float = 10) -> bytes:
        """A request to the apiserver as admin (stdlib only); raises HTTPError on >= 400."""
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx)
        )
        with opener.open(req, timeout=timeout) as resp:
            raw: bytes = resp.read()
        return raw

    def api(self, method: str, path: str, body: Any = None, timeout: float = 10) -> Any:
        """Like :meth:`api_raw`, decoding the JSON answer."""
        raw = self.api_raw(method, path, body, timeout)
        return json.loads(raw) if raw else None

    # ---- lifecycle ---------------------------------------------------------------------
    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = 120) -> Self:
        """Start every component and wait until the cluster can run a Job's pods."""
        if self.state_file.exists():
            other = LocalCluster.attach(self.dir, log=self.log)
            if other is not None and any(c.alive() for c in other.components):
                raise ClusterError(f"a cluster is already running in {self.dir}")
        bins = self._bins()
        node_artifacts = self._node_artifacts() if self.real_node else None
        t0 = self._t0 = time.monotonic()
        self.milestones = {}
        deadline = t0 + timeout
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        for stale in ("etcd-data", "pki", "kubeconfigs", "certs"):
            shutil.rmtree(self.dir / stale, ignore_errors=True)
        self.kubeconfig.unlink(missing_ok=True)
        ports = _free_ports(9 if self.real_node else 6)
        self.ports = Ports(*ports)
        _make_pki(self.pki)
        if self.audit_policy is not None:
            (self.dir / "audit-policy.yaml").write_text(self.audit_policy)
            self.audit_log.unlink(missing_ok=True)
        kcfg = self.dir / "kubeconfigs"
        kcfg.mkdir()
        users = ("controller-manager", "scheduler", "kwok")
        for user in (*users, "kubelet-client") if self.real_node else users:
            (kcfg / f"{user}.kubeconfig").write_text(_kubeconfig_text(self.server, self.pki, user))
        # Taken before anything starts, so a second real node fails at once; the namespace
        # holder inherits it.
        node_lock = realnode.acquire_host_lock(cache_root()) if self.real_node else None
        try:
            self._spawn("etcd", self._etcd_args(bins))
            self._spawn("kube-apiserver", self._apiserver_args(bins))
            self._wait(
                "etcd healthy", deadline, lambda: self._http_ok(self._etcd_url() + "/health")
            )
            self._wait("kube-apiserver /readyz", deadline, self._apiserver_ready)
            self._spawn("kube-controller-manager", self._controller_manager_args(bins))
            self._spawn("kube-scheduler", self._scheduler_args(bins))
            self._spawn("kwok", self._kwok_args(bins))
            # Written after the apiserver is up so a kubeconfig always points at a live server.
            _write_private(
                self.kubeconfig, _kubeconfig_text(self.server, self.pki, "admin").encode()
            )
            for i in range(self.nodes):
                self._create_node(f"kwok-node-{i}")
            self._wait(
                "kube-controller-manager /healthz",
                deadline,
                lambda: self._http_ok(
                    f"https://{LOOPBACK}:{self.ports.controller_manager}/healthz", tls=True
                ),
            )
            self._wait(
                "kube-scheduler /healthz",
                deadline,
                lambda: self._http_ok(
                    f"https://{LOOPBACK}:{self.ports.scheduler}/healthz", tls=True
                ),
            )
            self._wait(
                "kwok /healthz",
                deadline,
                lambda: self._http_ok(f"http://{LOOPBACK}:{self.ports.kwok}/healthz"),
            )
            self._wait("fake nodes Ready", deadline, self._nodes_ready)
            self._wait(
                "ServiceAccount default/default",
                deadline,
                lambda: self._exists("/api/v1/namespaces/default/serviceaccounts/default"),
            )
            if node_artifacts is not None and node_lock is not None:
                self._start_real_node(bins, node_artifacts, node_lock, deadline)
        except BaseException:
            self.log(f"start-up failed; logs in {self.log_dir}")
            self.stop()
            raise
        finally:
            if node_lock is not None:
                os.close(node_lock)
        self.startup_seconds = time.monotonic() - t0
        self._save_state(ready=True)
        self.log(f"control plane ready in {self.startup_seconds:.1f}s at {self.server}")
        return self

    def stop(self, grace: float = 10) -> None:
        """Stop the components in reverse start order (clients, apiserver, etcd last): SIGTERM
        to each one's process group, SIGKILL after ``grace`` seconds. Idempotent."""
        for c in reversed(self.components):
            self._stop_component(c, grace)
        self.components = []
        if self.node:
            realnode.clean_host(self.node["namespace"], self.node["created_dirs"], self.log)
            self.node = {}
        self.state_file.unlink(missing_ok=True)

    def restart(self, name: str, *, down_seconds: float = 0.0, timeout: float = 60) -> None:
        """Stop one component and start it again with the same arguments (outage tests)."""
        index = next(i for i, c in enumerate(self.components) if c.name == name)
        component = self.components.pop(index)
        self._stop_component(component, grace=10)
        time.sleep(down_seconds)
        self._spawn(name, component.argv)
        # Back in its place: stop() relies on the start order.
        self.components.insert(index, self.components.pop())
        if name == "kube-apiserver":
            self._wait_until(
                "kube-apiserver /readyz", time.monotonic() + timeout, self._apiserver_ready
            )
        self._save_state(ready=True)

    def _stop_component(self, c: Component, grace: float) -> None:
        """SIGTERM to the component's process group, SIGKILL after ``grace`` seconds."""
        if c.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(c.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while c.alive() and time.monotonic() < deadline:
                time.sleep(0.02)
            if c.alive():
                self.log(f"{c.name} (pid {c.pid}) ignored SIGTERM for {grace}s; SIGKILL")
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(c.pid, signal.SIGKILL)
        if c.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                c.proc.wait(timeout=5)
        else:
            end = time.monotonic() + 5
            while c.alive() and time.monotonic() < end:
                time.sleep(0.02)
        # Anything the component left in its process group goes too. (Linux does not
        # hand out a PID that is still some group's ID, so this only hits our group.)
        if _pgid(c.pid) in (c.pid, -1):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(c.pid, signal.SIGKILL)

    def cleanup(self) -> None:
        """Stop and delete the state dir (logs included)."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    @classmethod
    def attach(cls, state_dir: str | Path, *, log: Log = _stderr_log) -> LocalCluster | None:
        """The cluster recorded in ``state_dir/state.json`` (started by ``up``), or None."""
        state_file = Path(state_dir).resolve() / "state.json"
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            return None
        cluster = cls(state_dir=Path(state_dir), log=log, die_with_parent=False)
        cluster.binaries = Binaries(Path(state["binaries"]))
        cluster.ports = Ports(**state["ports"])
        cluster.components = [
            Component(
                name=c["name"],
                argv=c["argv"],
                log=Path(c["log"]),
                pid=c["pid"],
                exe=c.get("exe", ""),
            )
            for c in state["components"]
        ]
        cluster.startup_seconds = float(state.get("startup_seconds", 0.0))
        cluster.node = dict(state.get("real_node") or {})
        cluster.real_node = bool(cluster.node)
        return cluster

    def healthy(self) -> bool:
        """All components alive and the apiserver ready."""
        return self.is_running() and self._apiserver_ready()

    # ---- internals ---------------------------------------------------------------------
    def _save_state(self, *, ready: bool) -> None:
        state = {
            "ready": ready,
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "binaries": str(self._bins().root),
            "ports": self.ports.__dict__,
            "components": [c.to_json() for c in self.components],
            "startup_seconds": round(self.startup_seconds, 2),
            "milestones": self.milestones,
            "real_node": self.node,
        }
        self.state_file.write_text(json.dumps(state, indent=2) + "\n")

    def _spawn(
        self,
        name: str,
        argv: list[str],
        *,
        exe: str = "",
        pass_fds: Sequence[int] = (),
        path_prefix: Sequence[Path] = (),
    ) -> None:
        log_path = self.log_dir / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG",)}
        env["HOME"] = str(self.dir)  # kwok & co. read ~/.kube, ~/.kwok: keep them in the dir
        if path_prefix:
            env["PATH"] = os.pathsep.join([*map(str, path_prefix), env.get("PATH", "")])
        with open(log_path, "ab") as out:
            out.write(f"\n==== {datetime.datetime.now().isoformat()} {argv!r}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                env=env,
                start_new_session=True,
                preexec_fn=_set_pdeathsig if self.die_with_parent else None,
                pass_fds=pass_fds,
            )
        self.components.append(Component(name, argv, log_path, proc.pid, proc, exe))
        self._save_state(ready=False)

    def _wait(self, what: str, deadline: float, check: Callable[[], bool]) -> None:
        self._wait_until(what, deadline, check)
        self.milestones[what] = round(time.monotonic() - self._t0, 2)

    def _wait_until(self, what: str, deadline: float, check: Callable[[], bool]) -> None:
        while True:
            for c in self.components:
                if not c.alive():
                    raise ClusterError(
                        f"{c.name} exited while waiting for {what}; last lines of {c.log}:\n"
                        f"{_tail(c.log)}"
                    )
            try:
                if check():
                    return
            except (OSError, ValueError, urllib.error.URLError, ssl.SSLError):
                pass
            if time.monotonic() > deadline:
                raise ClusterError(f"timed out waiting for {what}; logs in {self.log_dir}")
            time.sleep(0.1)

    def _http_ok(self, url: str, *, tls: bool = False) -> bool:
        ctx = None
        if tls:
            # The controller-manager's and scheduler's serving certs are self-signed.
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx)
        )
        with opener.open(url, timeout=2) as resp:
            return bool(resp.status == 200)

    def _apiserver_ready(self) -> bool:
        try:
            return self.api_raw("GET", "/readyz", timeout=2).strip() == b"ok"
        except (OSError, ssl.SSLError):  # URLError and HTTPError are OSErrors
            return False

    def _exists(self, path: str) -> bool:
        try:
            self.api("GET", path, timeout=2)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return False
            raise
        return True

    def _nodes_ready(self) -> bool:
        sel = f"{FAKE_NODE_ANNOTATION}"
        nodes = self.api("GET", "/api/v1/nodes", timeout=2)["items"]
        fake = [n for n in nodes if n["metadata"].get("annotations", {}).get(sel)]
        if len(fake) < self.nodes:
            return False
        for n in fake:
            conds = {c["type"]: c["status"] for c in n.get("status", {}).get("conditions", [])}
            if conds.get("Ready") != "True":
                return False
        return True

    def _create_node(self, name: str) -> None:
        resources = {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "1Ti"}
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {
                    FAKE_NODE_ANNOTATION: FAKE_NODE_VALUE,
                    "node.alpha.kubernetes.io/ttl": "0",
                },
                "labels": {
                    "kubernetes.io/arch": "amd64",
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/hostname": name,
                    "node-role.kubernetes.io/agent": "",
                    "type": "kwok",
                },
            },
            "status": {
                "allocatable": resources,
                "capacity": resources,
                "nodeInfo": {
                    "architecture": "amd64",
                    "operatingSystem": "linux",
                    "kubeletVersion": "fake",
                    "kubeProxyVersion": "fake",
                },
                "phase": "Running",
            },
        }
        self.api("POST", "/api/v1/nodes", node)

    def _etcd_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.etcd_client}"

    def _etcd_args(self, bins: Binaries) -> list[str]:
        peer = f"http://{LOOPBACK}:{self.ports.etcd_peer}"
        return [
            str(bins.path("etcd")),
            "--name=default",
            f"--data-dir={self.dir / 'etcd-data'}",
            f"--listen-client-urls={self._etcd_url()}",
            f"--advertise-client-urls={self._etcd_url()}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--initial-cluster-state=new",
            # A throwaway cluster: no fsync (as envtest does), warn-level logs.
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]

    def _apiserver_args(self, bins: Binaries) -> list[str]:
        pki = self.pki
        return [
            str(bins.path("kube-apiserver")),
            f"--etcd-servers={self._etcd_url()}",
            f"--bind-address={LOOPBACK}",
            f"--secure-port={self.ports.apiserver}",
            # Loopback only: advertise 127.0.0.1 and do not publish it as the endpoints of
            # the `kubernetes` Service (the reconciler refuses loopback endpoints).
            f"--advertise-address={LOOPBACK}",
            "--endpoint-reconciler-type=none",
            f"--cert-dir={self.dir / 'certs'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=RBAC",
            f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--service-account-issuer=https://{LOOPBACK}:{self.ports.apiserver}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--allow-privileged=true",
            "--profiling=false",
            f"--v={self.verbosity}",
            *self._audit_args(),
            *(self._apiserver_kubelet_args() if self.real_node else []),
        ]

    def _audit_args(self) -> list[str]:
        if self.audit_policy is None:
            return []
        return [
            f"--audit-policy-file={self.dir / 'audit-policy.yaml'}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            # Written by the request's own goroutine, not batched: counts are complete at once.
            "--audit-log-mode=blocking",
        ]

    def _apiserver_kubelet_args(self) -> list[str]:
        """How the apiserver reaches the real kubelet: by its Hostname address `localhost`
        only (never the InternalIP the kubelet detects), over TLS checked against the CA."""
        pki = self.pki
        return [
            "--kubelet-preferred-address-types=Hostname",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        ]

    def _component_serving_args(self, name: str, port: int) -> list[str]:
        kubeconfig = self.dir / "kubeconfigs" / f"{name}.kubeconfig"
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--bind-address={LOOPBACK}",
            f"--secure-port={port}",
            f"--cert-dir={self.dir / 'certs' / name}",
            "--leader-elect=false",
            "--profiling=false",
            f"--v={self.verbosity}",
        ]

    def _controller_manager_args(self, bins: Binaries) -> list[str]:
        pki = self.pki
        return [
            str(bins.path("kube-controller-manager")),
            *self._component_serving_args("controller-manager", self.ports.controller_manager),
            # Every default controller: job, garbage collector, namespace, serviceaccount,
            # serviceaccount-token, root-ca-cert-publisher, ttl-after-finished, node-lifecycle...
            "--controllers=*",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            # Each controller acts as its own ServiceAccount (kube-system/job-controller, ...)
            # with the system:controller:* RBAC roles, as in kubeadm clusters; under the
            # controller-manager's own identity most controllers are forbidden.
            "--use-service-account-credentials=true",
        ]

    def _scheduler_args(self, bins: Binaries) -> list[str]:
        return [
            str(bins.path("kube-scheduler")),
            *self._component_serving_args("scheduler", self.ports.scheduler),
        ]

    def _kwok_args(self, bins: Binaries) -> list[str]:
        return [
            str(bins.path("kwok")),
            f"--kubeconfig={self.dir / 'kubeconfigs' / 'kwok.kubeconfig'}",
            f"--config={bins.kwok_stages}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}={FAKE_NODE_VALUE}",
            "--node-lease-duration-seconds=40",
            f"--node-ip={LOOPBACK}",
            f"--cidr={POD_CIDR}",
            f"--server-address={LOOPBACK}:{self.ports.kwok}",
        ]

    # ---- the real node (realnode.py) ---------------------------------------------------
    @property
    def registry(self) -> str:
        """``127.0.0.1:PORT`` of the real node's registry (plain HTTP, no auth)."""
        if not self.node:
            raise ClusterError("this cluster has no real node (start it with real_node=True)")
        return str(self.node["registry"])

    @property
    def images(self) -> realnode.NodeImages:
        """The executor, busybox and pause images the harness pushed into :attr:`registry`."""
        if not self.node:
            raise ClusterError("this cluster has no real node (start it with real_node=True)")
        return realnode.NodeImages(**self.node["images"])

    @property
    def node_artifacts(self) -> realnode.NodeArtifacts:
        """The cached executor, crane, containerd, runc, ... of the real node."""
        if not self.node:
            raise ClusterError("this cluster has no real node (start it with real_node=True)")
        return realnode.NodeArtifacts(Path(self.node["artifacts"]))

    def operator_env(self, *extra_insecure_registries: str) -> dict[str, str]:
        """The ``AUTOBUILD_*`` settings for an operator building on the real node (its
        registry, and any ``extra_insecure_registries``, reached over plain HTTP)."""
        return realnode.operator_settings(self.images, (self.registry, *extra_insecure_registries))

    def _node_artifacts(self) -> realnode.NodeArtifacts:
        problems = realnode.host_problems()
        if problems:
            raise ClusterError("this host cannot run the real node: " + "; ".join(problems))
        return ensure_node_artifacts(log=self.log)

    def _start_real_node(
        self, bins: Binaries, artifacts: realnode.NodeArtifacts, lock: int, deadline: float
    ) -> None:
        """Registry + images, then the namespace holder, containerd and the kubelet; waits
        until the Node ``localhost`` is Ready."""
        layout = realnode.NodeLayout(self.dir / "node")
        shutil.rmtree(layout.dir, ignore_errors=True)
        for source in layout.host_sources.values():
            source.mkdir(parents=True)
        realnode.write_kernel_tunables(layout)
        registry = f"{LOOPBACK}:{self.ports.registry}"
        registry_dir = layout.dir / "registry"
        (registry_dir / "data").mkdir(parents=True)
        (registry_dir / "config.yml").write_text(
            "version: 0.1\n"
            "log: {level: warn}\n"
            f"storage: {{filesystem: {{rootdirectory: {registry_dir / 'data'}}}, "
            "delete: {enabled: true}}\n"
            f"http: {{addr: '{registry}'}}\n"
        )
        self._spawn(
            "registry", [str(artifacts.registry), "serve", str(registry_dir / "config.yml")]
        )
        self._wait("registry /v2/", deadline, lambda: self._http_ok(f"http://{registry}/v2/"))
        images = realnode.push_images(artifacts, registry, self.log)
        self.milestones["node images pushed"] = round(time.monotonic() - self._t0, 2)

        layout.containerd_config.write_text(
            realnode.containerd_config(layout, artifacts, images.pause)
        )
        hosts = layout.certs_d / registry
        hosts.mkdir(parents=True)
        (hosts / "hosts.toml").write_text(realnode.registry_hosts_toml(registry))
        layout.cni_conf_dir.mkdir(parents=True)
        (layout.cni_conf_dir / "10-autobuild.conflist").write_text(realnode.cni_config())
        # Pods resolve names against loopback only (nothing answers): no query leaves.
        layout.resolv_conf.write_text(f"nameserver {LOOPBACK}\n")
        layout.kubelet_config.write_text(
            json.dumps(
                realnode.kubelet_config(
                    layout,
                    self.pki,
                    port=self.ports.kubelet,
                    healthz_port=self.ports.kubelet_healthz,
                ),
                indent=2,
            )
        )

        self.node = {
            "dir": str(layout.dir),
            "registry": registry,
            "images": images.to_json(),
            "artifacts": str(artifacts.root),
            "namespace": "",
            "created_dirs": realnode.create_mountpoints(),
        }
        self._save_state(ready=False)
        # The holder inherits the host lock: held while the node's namespace lives.
        self._spawn("node-namespace", realnode.holder_argv(layout), exe="sleep", pass_fds=(lock,))
        holder = self.components[-1].pid
        self._wait("node mount namespace", deadline, layout.ready_file.exists)
        self.node["namespace"] = realnode.mount_namespace(holder)
        self._save_state(ready=False)

        self._spawn(
            "containerd",
            realnode.in_namespace(
                holder, [str(artifacts.containerd), f"--config={layout.containerd_config}"]
            ),
            exe=str(artifacts.containerd),
            # containerd finds its shim (containerd-shim-runc-v2) on PATH.
            path_prefix=(artifacts.debroot / "usr" / "bin",),
        )
        self._wait("containerd socket", deadline, layout.containerd_socket.exists)
        kubelet = str(bins.path("kubelet"))
        self._spawn(
            "kubelet",
            realnode.in_namespace(
                holder,
                [
                    kubelet,
                    f"--config={layout.kubelet_config}",
                    f"--kubeconfig={self.dir / 'kubeconfigs' / 'kubelet-client.kubeconfig'}",
                    f"--hostname-override={realnode.NODE_NAME}",
                    "--node-labels=" + "=".join(realnode.NODE_LABEL),
                    f"--v={self.verbosity}",
                ],
            ),
            exe=kubelet,
        )
        self._wait("real node Ready", deadline, self._real_node_ready)

    def _real_node_ready(self) -> bool:
        node = self.api("GET", f"/api/v1/nodes/{realnode.NODE_NAME}", timeout=2)
        conds = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
        return conds.get("Ready") == "True"


@contextlib.contextmanager
def local_cluster(
    state_dir: str | Path | None = None, *, keep: bool = False, **kwargs: Any
) -> Iterator[LocalCluster]:
    """Start a cluster, yield it, stop it; the state dir is deleted unless ``keep`` is set
    or the body raised (then the logs are kept and their path is printed)."""
    cluster = LocalCluster(state_dir=Path(state_dir) if state_dir else None, **kwargs)
    cluster.start()
    failed = False
    try:
        yield cluster
    except BaseException:
        failed = True
        raise
    finally:
        cluster.stop()
        if failed or keep:
            cluster.log(f"cluster logs kept in {cluster.log_dir}")
        else:
            shutil.rmtree(cluster.dir, ignore_errors=True)


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def _cmd_build(args: argparse.Namespace) -> int:
    bins = ensure_binaries(force=args.force)
    print(bins.bin_dir)
    if args.real_node:
        print(ensure_node_artifacts(force=args.force).root)
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir)
    existing = LocalCluster.attach(state_dir)
    if existing is not None:
        if existing.healthy() and existing.real_node == args.real_node:
            _stderr_log(f"already running at {existing.server}; kubeconfig {existing.kubeconfig}")
            return 0
        if existing.healthy():
            _stderr_log(
                "a cluster runs here "
                + ("with" if existing.real_node else "without")
                + " a real node; restarting it"
            )
        else:
            _stderr_log("found a stale or partial cluster; stopping it first")
        existing.stop()
    cluster = LocalCluster(
        state_dir=state_dir, die_with_parent=False, nodes=args.nodes, real_node=args.real_node
    )
    cluster.start(timeout=args.timeout)
    print(f"kubeconfig: {cluster.kubeconfig}")
    print(f"server:     {cluster.server}")
    print(f"kubectl:    {cluster.kubectl_path}")
    print(f"logs:       {cluster.log_dir}")
    print(f"ready in:   {cluster.startup_seconds:.1f}s {cluster.milestones}")
    if cluster.real_node:
        print(f"registry:   {cluster.registry} (plain HTTP)")
        for name, ref in cluster.images.to_json().items():
            print(f"image:      {name:<9} {ref}")
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    cluster = LocalCluster.attach(Path(args.state_dir))
    if cluster is None:
        _stderr_log(f"no cluster recorded in {args.state_dir}")
        return 0
    cluster.stop()
    (cluster.dir / "kubeconfig").unlink(missing_ok=True)
    _stderr_log("stopped")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    cluster = LocalCluster.attach(Path(args.state_dir))
    if cluster is None:
        print("not running")
        return 1
    healthy = cluster.healthy()
    print(f"{'running' if healthy else 'unhealthy'}: {cluster.server}")
    print(f"kubeconfig: {cluster.kubeconfig}")
    total = 0
    for c in cluster.components:
        rss = _rss_bytes(c.pid) if c.alive() else 0
        total += rss
        state = "up" if c.alive() else "DOWN"
        print(f"  {c.name:<24} pid {c.pid:<8} {state:<5} rss {rss / 2**20:7.1f} MiB")
    print(f"  {'total':<24} {'':<18} rss {total / 2**20:7.1f} MiB")
    return 0 if healthy else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("build", help="build and cache the binaries if missing")
    p.add_argument("--force", action="store_true", help="rebuild even if cached")
    p.add_argument(
        "--real-node", action="store_true", help="also the real node's artifacts (realnode.py)"
    )
    p.set_defaults(func=_cmd_build)
    for name, func, helptext in (
        ("up", _cmd_up, "start a cluster in the background (idempotent)"),
        ("down", _cmd_down, "stop it (idempotent)"),
        ("status", _cmd_status, "show the components, exit 1 unless healthy"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--state-dir", default=".cluster")
        p.set_defaults(func=func)
        if name == "up":
            p.add_argument("--nodes", type=int, default=1)
            p.add_argument("--timeout", type=float, default=180)
            p.add_argument(
                "--real-node",
                action="store_true",
                help="also a real node `localhost` (kubelet, containerd) and a registry",
            )
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (BuildError, ClusterError, realnode.NodeError) as e:
        _stderr_log(f"error: {e}")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
