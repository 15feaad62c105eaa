#!/usr/bin/env python3
"""`make demo`: the main job end to end on the local control plane.

A real kube-apiserver (built by `make cluster-up`), a real git server on loopback, the CRD, and
the operator as a subprocess. An AutomatedBuild is applied, builds on creation, then builds
again after a push and `autobuild trigger`. kwok simulates the nodes: the Kaniko pods are
scheduled and "run" to completion, but no image is really built or pushed here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "controlplane"))
import localcluster  # noqa: E402

from support.gitserver import GitServer  # noqa: E402

STATE = ROOT / ".cluster"
KUBECONFIG = STATE / "kubeconfig"
NAMESPACE = "demo"
KUBECTL = localcluster.ensure_binaries().kubectl


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> str:
    """The kubectl built with the control plane; exits with its error output on failure."""
    done = localcluster.run_kubectl(KUBECTL, KUBECONFIG, *args, input=stdin, check=False)
    if check and done.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def step(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def wait_for_phase(phase: str, builds: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        phases = kubectl(
            "get", "ab", "cavityflow", "-n", NAMESPACE, "-o", "jsonpath={.status.builds[*].phase}"
        ).split()
        if len(phases) >= builds and phases[0] == phase:
            return
        time.sleep(1)
    raise SystemExit(f"the build did not reach {phase} in {timeout:.0f}s; see {STATE}/operator.log")


def show() -> None:
    print(kubectl("get", "autobuilds", "-n", NAMESPACE, "-o", "wide"), flush=True)


WEBHOOK_PORT = 18080
HOOK_SECRET = "demo-webhook-secret"  # noqa: S105 (a demo value, not a credential)


def deliver_github_push(clone_url: str, ref: str, commit: str) -> str:
    """Send a push delivery signed as GitHub signs it (X-Hub-Signature-256)."""
    host, _, path = clone_url.removeprefix("http://").partition("/")
    full_name = path.removesuffix(".git")
    body = json.dumps(
        {
            "ref": ref,
            "before": "0" * 40,
            "after": commit,
            "created": True,
            "deleted": False,
            "head_commit": {"id": commit, "message": "Release 1.0", "author": {"name": "Ada"}},
            "repository": {
                "full_name": full_name,
                "clone_url": f"https://{host}/{full_name}.git",
                "html_url": f"https://{host}/{full_name}",
            },
        }
    ).encode()
    signature = hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"http://127.0.0.1:{WEBHOOK_PORT}/hooks/github",
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": f"sha256={signature}",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 (http on loopback)
        return f"{answer.status} {answer.read().decode().strip()}"


def main() -> int:
    env = dict(os.environ, KUBECONFIG=str(KUBECONFIG))
    with (
        tempfile.TemporaryDirectory(prefix="autobuild-demo-git-") as git_root,
        GitServer(Path(git_root)) as git,
    ):
        step(f"A real git server on loopback: {git.url}")
        repo = git.create_repo("acme", "dockertext-cavityflow")
        first = repo.commit(
            "main",
            {"Dockerfile": "FROM busybox\nCOPY . /app\n", "README.md": "cavity flow\n"},
            "Initial solver",
        )
        print(f"pushed main at {first[:12]}")

        step("Install the CRD (generated from the pydantic models)")
        print(kubectl("apply", "-f", str(ROOT / "crds" / "automatedbuild.yaml")), end="")
        localcluster.wait_crd_established(KUBECTL, KUBECONFIG, "automatedbuilds.autobuild.dev")
        kubectl("create", "namespace", NAMESPACE, check=False)
        # A rerun starts over: the old AutomatedBuild's Jobs go with it (owner references).
        kubectl("delete", "ab", "cavityflow", "-n", NAMESPACE, "--ignore-not-found", "--wait")

        step(f"Run the operator (log: {STATE}/operator.log)")
        log = (STATE / "operator.log").open("ab")
        operator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "autobuild.cli",
                "run",
                "--probes",
                "127.0.0.1:18081",
                "--webhook-address",
                f"127.0.0.1:{WEBHOOK_PORT}",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            manifest = f"""\
apiVersion: autobuild.dev/v1alpha1
kind: AutomatedBuild
metadata: {{name: cavityflow, namespace: {NAMESPACE}}}
spec:
  source: {{repo: "{repo.clone_url}", webhookSecret: cavityflow-hook}}
  image:
    registry: 127.0.0.1:5000
    namespace: acme
    name: dockertext-cavityflow
    visibility: Public
    shortDescription: Lid-driven cavity flow solver
  tags:
  - {{source: main, dockerTag: "latest,{{sourceref}}"}}
  - {{sourceType: Tag, source: '/^v([0-9.]+)$/', dockerTag: '{{\\1}}'}}
  runPolicy: Serial
"""
            step("Apply an AutomatedBuild: it builds main on creation ('save and build')")
            kubectl(
                "create",
                "secret",
                "generic",
                "cavityflow-hook",
                "-n",
                NAMESPACE,
                f"--from-literal=secret={HOOK_SECRET}",
                check=False,
            )
            print(manifest)
            print(kubectl("apply", "-f", "-", stdin=manifest), end="")
            wait_for_phase("Succeeded", 1)
            show()

            step("Push a commit and run `autobuild trigger cavityflow`")
            second = repo.commit("main", {"solver.txt": "faster\n"}, "Faster solver")
            print(f"pushed main at {second[:12]}")
            subprocess.run(
                [sys.executable, "-m", "autobuild.cli", "trigger", "cavityflow", "-n", NAMESPACE],
                env=env,
                check=True,
            )
            wait_for_phase("Succeeded", 2)
            show()

            step("Tag v1.0 and deliver GitHub's signed push webhook to /hooks/github")
            repo.tag("v1.0", second)
            answer = deliver_github_push(repo.clone_url, "refs/tags/v1.0", second)
            print(f"POST /hooks/github -> {answer}")
            wait_for_phase("Succeeded", 3)
            show()

            step("The Kaniko Job the operator created")
            job = kubectl(
                "get",
                "jobs",
                "-n",
                NAMESPACE,
                "-o",
                "jsonpath={.items[-1:].spec.template.spec.containers[0].args}",
            )
            print(job.replace('","', '"\n  "'))
            step("Events")
            print(
                kubectl(
                    "get",
                    "events",
                    "-n",
                    NAMESPACE,
                    "--field-selector",
                    "involvedObject.kind=AutomatedBuild",
                )
            )
        finally:
            operator.terminate()
            operator.wait(20)
            log.close()
    print(
        "\nNote: kwok simulates the nodes here, so the Kaniko pods are scheduled and marked as\n"
        "finished, but no image is really built or pushed. The cluster is still up: try\n"
        f"  kubectl --kubeconfig {KUBECONFIG} get ab -A -o wide\n"
        "and stop it with `make cluster-down`."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
