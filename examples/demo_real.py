#!/usr/bin/env python3
"""`make demo-real`: a real image, built by the operator on the local real node.

Needs `make cluster-up NODE=real` (the Makefile target does it): the control plane, a real node
(kubelet, containerd, runc) and a registry on 127.0.0.1. A real git server on loopback serves a
repository with a Dockerfile; the operator (a subprocess) builds it with Kaniko when the
AutomatedBuild is created; the demo then proves the image is in the registry with the digest
the status records, and ends as Docker Hub's own walkthrough does: it runs a container from the
freshly built image (a pod on the real node, pulled by digest) and shows its output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "controlplane"))
import localcluster  # noqa: E402
import realnode  # noqa: E402
from demo import KUBECONFIG, STATE, kubectl, step  # noqa: E402

from support.gitserver import GitServer  # noqa: E402

NAMESPACE = "demo-real"
NAME = "cavityflow"
DOCKERFILE = """\
ARG BASE
FROM ${BASE}
ARG SOURCE_COMMIT
RUN echo "lid-driven cavity flow solver, built from commit ${SOURCE_COMMIT}" > /motd
CMD ["cat", "/motd"]
"""


def wait_for(what: str, check: str, jsonpath: str, done: set[str], timeout: float = 300) -> str:
    """Poll ``kubectl get CHECK -o jsonpath=...`` until it shows one of ``done``."""
    deadline = time.monotonic() + timeout
    value = ""
    while time.monotonic() < deadline:
        value = kubectl("get", *check.split(), "-n", NAMESPACE, "-o", f"jsonpath={jsonpath}")
        if value in done:
            return value
        time.sleep(1)
    raise SystemExit(f"{what}: still {value!r} after {timeout:.0f}s; see {STATE}/operator.log")


def main() -> int:
    cluster = localcluster.LocalCluster.attach(STATE)
    if cluster is None or not cluster.real_node:
        raise SystemExit("no real node: run `make cluster-up NODE=real` first")
    env = {**os.environ, "KUBECONFIG": str(KUBECONFIG), **cluster.operator_env()}
    image = f"{cluster.registry}/acme/{NAME}"
    with (
        tempfile.TemporaryDirectory(prefix="autobuild-demo-git-") as git_root,
        GitServer(Path(git_root)) as git,
    ):
        step(f"A real git server ({git.url}) and a real registry ({cluster.registry})")
        repo = git.create_repo("acme", NAME)
        commit = repo.commit("main", {"Dockerfile": DOCKERFILE}, "Initial solver")
        print(DOCKERFILE)
        print(f"pushed main at {commit[:12]}")

        step("Install the CRD; run the operator with the real node's build settings")
        kubectl("apply", "-f", str(ROOT / "crds" / "automatedbuild.yaml"))
        kubectl("wait", "--for=condition=Established", "crd/automatedbuilds.autobuild.dev")
        for key in sorted(cluster.operator_env()):
            print(f"  {key}={env[key]}")
        kubectl("create", "namespace", NAMESPACE, check=False)
        kubectl("delete", "ab", NAME, "-n", NAMESPACE, "--ignore-not-found", "--wait")
        kubectl("delete", "pod", "run-it", "-n", NAMESPACE, "--ignore-not-found", "--wait")
        log = (STATE / "operator-real.log").open("ab")
        probes = f"127.0.0.1:{localcluster._free_ports(1)[0]}"
        operator = subprocess.Popen(
            [sys.executable, "-m", "autobuild.cli", "run", "-n", NAMESPACE, "--probes", probes],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            manifest = {
                "apiVersion": "autobuild.dev/v1alpha1",
                "kind": "AutomatedBuild",
                "metadata": {"name": NAME, "namespace": NAMESPACE},
                "spec": {
                    "source": {"repo": repo.clone_url, "provider": "git"},
                    "image": {
                        "registry": cluster.registry,
                        "namespace": "acme",
                        "name": NAME,
                        "visibility": "Public",
                        "shortDescription": "Lid-driven cavity flow solver",
                    },
                    "tags": [{"source": "main", "dockerTag": "latest,{sourceref}"}],
                    "buildArgs": {"BASE": cluster.images.busybox},
                },
            }
            step("Apply an AutomatedBuild: Kaniko builds main on the real node and pushes")
            kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
            phase = wait_for(
                "the build", f"ab {NAME}", "{.status.latestBuild.phase}", {"Succeeded", "Failed"}
            )
            print(kubectl("get", "autobuilds", "-n", NAMESPACE, "-o", "wide"))
            if phase != "Succeeded":
                raise SystemExit(f"the build failed; `autobuild logs {NAME} -n {NAMESPACE}`")
        finally:
            operator.terminate()
            operator.wait(20)
            log.close()

    digest = kubectl(
        "get", "ab", NAME, "-n", NAMESPACE, "-o", "jsonpath={.status.latestBuild.digest}"
    )
    step(f"The registry serves {image}:latest with that digest (crane digest)")
    served = realnode.crane_digest(cluster.node_artifacts, f"{image}:latest")
    print(f"status.latestBuild.digest  {digest}\ncrane digest               {served}")
    if served != digest:
        raise SystemExit("the registry's digest differs from the recorded one")

    step(f"Run it: a pod on the real node from {image}@{digest[:19]}…")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "run-it", "namespace": NAMESPACE},
        "spec": {
            "restartPolicy": "Never",
            "nodeName": realnode.NODE_NAME,
            "containers": [{"name": NAME, "image": f"{image}@{digest}"}],
        },
    }
    kubectl("apply", "-f", "-", stdin=json.dumps(pod))
    wait_for("the pod", "pod run-it", "{.status.phase}", {"Succeeded", "Failed"})
    print(kubectl("logs", "run-it", "-n", NAMESPACE), end="")
    print(
        "\nThe cluster is still up (real node included): "
        f"kubectl --kubeconfig {KUBECONFIG} get nodes; stop it with `make cluster-down`."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
