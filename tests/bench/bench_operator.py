#!/usr/bin/env python3
"""`make bench`: the operator's speed and cost on the real local control plane.

Measures, with N AutomatedBuilds present (default 1,000):
- the first pass: time until every object has status (and the API writes it took);
- trigger -> Job created latency (annotation with ref and commit, and with a branch head
  resolved by `git ls-remote` against the loopback git server), p50 / p90 / max;
- an idle restart: API writes (from the API server's own request counters) and reads, and the
  time until the operator has looked at every object again;
- the operator's resident memory.

It prints numbers; it asserts nothing (speed goals are read, not tested).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "controlplane"))
import localcluster  # noqa: E402

from support.gitserver import GitServer  # noqa: E402

GROUP, VERSION, PLURAL = "autobuild.dev", "v1alpha1", "automatedbuilds"
NAMESPACE = "bench"
WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE"}
_METRIC = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$")


def request_counts(cluster: localcluster.LocalCluster) -> Counter[tuple[str, str]]:
    """(verb, resource) -> requests served so far, from the API server's metrics."""
    counts: Counter[tuple[str, str]] = Counter()
    for line in cluster.api_raw("GET", "/metrics", timeout=30).decode().splitlines():
        found = _METRIC.match(line)
        if not found:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', found.group("labels")))
        counts[(labels.get("verb", ""), labels.get("resource", ""))] += int(float(found["value"]))
    return counts


def delta(after: Counter[tuple[str, str]], before: Counter[tuple[str, str]]) -> dict[str, int]:
    """Requests between two snapshots, for the resources the operator touches."""
    out: Counter[str] = Counter()
    for (verb, resource), value in after.items():
        if resource in ("automatedbuilds", "jobs", "pods", "secrets", "events"):
            change = value - before.get((verb, resource), 0)
            if change:
                out[f"{verb} {resource}"] += change
    return dict(sorted(out.items()))


def writes(d: dict[str, int]) -> int:
    return sum(v for k, v in d.items() if k.split()[0] in WRITE_VERBS and not k.endswith("events"))


def manifest(index: int, repo_url: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AutomatedBuild",
        "metadata": {"name": f"app-{index:04d}", "namespace": NAMESPACE},
        "spec": {
            "source": {"repo": repo_url},
            "image": {
                "registry": "127.0.0.1:5000",
                "namespace": "bench",
                "name": f"app-{index:04d}",
                "visibility": "Public",
                "shortDescription": "benchmark",
            },
            # autobuild: false, so creating 1,000 objects builds nothing until triggered.
            "tags": [{"source": "main", "dockerTag": "latest", "autobuild": False}],
            "runPolicy": "Parallel",
        },
    }


class Operator:
    def __init__(self, kubeconfig: Path, log: Path) -> None:
        self.kubeconfig, self.log = kubeconfig, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig))
        env["AUTOBUILD_NODE_SELECTOR"] = "autobuild.dev/bench=none"  # pods stay Pending
        started = time.monotonic()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "autobuild.cli", "run", "--probes", "127.0.0.1:0"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return started

    def rss_mib(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)
            self.proc = None


def list_objects(cluster: localcluster.LocalCluster) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.api(
        "GET", f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}", timeout=60
    )["items"]
    return items


def wait_all_observed(cluster: localcluster.LocalCluster, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        observed = sum(
            1 for o in list_objects(cluster) if (o.get("status") or {}).get("conditions")
        )
        if observed >= count:
            return
        time.sleep(0.5)
    raise SystemExit(f"not every object got status within {timeout:.0f}s")


def wait_requests_settle(cluster: localcluster.LocalCluster, quiet: float, timeout: float) -> float:
    """Seconds until the operator's requests stop growing for ``quiet`` seconds."""
    start = time.monotonic()
    last = request_counts(cluster)
    last_change = time.monotonic()
    while time.monotonic() - start < timeout:
        time.sleep(1)
        now = request_counts(cluster)
        if delta(now, last):
            last, last_change = now, time.monotonic()
        elif time.monotonic() - last_change >= quiet:
            break
    return last_change - start


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return (
        f"p50 {statistics.median(ordered) * 1000:.0f} ms, p90 {p90 * 1000:.0f} ms, "
        f"max {ordered[-1] * 1000:.0f} ms (trigger #{samples.index(ordered[-1]) + 1} of "
        f"{len(ordered)})"
    )


def trigger_latency(
    cluster: localcluster.LocalCluster, names: list[str], annotations: dict[str, str]
) -> list[float]:
    samples = []
    for n, name in enumerate(names):
        value = f"bench-{time.time_ns()}-{n}"
        patch = {"metadata": {"annotations": {**annotations, "autobuild.dev/trigger": value}}}
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}/{name}"
        uid = cluster.api("GET", path)["metadata"]["uid"]
        jobs = f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs?labelSelector=autobuild.dev/uid={uid}"
        before = len(cluster.api("GET", jobs)["items"])
        start = time.monotonic()
        _merge_patch(cluster, path, patch)
        while len(cluster.api("GET", jobs)["items"]) <= before:
            if time.monotonic() - start > 30:
                raise SystemExit(f"no Job for {name} within 30s")
            time.sleep(0.005)
        samples.append(time.monotonic() - start)
    return samples


def _merge_patch(cluster: localcluster.LocalCluster, path: str, patch: dict[str, Any]) -> None:
    import ssl
    import urllib.request

    ctx = ssl.create_default_context(cafile=str(cluster.pki / "ca.crt"))
    ctx.load_cert_chain(str(cluster.pki / "admin.crt"), str(cluster.pki / "admin.key"))
    request = urllib.request.Request(
        cluster.server + path, data=json.dumps(patch).encode(), method="PATCH"
    )
    request.add_header("Content-Type", "application/merge-patch+json")
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx)
    )
    with opener.open(request, timeout=10):
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--triggers", type=int, default=50)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="autobuild-bench-"))
    print(f"work dir {work}", flush=True)
    with (
        localcluster.LocalCluster(state_dir=work / "cluster") as cluster,
        GitServer(work / "git") as git,
    ):
        repo = git.create_repo("acme", "app")
        head = repo.commit("main", {"Dockerfile": "FROM scratch\n"}, "init")
        cluster.kubectl("apply", "-f", str(ROOT / "crds" / "automatedbuild.yaml"))
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}")
        cluster.kubectl("create", "namespace", NAMESPACE)
        started = time.monotonic()
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}"
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda i: cluster.api("POST", path, manifest(i, repo.clone_url)),
                    range(args.objects),
                )
            )
        print(
            f"created {args.objects} AutomatedBuilds in {time.monotonic() - started:.1f} s",
            flush=True,
        )

        operator = Operator(cluster.kubeconfig, work / "operator.log")
        try:
            before = request_counts(cluster)
            started = operator.start()
            wait_all_observed(cluster, args.objects, timeout=900)
            first_pass = time.monotonic() - started
            d = delta(request_counts(cluster), before)
            print(
                f"first pass: every object has status after {first_pass:.1f} s; requests {d}",
                flush=True,
            )
            print(f"operator RSS after the first pass: {operator.rss_mib():.0f} MiB", flush=True)
            tail = wait_requests_settle(cluster, quiet=5, timeout=300)
            print(f"the operator's requests settled {tail:.1f} s after that", flush=True)

            names = [
                f"app-{i:04d}"
                for i in range(0, args.objects, max(1, args.objects // args.triggers))
            ]
            names = names[: args.triggers]
            with_commit = trigger_latency(
                cluster,
                names,
                {
                    "autobuild.dev/trigger-ref": "refs/heads/main",
                    "autobuild.dev/trigger-commit": head,
                },
            )
            print(f"trigger -> Job (ref+commit given): {percentiles(with_commit)}", flush=True)
            with_ls_remote = trigger_latency(
                cluster,
                names[: max(1, len(names) // 2)],
                {"autobuild.dev/trigger-ref": "", "autobuild.dev/trigger-commit": ""},
            )
            print(
                f"trigger -> Job (head via git ls-remote): {percentiles(with_ls_remote)}",
                flush=True,
            )
            wait_requests_settle(cluster, quiet=5, timeout=120)

            operator.stop()
            before = request_counts(cluster)
            started = operator.start()
            busy = wait_requests_settle(cluster, quiet=10, timeout=600)
            d = delta(request_counts(cluster), before)
            print(
                f"idle restart with {args.objects} objects: {writes(d)} writes; "
                f"requests {d}; looked at everything within {busy:.1f} s",
                flush=True,
            )
            print(f"operator RSS when idle: {operator.rss_mib():.0f} MiB", flush=True)
        finally:
            operator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
