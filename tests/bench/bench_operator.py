#!/usr/bin/env python3
"""`make bench`: the operator's speed and cost, next to floors measured in the same run.

Black-box: ``autobuild run`` is a subprocess on its own local control plane (kwok nodes) and
everything is measured from outside — latencies from the bench's own watches, requests from the
API server's audit log (the operator runs as its own ServiceAccount, so its requests are told
apart from the controller-manager's, the scheduler's and kwok's), memory from /proc.

Scenarios, in order (sizes: ``--scale``, ``--objects`` or the flags below; defaults are issue 8's):

1. SMALL (1,000) AutomatedBuilds, then the operator starts: time until every object is
   *reconciled* (``status.observedGeneration == metadata.generation`` and a ``Ready``
   condition: the operator looked at this generation and wrote what it found), RSS settled.
2. Idle restart: requests the operator makes when nothing changed (writes must be 0).
3. ``writes_per_build``: BUILDS manual triggers (annotation with ref and commit, so no git host
   is asked) on a node kwok runs pods on, until each build is ``Succeeded``; the operator's
   writes in that window per build (Events counted apart).
4. ``job_create_floor``: DELIVERIES bare Job creates with a plain client at the push arrival
   times; request to the ADDED event on the bench's watch.
5. ``push_to_job``: DELIVERIES signed GitHub push deliveries (Poisson arrivals at PUSH_RATE/s)
   to the repos of random AutomatedBuilds, POSTed to the operator's ``/hooks/github``; from the
   HTTP answer to the Job's ADDED event. ``webhook_rps``: deliveries that verify but build
   nothing (a ref no rule matches), open-loop rate steps with the operator pinned to one core;
   the highest rate answered 202 without loss or backlog, and the p99 answer latency there.
   ``webhook_p99_ms_under_flood``: signed deliveries (addressed ``?automatedbuild=NS/NAME``,
   as the operator registers hooks) at FLOOD_RATE/s while FLOOD_CLIENTS clients keep sending
   unsigned 4 MiB form-encoded bodies naming an AutomatedBuild's repository and padded with
   fields (half with a Content-Length, half chunked; the issue's attack); p99 answer latency.
   Needs ``autobuild run --webhook-address``; without it these keys are null.
6. LARGE (10,000) AutomatedBuilds (operator stopped while the rest are created), first pass,
   RSS settled, idle restart (the ``idle_restart_*`` keys).
7. The framework's floor: ``noop_operator.py`` (one kopf ``on.event`` handler that counts) on
   the same objects, REPEATS times: time until it has seen every object, RSS settled.
8. ``resync_s_10k``: with the operator stopped, every object's ``spec.image.shortDescription``
   changes (a new generation); restart until every object is reconciled again. The git server's
   ``ls-remote`` count in that window is reported (details.resync.git_ls_remotes): an operator
   that re-checks the source on every new generation pays one per object.

Prints a table, then, as the last line of stdout, one JSON object with every number (null
when a scenario could not run, with the reason under "notes"). Asserts nothing: speed goals
are read, not tested. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import hashlib
import hmac
import http.client
import importlib.metadata
import json
import multiprocessing
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autobuild.planning.triggers import (
    ANNOTATION_TRIGGER,
    TriggerRequest,
    append_request,
)
from tests.bench.benchkit import (
    Api,
    AuditLog,
    Mark,
    Process,
    Watch,
    percentile,
    settled_rss,
    summarize,
)
from tests.controlplane import localcluster

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

GROUP, VERSION, PLURAL = "autobuild.dev", "v1alpha1", "automatedbuilds"
NAMESPACE = "bench"
AB_PATH = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}"
JOBS_PATH = f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"
# The Job labels the operator sets (operator/autobuild/planning/job.py).
LABEL_AUTOMATEDBUILD = "autobuild.dev/automatedbuild"
LABEL_COMMIT = "autobuild.dev/commit"
LABEL_TRIGGER = "autobuild.dev/trigger"
FLOOR_LABEL = "autobuild-bench/floor"
# Build pods only run on a node with this label (AUTOBUILD_NODE_SELECTOR): kwok's node gets it
# for the writes_per_build scenario only, so other builds stay Pending and cost nothing.
BUILDER_LABEL = ("autobuild-bench/builder", "kwok")
OPERATOR_NAMESPACE, OPERATOR_ACCOUNT = "autobuild-system", "autobuild-operator"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_ACCOUNT}"
# Only the operator's requests are logged (Metadata: no bodies), everything else not at all.
AUDIT_POLICY = f"""apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  users: ["{OPERATOR_USER}"]
- level: None
"""
WEBHOOK_SECRETS = 10  # AutomatedBuild i verifies with Secret hook-(i % 10)
LOAD_REF = "refs/heads/bench-load"  # matches no rule: verified, answered, builds nothing
RPS_STEPS = (125, 250, 500, 1000, 2000, 4000)  # 500: the target, reported on its own
RPS_STEP_SECONDS = 2.0
FLOOD_CLIENTS = 6  # issue 17: six clients stalled the loop 12.8 s with 4 MiB form bodies
FLOOD_BODY = 4 * 1024 * 1024
FLOOD_RATE, FLOOD_SECONDS = 40, 5.0  # signed deliveries during the flood
TARGETS = {
    "push_to_job_p50_ms": "< 100",
    "push_to_job_p99_ms": "< 500",
    "push_to_job_vs_floor": "< 3",
    "webhook_rps": ">= 500",
    "webhook_p99_ms": "< 20",
    "webhook_p99_ms_under_flood": "< 100",
    "resync_s_10k": "< 60",
    "rss_vs_noop_10k": "<= 1.25",
    "resync_vs_noop_10k": "<= 3",
    "idle_restart_writes": "0",
    "idle_restart_reads": "few/kind",
    "writes_per_build": "<= 6",
}
_t0 = time.monotonic()


def say(message: str) -> None:
    print(f"[bench {time.monotonic() - _t0:7.1f}s] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Sizes:
    small: int = 1000
    large: int = 10000
    deliveries: int = 500
    builds: int = 20
    push_rate: float = 20.0
    repeats: int = 3
    seed: int = 8


@dataclass(frozen=True)
class AbState:
    """What the bench needs of an AutomatedBuild (kept small: 10,000 of them are watched)."""

    generation: int
    observed: int
    ready: bool
    builds: frozenset[tuple[str, str]]  # (commit, phase)


def project_ab(obj: Mapping[str, Any]) -> AbState:
    status = obj.get("status") or {}
    return AbState(
        generation=int(obj["metadata"].get("generation", 0)),
        observed=int(status.get("observedGeneration") or 0),
        ready=any(c.get("type") == "Ready" for c in status.get("conditions") or []),
        builds=frozenset(
            (b.get("commit", ""), b.get("phase", "")) for b in status.get("builds") or []
        ),
    )


def reconciled(_: str, state: AbState) -> bool:
    """The operator looked at this generation and recorded what it found."""
    return state.ready and state.observed == state.generation


def ab_name(index: int) -> str:
    return f"app-{index:05d}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 2) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as answer:
        body: bytes = answer.read()
    return body


def poisson_offsets(rng: random.Random, count: int, rate: float) -> list[float]:
    """Arrival times (seconds from 0) of a Poisson process: deliveries spread over time."""
    offsets, now = [], 0.0
    for _ in range(count):
        now += rng.expovariate(rate)
        offsets.append(now)
    return offsets


class Results:
    """Every number of the run, with notes explaining nulls and extra details."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.notes: dict[str, str] = {}
        self.details: dict[str, Any] = {}

    def set(self, key: str, value: float | int | None, digits: int = 1) -> None:
        if isinstance(value, float):
            value = round(value, digits)
        self.values[key] = value

    def missing(self, keys: Sequence[str], why: str) -> None:
        for key in keys:
            self.values.setdefault(key, None)
            self.notes.setdefault(key, why)


# --------------------------------------------------------------------------------------
# The world: cluster objects, git host, operator processes
# --------------------------------------------------------------------------------------


def ab_manifest(index: int, git_url: str) -> dict[str, Any]:
    name = ab_name(index)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AutomatedBuild",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "source": {
                "repo": f"{git_url}/acme/{name}.git",
                "provider": "github",
                "webhookSecret": f"hook-{index % WEBHOOK_SECRETS}",
            },
            "image": {
                "registry": "127.0.0.1:5000",
                "namespace": "bench",
                "name": name,
                "visibility": "Public",
                "shortDescription": "benchmark",
            },
            # Pushes to main build. The repositories have no main yet, so creating the object
            # ("save and build") builds nothing: only the bench's pushes and triggers do.
            "tags": [{"sourceType": "Branch", "source": "main", "dockerTag": "latest"}],
        },
    }


def in_parallel(work: Callable[[int], Any], items: Sequence[int], threads: int = 8) -> None:
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(work, i) for i in items]:
            future.result()


class GitHost:
    """The loopback git server as a subprocess (its CPU is not the bench's), with one empty
    repository that every ``acme/app-NNNNN`` path links to; counts ``git ls-remote`` calls."""

    def __init__(self, work: Path) -> None:
        self.root = work / "git"
        self.process = Process("git server", work / "gitserver.log")
        self.url = ""

    def start(self, repos: int) -> None:
        stdout = self.process.start_piped(
            [
                sys.executable,
                "-m",
                "tests.support.gitserver",
                "serve",
                "--root",
                str(self.root),
                "--repo",
                "acme/base",
                "--verbose",
            ],
            os.environ,
        )
        self.url = stdout.readline().decode().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            self.process.check_alive()
            raise RuntimeError(f"git server printed {self.url!r}, not its URL")
        for index in range(repos):
            link = self.root / "acme" / f"{ab_name(index)}.git"
            if not link.exists():
                link.symlink_to("base.git")

    def ls_remotes(self) -> int:
        """``git ls-remote`` calls served so far (each starts with GET info/refs)."""
        text = self.process.log.read_text(errors="replace")
        return text.count("/info/refs?service=git-upload-pack")

    def stop(self) -> None:
        self.process.stop()


def has_receiver() -> bool:
    """Whether this operator serves webhooks (``autobuild run --webhook-address``)."""
    helptext = subprocess.run(
        [sys.executable, "-m", "autobuild.cli", "run", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return "--webhook-address" in helptext


class Operator:
    """``autobuild run`` as its own ServiceAccount, probes and webhooks on loopback ports."""

    def __init__(self, work: Path, kubeconfig: Path, receiver: bool) -> None:
        self.kubeconfig, self.receiver = kubeconfig, receiver
        self.process = Process("operator", work / "operator.log")
        self.probes = self.webhooks = 0

    def start(self) -> float:
        """Start it; the monotonic start time."""
        self.probes = free_port()
        argv = [
            sys.executable,
            "-m",
            "autobuild.cli",
            "run",
            "--probes",
            f"127.0.0.1:{self.probes}",
        ]
        if self.receiver:
            self.webhooks = free_port()
            argv += ["--webhook-address", f"127.0.0.1:{self.webhooks}"]
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig))
        env["AUTOBUILD_NODE_SELECTOR"] = "=".join(BUILDER_LABEL)
        return self.process.start(argv, env)

    @property
    def hook_url(self) -> str:
        return f"http://127.0.0.1:{self.webhooks}/hooks/github"

    def wait_ready(self, timeout: float) -> float:
        """Wait for /readyz (and the webhook port, if any); the monotonic time it was ready."""
        deadline = time.monotonic() + timeout
        while True:
            self.process.check_alive()
            with contextlib.suppress(OSError):
                http_get(f"http://127.0.0.1:{self.probes}/readyz")
                if not self.receiver:
                    return time.monotonic()
                with socket.create_connection(("127.0.0.1", self.webhooks), timeout=1):
                    return time.monotonic()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the operator was not ready within {timeout:.0f}s")
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.stop()


def operator_kubeconfig(api: Api, cluster: localcluster.LocalCluster, path: Path) -> None:
    """A ServiceAccount (cluster-admin: the bench measures speed, the k8s tests check RBAC)
    and a kubeconfig with its token, so the audit log tells the operator's requests apart."""
    api.request("POST", "/api/v1/namespaces", {"metadata": {"name": OPERATOR_NAMESPACE}})
    api.request(
        "POST",
        f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/serviceaccounts",
        {"metadata": {"name": OPERATOR_ACCOUNT}},
    )
    api.request(
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        {
            "metadata": {"name": "autobuild-bench-operator"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [
                {
                    "kind": "ServiceAccount",
                    "name": OPERATOR_ACCOUNT,
                    "namespace": OPERATOR_NAMESPACE,
                }
            ],
        },
    )
    token = api.request(
        "POST",
        f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/serviceaccounts/{OPERATOR_ACCOUNT}/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 6 * 3600},
        },
    )["status"]["token"]
    ca = base64.b64encode((cluster.pki / "ca.crt").read_bytes()).decode()
    text = f"""apiVersion: v1
kind: Config
clusters:
- name: bench
  cluster: {{server: "{cluster.server}", certificate-authority-data: {ca}}}
users:
- name: {OPERATOR_ACCOUNT}
  user: {{token: {token}}}
contexts:
- name: bench
  context: {{cluster: bench, user: {OPERATOR_ACCOUNT}}}
current-context: bench
"""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


# --------------------------------------------------------------------------------------
# Signed GitHub deliveries
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    name: str  # the AutomatedBuild whose repository was pushed to
    commit: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Answer:
    scheduled: float
    sent: float
    answered: float
    status: int


def github_signature(secret: bytes, body: bytes) -> str:
    """GitHub's ``X-Hub-Signature-256``: HMAC-SHA256 of the raw body, hex, ``sha256=`` prefix."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def github_push(
    rng: random.Random,
    git_url: str,
    index: int,
    ref: str,
    secret: bytes,
    timestamp: str = "2026-11-29T08:00:00Z",
) -> Delivery:
    """A push delivery as GitHub sends it (headers and body shape), signed with ``secret``;
    ``timestamp`` is the commit's time (a push builds at once when it is newer than the
    ref's last build, else only while its commit is the head: these commits are made up)."""
    name = ab_name(index)
    commit = rng.randbytes(20).hex()
    html_url = f"{git_url}/acme/{name}"
    author = {"name": "Bench Author", "email": "bench@example.invalid", "username": "bench"}
    head = {
        "id": commit,
        "tree_id": rng.randbytes(20).hex(),
        "distinct": True,
        "message": f"Change {commit[:7]}",
        "timestamp": timestamp,
        "url": f"{html_url}/commit/{commit}",
        "author": author,
        "committer": author,
        "added": [],
        "removed": [],
        "modified": ["Dockerfile"],
    }
    payload = {
        "ref": ref,
        "before": rng.randbytes(20).hex(),
        "after": commit,
        "created": False,
        "deleted": False,
        "forced": False,
        "base_ref": None,
        "compare": f"{html_url}/compare/{commit[:12]}",
        "commits": [head],
        "head_commit": head,
        "repository": {
            "id": 100000 + index,
            "name": name,
            "full_name": f"acme/{name}",
            "private": False,
            "owner": {"name": "acme", "login": "acme", "type": "Organization"},
            "html_url": html_url,
            "url": html_url,
            "clone_url": f"{html_url}.git",
            "git_url": f"{html_url}.git",
            "default_branch": "main",
            "master_branch": "main",
        },
        "pusher": {"name": "bench", "email": "bench@example.invalid"},
        "sender": {"login": "bench", "id": 1, "type": "User"},
    }
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/bench",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.UUID(bytes=rng.randbytes(16), version=4)),
        "X-GitHub-Hook-ID": "1",
        "X-Hub-Signature": "sha1=" + hmac.new(secret, body, hashlib.sha1).hexdigest(),
        "X-Hub-Signature-256": github_signature(secret, body),
    }
    return Delivery(name, commit, body, headers)


async def _deliver(
    url: str, deliveries: Sequence[Delivery], offsets: Sequence[float], addressed: bool = False
) -> list[Answer]:
    """POST each delivery at its offset (open loop: late answers do not delay later sends)."""
    import aiohttp  # kopf's HTTP client; imported here so the rest runs without it

    connector = aiohttp.TCPConnector(limit=512)
    timeout = aiohttp.ClientTimeout(total=10)  # GitHub gives up after 10 s
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.monotonic() + 0.1

        async def one(delivery: Delivery, offset: float) -> Answer:
            scheduled = start + offset
            await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
            sent = time.monotonic()
            try:
                target = f"{url}?automatedbuild={NAMESPACE}/{delivery.name}" if addressed else url
                async with session.post(target, data=delivery.body, headers=delivery.headers) as r:
                    await r.read()
                    status = r.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            return Answer(scheduled, sent, time.monotonic(), status)

        return await asyncio.gather(*(one(d, o) for d, o in zip(deliveries, offsets, strict=True)))


def deliver(
    url: str, deliveries: Sequence[Delivery], offsets: Sequence[float], addressed: bool = False
) -> list[Answer]:
    return asyncio.run(_deliver(url, deliveries, offsets, addressed))


def flood(url: str, body: bytes, chunked: bool, stop: Any, answered_total: Any) -> None:
    """POST the form ``body`` unsigned (a made-up signature) until ``stop`` (an Event) is set;
    adds how many were answered to ``answered_total``. Runs in its own process, so that the
    flood does not share the sender's GIL (the latency measured is the operator's)."""
    parts = urllib.parse.urlsplit(url)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-GitHub-Event": "push",
        "X-Hub-Signature-256": "sha256=" + "0" * 64,
    }
    answered = 0
    while not stop.is_set():
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            if chunked:
                pieces = (body[i : i + 65536] for i in range(0, len(body), 65536))
                connection.request("POST", parts.path, pieces, headers, encode_chunked=True)
            else:
                connection.request("POST", parts.path, body, headers)
            connection.getresponse().read()
            answered += 1
        except OSError:
            time.sleep(0.01)  # refused or reset mid-body: the server may do that
        finally:
            connection.close()
    with answered_total.get_lock():
        answered_total.value += answered


@contextlib.contextmanager
def pinned(operator: Operator) -> Iterator[str]:
    """The operator on one core and the bench on another, when there are two; yields a note."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        yield f"not pinned: only {len(cpus)} CPU"
        return
    mine = Path("/proc/self/task")
    operator.process.pin({cpus[0]})
    for task in mine.iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), {cpus[1]})
    try:
        yield f"operator pinned to CPU {cpus[0]}, sender to CPU {cpus[1]}"
    finally:
        for task in mine.iterdir():
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(int(task.name), set(cpus))
        with contextlib.suppress(OSError, AssertionError):
            operator.process.pin(set(cpus))


# --------------------------------------------------------------------------------------
# The bench
# --------------------------------------------------------------------------------------


@dataclass
class RpsStep:
    rate: float
    sent: int
    ok: int
    achieved: float
    p50_ms: float
    p99_ms: float
    late_p99_ms: float  # how late the sender was against its schedule (client-bound if large)
    passed: bool = field(default=False)


class Bench:
    def __init__(
        self, sizes: Sizes, work: Path, cluster: localcluster.LocalCluster, results: Results
    ) -> None:
        """``cluster`` must be running (its PKI is read)."""
        self.sizes, self.work, self.cluster, self.results = sizes, work, cluster, results
        self.rng = random.Random(sizes.seed)
        self.api = Api(
            cluster.server,
            cluster.pki / "ca.crt",
            cluster.pki / "admin.crt",
            cluster.pki / "admin.key",
        )
        self.audit = AuditLog(cluster.audit_log, OPERATOR_USER)
        self.git = GitHost(work)
        self.secrets: list[bytes] = []
        self.abs: Watch[AbState] | None = None
        self.operator: Operator | None = None
        self.created = 0

    # ---- set-up ------------------------------------------------------------------------
    def setup(self, stack: contextlib.ExitStack) -> None:
        self.cluster.kubectl("apply", "-f", str(ROOT / "crds" / "automatedbuild.yaml"))
        self.cluster.kubectl(
            "wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}", "--timeout=60s"
        )
        self.api.request("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
        kubeconfig = self.work / "operator.kubeconfig"
        operator_kubeconfig(self.api, self.cluster, kubeconfig)
        for i in range(WEBHOOK_SECRETS):
            secret = self.rng.randbytes(20).hex().encode()
            self.secrets.append(secret)
            self.api.request(
                "POST",
                f"/api/v1/namespaces/{NAMESPACE}/secrets",
                {"metadata": {"name": f"hook-{i}"}, "stringData": {"secret": secret.decode()}},
            )
        stack.callback(self.git.stop)
        self.git.start(self.sizes.large)
        self.abs = Watch(self.api, AB_PATH, project_ab).start()
        stack.callback(self.abs.stop)
        receiver = has_receiver()
        self.operator = Operator(self.work, kubeconfig, receiver)
        stack.callback(self.operator.stop)
        if not receiver:
            say("this operator has no webhook receiver (autobuild run --webhook-address)")

    def create_objects(self, upto: int) -> None:
        started = time.monotonic()
        first = self.created
        if first >= upto:
            return
        in_parallel(
            lambda i: self.api.request("POST", AB_PATH, ab_manifest(i, self.git.url), allow=[409]),
            range(first, upto),
        )
        self.created = upto
        say(f"created AutomatedBuilds {first}..{upto - 1} in {time.monotonic() - started:.1f}s")

    # ---- helpers -----------------------------------------------------------------------
    @property
    def op(self) -> Operator:
        assert self.operator is not None
        return self.operator

    @property
    def watch(self) -> Watch[AbState]:
        assert self.abs is not None
        return self.abs

    def names(self, count: int) -> list[str]:
        return [ab_name(i) for i in range(count)]

    def restart_quietly(self) -> Mark:
        """Stop the operator, let the API server log the end of its watches; the mark from
        which requests belong to the next start."""
        self.op.stop()
        self.audit.wait_quiet(quiet=1, timeout=30)
        return self.audit.mark()

    def settle(self, timeout: float) -> bool:
        """Wait until the operator makes no request for 5 s."""
        quiet = self.audit.wait_quiet(quiet=5, timeout=timeout)
        if not quiet:
            say(f"the operator still made requests after {timeout:.0f}s")
        return quiet

    def label_builder_node(self, on: bool) -> None:
        key, value = BUILDER_LABEL
        patch = {"metadata": {"labels": {key: value if on else None}}}
        self.api.request(
            "PATCH",
            "/api/v1/nodes/kwok-node-0",
            patch,
            content_type="application/merge-patch+json",
        )

    def delete_jobs(self, selector: str) -> None:
        self.api.request(
            "DELETE",
            f"{JOBS_PATH}?labelSelector={selector}",
            {"propagationPolicy": "Background"},
        )

    # ---- scenarios ---------------------------------------------------------------------
    def first_pass(self, count: int, suffix: str) -> bool:
        """Start the operator on ``count`` objects: time until all are reconciled, RSS settled."""
        timeout = 60 + 0.06 * count
        waiter = self.watch.waiter(self.names(count), reconciled)
        started = self.op.start()
        if not waiter.pending:  # nothing new (LARGE == SMALL): only settle and measure
            self.watch.wait(waiter, 0)
            self.op.wait_ready(timeout=120)
            self.results.missing([f"first_pass_s_{suffix}"], "no new objects to reconcile")
            self.results.notes[f"rss_mib_{suffix}"] = "after a restart with nothing new"
            self.settle(timeout=120)
            self.results.set(f"rss_mib_{suffix}", settled_rss(self.op.process))
            return True
        done = self.watch.wait(waiter, timeout, self.op.process.check_alive)
        if done is None:
            why = (
                f"not every object was reconciled within {timeout:.0f}s: "
                f"{count - len(waiter.pending)} of {count}"
            )
            say(why)
            self.results.missing([f"first_pass_s_{suffix}", f"rss_mib_{suffix}"], why)
            self.results.details[f"rss_mib_{suffix}_unsettled"] = round(self.op.process.rss_mib())
            return False
        self.results.set(f"first_pass_s_{suffix}", done - started)
        say(f"first pass with {count} objects: {done - started:.1f}s")
        self.settle(timeout=120)
        self.results.set(f"rss_mib_{suffix}", settled_rss(self.op.process))
        return True

    def idle_restart(self, count: int, suffix: str) -> None:
        """Restart with nothing changed: the operator's requests, from the audit log."""
        since = self.restart_quietly()
        started = self.op.start()
        ready = self.op.wait_ready(timeout=120)
        quiet = self.audit.wait_quiet(quiet=10, timeout=60 + 0.02 * count)
        requests = self.audit.requests(since)
        writes = [r for r in requests if r.write]
        reads = [r for r in requests if not r.write]
        self.results.set(f"idle_restart_writes{suffix}", len(writes))
        self.results.set(f"idle_restart_reads{suffix}", len(reads))
        self.results.details[f"idle_restart{suffix}"] = {
            "objects": count,
            "requests": summarize(requests),
            "ready_s": round(ready - started, 1),
            "busy_s": round(requests[-1].received - since.since, 1) if requests else 0.0,
            "quiet": quiet,
        }
        say(f"idle restart with {count}: {len(writes)} writes, {len(reads)} reads")

    def writes_per_build(self, count: int) -> None:
        """Manual builds that kwok runs to completion: the operator's writes per build."""
        names = [ab_name(i) for i in self.rng.sample(range(self.sizes.small), count)]
        commits = {name: self.rng.randbytes(20).hex() for name in names}
        self.settle(timeout=60)
        self.label_builder_node(True)
        try:
            since = self.audit.mark()
            waiter = self.watch.waiter(
                names, lambda name, s: (commits[name], "Succeeded") in s.builds
            )
            for n, name in enumerate(names):
                request = TriggerRequest(f"bench-{n}", "refs/heads/main", commits[name])
                annotations = {ANNOTATION_TRIGGER: append_request(None, request)}
                self.api.request(
                    "PATCH",
                    f"{AB_PATH}/{name}",
                    {"metadata": {"annotations": annotations}},
                    content_type="application/merge-patch+json",
                )
            timeout = 60 + 3 * count
            done = self.watch.wait(waiter, timeout, self.op.process.check_alive)
            if done is None:
                why = f"{len(waiter.pending)} of {count} builds not Succeeded within {timeout}s"
                self.results.missing(["writes_per_build"], why)
                say(why)
                return
            self.settle(timeout=60)
            requests = self.audit.requests(since)
        finally:
            self.label_builder_node(False)
        writes = [r for r in requests if r.write and r.what != "events"]
        events = [r for r in requests if r.write and r.what == "events"]
        self.results.set("writes_per_build", len(writes) / count)
        self.results.set("events_per_build", len(events) / count)
        self.results.details["writes_per_build"] = {
            "builds": count,
            "writes": summarize(r for r in requests if r.write),
        }
        say(
            f"{count} builds: {len(writes) / count:.1f} writes, "
            f"{len(events) / count:.1f} Events each"
        )

    def job_create_floor(self, count: int) -> None:
        """Bare Job creates at the push arrival times: POST to the bench's ADDED event."""
        offsets = poisson_offsets(random.Random(self.sizes.seed), count, self.sizes.push_rate)
        added: dict[str, float] = {}
        posted: dict[str, float] = {}

        def on_event(kind: str, obj: Mapping[str, Any], arrived: float) -> None:
            if kind == "ADDED":
                added.setdefault(obj["metadata"]["name"], arrived)

        def create(i: int) -> None:
            name = f"floor-{i:05d}"
            body = {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": name, "labels": {FLOOR_LABEL: "1"}},
                "spec": {
                    "suspend": True,  # as a queued build: no pods
                    "backoffLimit": 0,
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [{"name": "kaniko", "image": "kaniko"}],
                        }
                    },
                },
            }
            posted[name] = time.monotonic()
            self.api.request("POST", JOBS_PATH, body)

        with (
            Watch(
                self.api, JOBS_PATH, lambda o: None, label_selector=FLOOR_LABEL, on_event=on_event
            ),
            concurrent.futures.ThreadPoolExecutor(8) as pool,
        ):
            start = time.monotonic()
            futures = []
            for i, offset in enumerate(offsets):
                time.sleep(max(0.0, start + offset - time.monotonic()))
                futures.append(pool.submit(create, i))
            for future in futures:
                future.result()
            deadline = time.monotonic() + 30
            while len(added) < count and time.monotonic() < deadline:
                time.sleep(0.05)
        latencies = [(added[n] - posted[n]) * 1000 for n in posted if n in added]
        self.delete_jobs(FLOOR_LABEL)
        self.results.set("job_create_floor_p50_ms", percentile(latencies, 50))
        self.results.set("job_create_floor_p99_ms", percentile(latencies, 99))
        say(f"Job create floor: p50 {percentile(latencies, 50):.1f} ms over {len(latencies)}")

    def deliveries(
        self, count: int, ref: str | None, offsets: Sequence[float] = ()
    ) -> list[Delivery]:
        """Signed pushes to random AutomatedBuilds' repositories (to main unless ``ref``).

        With ``offsets`` they build: each commit is made when its push is sent (seconds from
        now), and each object gets one push while there are enough. A push whose commit is
        not newer than the ref's last build builds only while it is the head, and these
        made-up commits never are: a second push to one object within the first one's
        latency would build nothing.
        """
        out = []
        start = time.time()
        small = self.sizes.small
        distinct = bool(offsets) and count <= small
        indexes = self.rng.sample(range(small), count) if distinct else []
        for n in range(count):
            index = indexes[n] if distinct else self.rng.randrange(small)
            secret = self.secrets[index % WEBHOOK_SECRETS]
            when = {}
            if offsets:
                moment = datetime.fromtimestamp(start + offsets[n], UTC)
                when["timestamp"] = moment.isoformat(timespec="milliseconds")
            out.append(
                github_push(self.rng, self.git.url, index, ref or "refs/heads/main", secret, **when)
            )
        return out

    def push_to_job(self, count: int) -> None:
        """Signed deliveries spread over time: from each answer to its Job's ADDED event."""
        offsets = poisson_offsets(random.Random(self.sizes.seed), count, self.sizes.push_rate)
        deliveries = self.deliveries(count, None, offsets)
        added: dict[tuple[str, str], float] = {}

        def on_event(kind: str, obj: Mapping[str, Any], arrived: float) -> None:
            labels = obj["metadata"].get("labels") or {}
            if kind == "ADDED":
                key = (labels.get(LABEL_AUTOMATEDBUILD, ""), labels.get(LABEL_COMMIT, ""))
                added.setdefault(key, arrived)

        selector = f"{LABEL_TRIGGER}=Push"
        with Watch(self.api, JOBS_PATH, lambda o: None, label_selector=selector, on_event=on_event):
            answers = deliver(self.op.hook_url, deliveries, offsets)
            wanted = {(d.name, d.commit) for d in deliveries}
            deadline = time.monotonic() + 60
            while not wanted <= added.keys() and time.monotonic() < deadline:
                time.sleep(0.1)
        statuses: dict[int, int] = {}
        latencies = []
        for delivery, answer in zip(deliveries, answers, strict=True):
            statuses[answer.status] = statuses.get(answer.status, 0) + 1
            seen = added.get((delivery.name, delivery.commit))
            if answer.status == 202 and seen is not None:
                # A Job seen before the answer arrived counts as 0: it existed at the answer.
                latencies.append(max(0.0, seen - answer.answered) * 1000)
        lost = count - len(latencies)
        self.results.details["push_to_job"] = {
            "deliveries": count,
            "rate_per_s": self.sizes.push_rate,
            "answers": {str(k): v for k, v in sorted(statuses.items())},
            "without_job": lost,
            "answer_p99_ms": round(
                percentile([(a.answered - a.sent) * 1000 for a in answers], 99), 1
            ),
        }
        if not latencies:
            self.results.missing(
                ["push_to_job_p50_ms", "push_to_job_p99_ms"], f"no Job for any delivery: {statuses}"
            )
            return
        if lost:
            self.results.notes["push_to_job_p99_ms"] = f"{lost} of {count} deliveries made no Job"
        self.results.set("push_to_job_p50_ms", percentile(latencies, 50))
        self.results.set("push_to_job_p99_ms", percentile(latencies, 99))
        say(
            f"push -> Job: p50 {percentile(latencies, 50):.0f} ms, "
            f"p99 {percentile(latencies, 99):.0f} ms, {lost} without Job, answers {statuses}"
        )

    def rps_step(self, rate: float) -> RpsStep:
        count = max(1, round(rate * RPS_STEP_SECONDS))
        deliveries = self.deliveries(count, LOAD_REF)
        offsets = [i / rate for i in range(count)]
        answers = deliver(self.op.hook_url, deliveries, offsets)
        ok = sum(1 for a in answers if a.status == 202)
        span = max(a.answered for a in answers) - min(a.sent for a in answers)
        latencies = [(a.answered - a.sent) * 1000 for a in answers]
        late = [(a.sent - a.scheduled) * 1000 for a in answers]
        step = RpsStep(
            rate=rate,
            sent=count,
            ok=ok,
            achieved=round(count / span, 1) if span > 0 else 0.0,
            p50_ms=round(percentile(latencies, 50), 1),
            p99_ms=round(percentile(latencies, 99), 1),
            late_p99_ms=round(percentile(late, 99), 1),
        )
        # No loss (every delivery 202) and no backlog (answers kept pace with the sends).
        step.passed = ok == count and step.achieved >= 0.95 * rate
        say(f"webhook load {rate:.0f}/s: {asdict(step)}")
        time.sleep(1)
        return step

    def webhook_load(self) -> None:
        """Open-loop rate steps of verified deliveries that build nothing, on one core."""
        with pinned(self.op) as how:
            self.rps_step(50)  # warm-up: connections, code paths
            steps: list[RpsStep] = []
            best: RpsStep | None = None
            failed: RpsStep | None = None
            for rate in RPS_STEPS:
                step = self.rps_step(rate)
                steps.append(step)
                if not step.passed:
                    failed = step
                    break
                best = step
            for _ in range(2):  # halve the gap between the last pass and the first failure
                if failed is None:
                    break
                low = best.rate if best else 0.0
                step = self.rps_step((low + failed.rate) / 2)
                steps.append(step)
                if step.passed:
                    best = step
                else:
                    failed = step
        self.results.details["webhook_load"] = {"pinning": how, "steps": [asdict(s) for s in steps]}
        if best is None:
            self.results.missing(
                ["webhook_rps", "webhook_p99_ms", "webhook_p99_ms_at_500"],
                f"lost deliveries already at {RPS_STEPS[0]}/s",
            )
            return
        self.results.set("webhook_rps", best.achieved)
        self.results.set("webhook_p99_ms", best.p99_ms)
        at_target = next((s for s in steps if s.rate == 500 and s.passed), None)
        self.results.set("webhook_p99_ms_at_500", at_target.p99_ms if at_target else None)
        if failed is None:
            self.results.notes["webhook_rps"] = (
                f"no loss up to the highest step ({best.rate:.0f}/s)"
            )
        if best.late_p99_ms > 50:
            self.results.notes["webhook_rps"] = "the sender fell behind its schedule: a lower bound"

    def webhook_flood(self) -> None:
        """Signed deliveries while FLOOD_CLIENTS clients send unsigned 4 MiB bodies naming the
        repository of an AutomatedBuild (issue 17 item 2)."""
        victim = github_push(self.rng, self.git.url, 0, LOAD_REF, b"not the secret").body
        form = b"payload=" + urllib.parse.quote_from_bytes(victim).encode()
        body = (form + b"&a=1" * (FLOOD_BODY // 4))[:FLOOD_BODY]
        processes = multiprocessing.get_context("fork")
        stop = processes.Event()
        answered = processes.Value("i", 0)
        clients = [
            processes.Process(
                target=flood, args=(self.op.hook_url, body, n % 2 == 1, stop, answered)
            )
            for n in range(FLOOD_CLIENTS)
        ]
        for flooder in clients:
            flooder.start()
        try:
            time.sleep(1.0)  # the flood is under way
            count = round(FLOOD_RATE * FLOOD_SECONDS)
            deliveries = self.deliveries(count, LOAD_REF)
            offsets = [i / FLOOD_RATE for i in range(count)]
            answers = deliver(self.op.hook_url, deliveries, offsets, addressed=True)
        finally:
            stop.set()
            for flooder in clients:
                flooder.join(timeout=60)
                if flooder.is_alive():
                    flooder.kill()
        latencies = [(a.answered - a.sent) * 1000 for a in answers]
        ok = sum(1 for a in answers if a.status == 202)
        self.results.details["webhook_flood"] = {
            "clients": FLOOD_CLIENTS,
            "body_bytes": len(body),
            "flood_answers": answered.value,
            "signed": count,
            "signed_202": ok,
            "p50_ms": round(percentile(latencies, 50), 1),
            "max_ms": round(max(latencies), 1),
        }
        self.results.set("webhook_p99_ms_under_flood", percentile(latencies, 99))
        if ok < count:
            self.results.notes["webhook_p99_ms_under_flood"] = (
                f"{count - ok} of {count} signed deliveries not answered 202"
            )
        say(f"webhook flood: {self.results.details['webhook_flood']}")

    def noop_floor(self, count: int) -> None:
        """The no-op kopf operator on the same objects: time to see all, RSS settled."""
        times, rss = [], []
        process = Process("no-op operator", self.work / "noop-operator.log")
        for _ in range(self.sizes.repeats):
            port = free_port()
            env = dict(os.environ, KUBECONFIG=str(self.cluster.kubeconfig))
            started = process.start(
                [sys.executable, str(HERE / "noop_operator.py"), "--port", str(port)], env
            )
            try:
                deadline = started + 60 + 0.02 * count
                seen = 0
                while seen < count:
                    process.check_alive()
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the no-op operator saw {seen} of {count} objects")
                    with contextlib.suppress(OSError):
                        seen = json.loads(http_get(f"http://127.0.0.1:{port}/"))["seen"]
                    time.sleep(0.02)
                times.append(time.monotonic() - started)
                time.sleep(5)  # settle as ours does (5 s without requests)
                rss.append(settled_rss(process))
            finally:
                process.stop()
        self.results.set("noop_resync_s_10k", statistics.median(times), 2)
        self.results.set("noop_rss_mib_10k", statistics.median(rss))
        self.results.details["noop_runs"] = {
            "seconds": [round(t, 2) for t in times],
            "rss_mib": [round(r) for r in rss],
        }
        say(f"no-op kopf operator on {count}: {times} s, {rss} MiB")

    def resync(self, count: int) -> None:
        """A new generation of every object while the operator is down; restart until every
        object is reconciled again."""
        self.op.stop()
        names = self.names(count)
        expected: dict[str, int] = {}

        def bump(i: int) -> None:
            patch = {"spec": {"image": {"shortDescription": f"benchmark, resync {i}"}}}
            answer = self.api.request(
                "PATCH",
                f"{AB_PATH}/{ab_name(i)}",
                patch,
                content_type="application/merge-patch+json",
            )
            expected[ab_name(i)] = int(answer["metadata"]["generation"])

        in_parallel(bump, range(count))
        git_before = self.git.ls_remotes()
        since = self.audit.mark()
        waiter = self.watch.waiter(names, lambda name, s: s.ready and s.observed >= expected[name])
        timeout = 60 + 0.06 * count
        started = self.op.start()
        done = self.watch.wait(waiter, timeout, self.op.process.check_alive)
        if done is None:
            why = f"{len(waiter.pending)} of {count} objects not reconciled within {timeout:.0f}s"
            self.results.missing(["resync_s_10k"], why)
            say(why)
            return
        self.results.set("resync_s_10k", done - started)
        self.settle(timeout=120)
        requests = self.audit.requests(since)
        self.results.details["resync"] = {
            "objects": count,
            "git_ls_remotes": self.git.ls_remotes() - git_before,
            "requests": summarize(requests),
            "rss_mib_after": round(settled_rss(self.op.process)),
        }
        say(f"resync of {count}: {done - started:.1f}s")

    # ---- the run -----------------------------------------------------------------------
    def run(self) -> None:
        sizes, results = self.sizes, self.results
        self.create_objects(sizes.small)
        if self.first_pass(sizes.small, "1k"):
            self.idle_restart(sizes.small, "_1k")
            self.writes_per_build(min(sizes.builds, sizes.small))
            self.job_create_floor(sizes.deliveries)
            if self.op.receiver:
                self.push_to_job(sizes.deliveries)
                self.webhook_load()
                self.webhook_flood()
        else:
            results.missing(
                ["idle_restart_writes_1k", "idle_restart_reads_1k", "writes_per_build"],
                f"the operator did not reconcile {sizes.small} objects",
            )
        receiverless = "receiver not available (autobuild run has no --webhook-address)"
        if not self.op.receiver:
            results.missing(
                [
                    "push_to_job_p50_ms",
                    "push_to_job_p99_ms",
                    "webhook_rps",
                    "webhook_p99_ms",
                    "webhook_p99_ms_at_500",
                    "webhook_p99_ms_under_flood",
                ],
                receiverless,
            )
        self.op.stop()
        self.delete_jobs(f"{LABEL_TRIGGER}=Push")

        self.create_objects(sizes.large)
        settled = self.first_pass(sizes.large, "10k")
        if settled:
            self.idle_restart(sizes.large, "")
        else:
            results.missing(
                ["idle_restart_writes", "idle_restart_reads", "resync_s_10k"],
                f"the operator did not reconcile {sizes.large} objects",
            )
        self.op.stop()
        self.noop_floor(sizes.large)
        if settled:
            self.resync(sizes.large)
        self.op.stop()
        self.ratios()

    def ratios(self) -> None:
        v = self.results.values

        def ratio(key: str, top: str, bottom: str) -> None:
            if v.get(top) is not None and v.get(bottom):
                self.results.set(key, v[top] / v[bottom], 2)
            else:
                self.results.missing([key], f"needs {top} and {bottom}")

        ratio("push_to_job_vs_floor", "push_to_job_p50_ms", "job_create_floor_p50_ms")
        ratio("rss_vs_noop_10k", "rss_mib_10k", "noop_rss_mib_10k")
        ratio("resync_vs_noop_10k", "resync_s_10k", "noop_resync_s_10k")


# --------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------

KEYS = (
    # (key, unit, what)
    ("push_to_job_p50_ms", "ms", "push delivery answered -> Job exists, p50"),
    ("push_to_job_p99_ms", "ms", "  p99"),
    ("job_create_floor_p50_ms", "ms", "bare Job create -> exists (floor), p50"),
    ("job_create_floor_p99_ms", "ms", "  p99"),
    ("push_to_job_vs_floor", "x", "push_to_job p50 / floor p50"),
    ("webhook_rps", "/s", "verified deliveries/s on one core, no loss"),
    ("webhook_p99_ms", "ms", "answer latency at that rate, p99"),
    ("webhook_p99_ms_at_500", "ms", "answer latency at 500/s, p99"),
    ("webhook_p99_ms_under_flood", "ms", "signed answers while 6 clients send 4 MiB unsigned, p99"),
    ("first_pass_s_1k", "s", "start -> every object reconciled (SMALL)"),
    ("rss_mib_1k", "MiB", "operator RSS settled (SMALL)"),
    ("idle_restart_writes_1k", "", "idle restart writes (SMALL)"),
    ("idle_restart_reads_1k", "", "idle restart reads (SMALL)"),
    ("writes_per_build", "", "operator API writes per build, trigger -> Succeeded"),
    ("events_per_build", "", "  plus Events posted per build"),
    ("first_pass_s_10k", "s", "start -> every object reconciled (LARGE)"),
    ("rss_mib_10k", "MiB", "operator RSS settled (LARGE)"),
    ("idle_restart_writes", "", "idle restart writes (LARGE)"),
    ("idle_restart_reads", "", "idle restart reads (LARGE)"),
    ("resync_s_10k", "s", "restart -> every object's new generation reconciled (LARGE)"),
    ("noop_resync_s_10k", "s", "no-op kopf operator: start -> saw every object (LARGE)"),
    ("noop_rss_mib_10k", "MiB", "no-op kopf operator RSS settled (LARGE)"),
    ("rss_vs_noop_10k", "x", "operator RSS / no-op RSS"),
    ("resync_vs_noop_10k", "x", "operator resync / no-op resync"),
)


def machine() -> dict[str, Any]:
    meminfo = Path("/proc/meminfo").read_text().split()
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    return {
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_mib": int(meminfo[meminfo.index("MemTotal:") + 1]) // 1024,
        "cpu": model,
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "kopf": importlib.metadata.version("kopf"),
        "kubernetes": localcluster.load_versions()["kubernetes"],
    }


def render(results: Results, sizes: Sizes, info: dict[str, Any], seconds: float) -> str:
    lines = [
        f"autobuild bench: {info['cores']} cores ({info['cpu']}), {info['memory_mib']} MiB, "
        f"load {info['load_avg_at_start']}; SMALL={sizes.small} LARGE={sizes.large} "
        f"deliveries={sizes.deliveries} builds={sizes.builds} seed={sizes.seed}; "
        f"{seconds / 60:.1f} min",
        f"{'key':<26} {'value':>10}  {'target':<12} what",
    ]
    for key, unit, what in KEYS:
        value = results.values.get(key)
        shown = "null" if value is None else f"{value}{unit and ' ' + unit}"
        lines.append(f"{key:<26} {shown:>10}  {TARGETS.get(key, ''):<12} {what}")
        if key in results.notes:
            lines.append(f"{'':<26} {'':>10}  {'':<12}   ({results.notes[key]})")
    for name, detail in results.details.items():
        lines.append(f"{name}: {json.dumps(detail)}")
    return "\n".join(lines)


def parse_sizes(argv: Sequence[str] | None) -> tuple[Sizes, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--scale",
        type=float,
        default=float(os.environ.get("AUTOBUILD_BENCH_SCALE") or 1),
        help="multiply every size (default $AUTOBUILD_BENCH_SCALE or 1: 1,000 / 10,000 objects, "
        "500 deliveries, 20 builds)",
    )
    parser.add_argument("--objects", type=int, help="LARGE objects; SMALL becomes min(this, 1000)")
    parser.add_argument("--deliveries", type=int, help="push deliveries (and floor Job creates)")
    parser.add_argument("--builds", type=int, help="builds run to completion for writes_per_build")
    parser.add_argument("--push-rate", type=float, default=20.0, help="deliveries per second")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the no-op operator")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, audit log)")
    args = parser.parse_args(argv)
    default = Sizes()
    small = max(10, round(default.small * args.scale))
    large = max(small, round(default.large * args.scale))
    if args.objects is not None:
        small, large = min(args.objects, default.small), args.objects
    deliveries = args.deliveries or max(20, round(default.deliveries * args.scale))
    builds = args.builds or max(5, round(default.builds * args.scale))
    sizes = Sizes(
        small=small,
        large=large,
        deliveries=deliveries,
        builds=min(builds, small),
        push_rate=args.push_rate,
        repeats=args.repeats,
        seed=args.seed,
    )
    return sizes, args


def main(argv: Sequence[str] | None = None) -> int:
    sizes, args = parse_sizes(argv)
    # A SIGTERM (CI timeout, Ctrl-C in make) unwinds like an exception: everything stops.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    info = machine()
    work = Path(tempfile.mkdtemp(prefix="autobuild-bench-"))
    say(f"sizes {asdict(sizes)}; work dir {work}")
    started = time.monotonic()
    cluster = localcluster.LocalCluster(state_dir=work / "cluster", audit_policy=AUDIT_POLICY)
    results = Results()
    failure: BaseException | None = None
    try:
        with contextlib.ExitStack() as stack:
            stack.callback(cluster.stop)
            cluster.start()
            bench = Bench(sizes, work, cluster, results)
            bench.setup(stack)
            bench.run()
    except BaseException as exc:  # report what was measured, then fail
        failure = exc
        results.details["error"] = f"{type(exc).__name__}: {exc}"[:2000]
    seconds = time.monotonic() - started
    print(render(results, sizes, info, seconds))
    summary = {key: results.values.get(key) for key, _, _ in KEYS} | {
        "machine": info,
        "sizes": asdict(sizes),
        "seed": sizes.seed,
        "duration_s": round(seconds),
        "notes": results.notes,
        "details": results.details,
    }
    print(json.dumps(summary), flush=True)
    if failure is not None or args.keep:
        say(f"logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    if failure is not None:
        if not isinstance(failure, Exception):
            raise failure
        say(f"failed: {failure!r}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
