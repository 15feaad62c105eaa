#!/usr/bin/env python3
"""`make demo`: Docker Hub's Automated Builds walkthrough, for real, on the local cluster.

`make demo` first starts the local control plane with a real node (kubelet, containerd, runc)
and a registry on 127.0.0.1 (`make cluster-up NODE=real`; Linux and root). Then this script:

1. serves a git repository over smart HTTP on loopback; its Dockerfile starts FROM the local
   busybox image (a build arg), COPYs a file and runs a RUN step;
2. runs the operator (a subprocess) with the real node's build settings and its webhook receiver;
3. applies an AutomatedBuild with a webhook secret: Kaniko builds main on creation and pushes;
4. commits, tags v1.0 and delivers GitHub's signed push event to /hooks/github: a second build;
5. prints `kubectl get autobuilds -o wide` and proves every pushed tag's digest with `crane
   digest` against the registry;
6. runs the new image by digest in a pod on the real node and prints its output.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.controlplane import localcluster, realnode
from tests.support import webhook_payloads
from tests.support.gitserver import GitServer, Repo

ROOT = Path(__file__).resolve().parents[1]

# The cluster `make cluster-up NODE=real` started (tests point it elsewhere).
STATE = Path(os.environ.get("AUTOBUILD_DEMO_STATE") or ROOT / ".cluster")
# The demo repository, served after the demo too (until `make cluster-down`).
GIT_ROOT = STATE / "demo-git"
NAMESPACE = "demo"
NAME = "cavityflow"
HOOK_SECRET = "demo-webhook-secret"  # noqa: S105 (a demo value, not a credential)
# Bounds for a loaded 2-core machine, not expectations: a warm build takes seconds.
BUILD_TIMEOUT_S = 420
POD_TIMEOUT_S = 180
DOCKERFILE = """\
ARG BASE
FROM ${BASE}
COPY solver.txt /opt/cavityflow/solver.txt
ARG DOCKER_TAG
ARG SOURCE_COMMIT
RUN echo "cavityflow:${DOCKER_TAG} from commit ${SOURCE_COMMIT}" > /motd \\
 && cat /opt/cavityflow/solver.txt >> /motd
CMD ["cat", "/motd"]
"""


def step(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def kubectl(cluster: localcluster.LocalCluster, *args: str, stdin: str | None = None) -> str:
    """The kubectl built with the control plane; exits with its error output on failure."""
    done = cluster.kubectl(*args, input=stdin, check=False)
    if done.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def apply(cluster: localcluster.LocalCluster, manifest: dict[str, Any]) -> None:
    print(kubectl(cluster, "apply", "-f", "-", stdin=json.dumps(manifest)), end="")


def show(cluster: localcluster.LocalCluster) -> None:
    print(kubectl(cluster, "get", "autobuilds", "-n", NAMESPACE, "-o", "wide"), flush=True)


def attach_real_cluster() -> localcluster.LocalCluster:
    """The cluster `make cluster-up NODE=real` started in .cluster/."""
    cluster = localcluster.LocalCluster.attach(STATE)
    if cluster is None or not cluster.healthy() or not cluster.real_node:
        raise SystemExit(
            "no running cluster with a real node: run `make demo` (or first "
            "`make cluster-up NODE=real`)"
        )
    return cluster


def start_over(cluster: localcluster.LocalCluster) -> None:
    """The CRD, the namespace, and nothing left of an earlier run (its Jobs go with their
    AutomatedBuild: owner references)."""
    kubectl(cluster, "apply", "-f", str(ROOT / "crds" / "automatedbuild.yaml"))
    localcluster.wait_crd_established(
        cluster.kubectl_path, cluster.kubeconfig, "automatedbuilds.autobuild.dev"
    )
    apply(cluster, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    kubectl(cluster, "delete", "ab", NAME, "-n", NAMESPACE, "--ignore-not-found", "--wait")
    kubectl(cluster, "delete", "pod", NAME, "-n", NAMESPACE, "--ignore-not-found", "--wait")


def start_operator(
    cluster: localcluster.LocalCluster, webhook_port: int
) -> subprocess.Popen[bytes]:
    """`autobuild run` for the demo namespace, configured as a cluster with this node needs
    it (executor image, insecure loopback registry, build pods on the host network). It runs
    in its own session and outlives the demo, until `make cluster-down` (``--stop``)."""
    settings = cluster.operator_env()
    for key in sorted(settings):
        print(f"  {key}={settings[key]}")
    probes = f"127.0.0.1:{localcluster._free_ports(1)[0]}"
    argv = ["autobuild", "run", "-n", NAMESPACE, "--probes", probes]
    argv += ["--webhook-address", f"127.0.0.1:{webhook_port}"]
    print(f"  {' '.join(argv)}   (log: {STATE}/operator.log)")
    with (STATE / "operator.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "autobuild.cli", *argv[1:]],
            env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig), **settings},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def start_git_server(port: int) -> subprocess.Popen[bytes]:
    """The demo's git server (tests/support/gitserver.py serve) on ``port`` in the background,
    serving GIT_ROOT until `make cluster-down`; returns once it answers."""
    with (STATE / "gitserver.log").open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "tests" / "support" / "gitserver.py"),
                "serve",
                "--root",
                str(GIT_ROOT),
                "--port",
                str(port),
            ],
            # tests/support/gitserver.py imports tests.support: the repository is its import root.
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/acme/{NAME}.git/info/refs?service=git-upload-pack",
                timeout=5,
            ):
                return process
        except OSError as refused:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"the git server did not start; see {STATE}/gitserver.log"
                ) from refused
            time.sleep(0.2)


# What keeps running after the demo: {"operator": {...}, "gitserver": {...}} (pid, port).
BACKGROUND = STATE / "demo-processes.json"


def save_background(**processes: dict[str, Any]) -> None:
    BACKGROUND.write_text(json.dumps(processes, indent=2) + "\n")


def load_background() -> dict[str, dict[str, Any]]:
    try:
        data: dict[str, dict[str, Any]] = json.loads(BACKGROUND.read_text())
    except (OSError, ValueError):
        return {}
    return data


def stop_background() -> None:
    """Stop the operator and git server an earlier demo left running (``--stop``, run by
    `make cluster-down`): SIGTERM, then SIGKILL after 10 s. Only the recorded pids, and only
    while they still run what the demo started (a recycled pid is left alone)."""
    for what, record in load_background().items():
        pid = int(record["pid"])
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if record["marker"] not in cmdline:
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)
        print(f"demo: stopped the {what} (pid {pid})")
    BACKGROUND.unlink(missing_ok=True)


def automated_build(cluster: localcluster.LocalCluster, repo: Repo) -> dict[str, Any]:
    """Docker Hub's build settings as an AutomatedBuild: main -> latest + main, v1.0 -> 1.0."""
    return {
        "apiVersion": "autobuild.dev/v1alpha1",
        "kind": "AutomatedBuild",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "source": {
                "repo": repo.clone_url,
                "provider": "git",
                "webhookSecret": f"{NAME}-hook",
            },
            "image": {
                "registry": cluster.registry,
                "namespace": "acme",
                "name": NAME,
                "visibility": "Public",
                "shortDescription": "Lid-driven cavity flow solver",
            },
            "tags": [
                {"source": "main", "dockerTag": "latest,{sourceref}"},
                {"sourceType": "Tag", "source": "/^v([0-9.]+)$/", "dockerTag": "{\\1}"},
            ],
            "buildArgs": {"BASE": cluster.images.busybox},
        },
    }


def wait_for_build(
    cluster: localcluster.LocalCluster, ref: str, process: subprocess.Popen[bytes]
) -> dict[str, Any]:
    """Poll the status until the build of ``ref`` succeeded and the operator recorded the
    registry's digest of each of its tags; print its phases on the way. Exits if it failed
    or the operator ``process`` ended."""
    start = time.monotonic()
    seen = ""
    while time.monotonic() - start < BUILD_TIMEOUT_S:
        if process.poll() is not None:
            raise SystemExit(
                f"the operator exited ({process.returncode}); see {STATE}/operator.log"
            )
        status = json.loads(kubectl(cluster, "get", "ab", NAME, "-n", NAMESPACE, "-o", "json"))
        records: list[dict[str, Any]] = status.get("status", {}).get("builds", [])
        build = next((b for b in records if b["sourceRef"] == ref), {})
        phase = build.get("phase", "not planned yet")
        if phase != seen:
            print(f"  {time.monotonic() - start:5.1f}s  build of {ref}: {phase}", flush=True)
            seen = phase
        if phase == "Failed":
            raise SystemExit(
                f"the build failed: {build.get('reason')}: {build.get('message')}\n"
                f"its Kaniko log: KUBECONFIG={cluster.kubeconfig} "
                f".venv/bin/autobuild logs {NAME} -n {NAMESPACE} --build {build['id']}"
            )
        digests = build.get("digests", {})
        if phase == "Succeeded" and all(digests.get(tag) for tag in build["tags"]):
            return build
        time.sleep(1)
    raise SystemExit(
        f"the build of {ref} is still {seen!r} after {BUILD_TIMEOUT_S}s; see {STATE}/operator.log"
    )


def deliver_github_push(
    webhook_port: int, repo: Repo, ref: str, commit: str, *, host: str = ""
) -> str:
    """POST GitHub's push event for ``ref`` to the operator, signed with the webhook secret as
    GitHub signs it (X-Hub-Signature-256); the answer's status line and body."""
    host = host or repo.clone_url.removeprefix("http://").split("/")[0]
    payload = webhook_payloads.github_push(
        ref,
        commit,
        before=webhook_payloads.ZERO,
        message="Release 1.0: multigrid solver",
        full_name=f"{repo.owner}/{repo.name}",
        host=host,
    )
    body = webhook_payloads.encode(payload)
    request = urllib.request.Request(
        f"http://127.0.0.1:{webhook_port}/hooks/github",
        data=body,
        headers=webhook_payloads.github_headers("push", body, HOOK_SECRET.encode()),
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 (loopback)
            return f"{answer.status} {answer.read().decode().strip()}"
    except urllib.error.HTTPError as refused:
        raise SystemExit(
            f"the receiver refused the delivery: {refused.code} {refused.read().decode().strip()}"
        ) from None


def prove_digests(cluster: localcluster.LocalCluster, builds: list[dict[str, Any]]) -> None:
    """Each tag's digest as the status records it (Kaniko's, and the registry's after the
    build), and as the registry serves it now."""
    image = f"{cluster.registry}/acme/{NAME}"
    print(f"  {'TAG':<8} {'status.builds[].digests':<73} crane digest")
    for build in builds:
        for tag in build["tags"]:
            served = realnode.crane_digest(cluster.node_artifacts, f"{image}:{tag}")
            recorded = build["digests"][tag]
            same = served == recorded == build["digest"]
            print(f"  {tag:<8} {recorded:<73} {'same' if same else served}")
            if not same:
                raise SystemExit(
                    f"{image}:{tag}: Kaniko pushed {build['digest']}, the status records "
                    f"{recorded}, the registry serves {served}"
                )


def run_image(cluster: localcluster.LocalCluster, image: str) -> None:
    """`docker run IMAGE`, Kubernetes style: a pod on the real node; print its output."""
    overrides = json.dumps({"apiVersion": "v1", "spec": {"nodeName": realnode.NODE_NAME}})
    argv = ["run", NAME, "-n", NAMESPACE, f"--image={image}", "--restart=Never"]
    print(f"  kubectl {' '.join(argv)} --overrides='{overrides}'")
    kubectl(cluster, *argv, f"--overrides={overrides}")
    deadline = time.monotonic() + POD_TIMEOUT_S
    phase = ""
    while phase not in ("Succeeded", "Failed"):
        if time.monotonic() > deadline:
            raise SystemExit(f"the pod is still {phase!r} after {POD_TIMEOUT_S}s")
        time.sleep(1)
        phase = kubectl(
            cluster, "get", "pod", NAME, "-n", NAMESPACE, "-o", "jsonpath={.status.phase}"
        )
    print(f"  kubectl logs {NAME}   (pod {phase})")
    print(
        "".join(
            f"  | {line}\n" for line in kubectl(cluster, "logs", NAME, "-n", NAMESPACE).splitlines()
        ),
        end="",
    )
    if phase != "Succeeded":
        raise SystemExit("the container failed")


def host_problems() -> list[str]:
    """Why this host cannot run the demo (empty when it can): checked before anything is
    built, so a host without root does not first spend minutes compiling."""
    problems = realnode.host_problems()
    if shutil.which("git") is None:
        problems.append("`git` is not on PATH (the demo's git server runs `git http-backend`)")
    return problems


def after_the_demo(cluster: localcluster.LocalCluster, git_port: int, webhook_port: int) -> str:
    """What a user can do next, with the operator and the git server still running."""
    bin_path = f"{cluster.bin_dir}:{ROOT / '.venv' / 'bin'}"
    clone = f"http://127.0.0.1:{git_port}/acme/{NAME}.git"
    return (
        "The cluster (real node and registry included), the operator (webhook receiver on "
        f"127.0.0.1:{webhook_port}, log {STATE}/operator.log) and the git server ({clone}) keep "
        "running until `make cluster-down`. Try:\n"
        f"  export KUBECONFIG={cluster.kubeconfig} PATH={bin_path}:$PATH\n"
        f"  kubectl get ab,jobs,pods -n {NAMESPACE} -o wide\n"
        f"  kubectl autobuild trigger {NAME} -n {NAMESPACE}     # a build of every rule now\n"
        f"  kubectl autobuild logs {NAME} -n {NAMESPACE} -f     # its Kaniko log, followed\n"
        f"  kubectl autobuild dockerfile {NAME} -n {NAMESPACE}  # the Dockerfile it builds\n"
        "Push to the demo repository, then deliver GitHub's signed push event (what GitHub\n"
        "does after a push; this git server sends no webhooks):\n"
        f"  git clone {clone} /tmp/{NAME} && cd /tmp/{NAME}\n"
        '  echo "conjugate gradients" >> solver.txt && git commit -qam "CG solver" && git push\n'
        f"  PYTHONPATH={ROOT} {ROOT / '.venv' / 'bin' / 'python'}"
        f" {ROOT / 'examples' / 'demo.py'} notify"
    )


def notify() -> int:
    """``demo.py notify``: GitHub's signed push event for the demo repository's main, as it
    is now, delivered to the operator the demo left running."""
    running = load_background()
    if not {"operator", "gitserver"} <= running.keys():
        raise SystemExit("no demo running: run `make demo` first")
    heads = subprocess.run(
        ["git", "ls-remote", f"http://127.0.0.1:{running['gitserver']['port']}/acme/{NAME}.git"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    refs = {line.split("\t")[1]: line.split("\t")[0] for line in heads.splitlines()}
    commit = refs["refs/heads/main"]
    git = GitServer(GIT_ROOT)  # only for the repository's name and URL in the payload
    repo = Repo(git, "acme", NAME)
    answer = deliver_github_push(
        int(running["operator"]["port"]),
        repo,
        "refs/heads/main",
        commit,
        host=f"127.0.0.1:{running['gitserver']['port']}",
    )
    print(f"push event for main at {commit[:12]} -> {answer}")
    return 0


def main(argv: list[str]) -> int:
    if argv == ["--check-host"]:
        problems = host_problems()
        for problem in problems:
            print(f"make demo: {problem}", file=sys.stderr)
        return 1 if problems else 0
    if argv == ["--stop"]:
        stop_background()
        return 0
    if argv == ["notify"]:
        return notify()
    if argv:
        raise SystemExit("usage: demo.py [--check-host | --stop | notify]")
    began = time.monotonic()
    cluster = attach_real_cluster()
    webhook_port = localcluster._free_ports(1)[0]
    timings: dict[str, float] = {}
    # A demo run again starts over: the earlier one's operator and git server go first.
    stop_background()
    shutil.rmtree(GIT_ROOT, ignore_errors=True)
    GIT_ROOT.mkdir(parents=True)
    with GitServer(GIT_ROOT) as git:
        git_port = git.port
        step(f"A real git server ({git.url}) and a real registry ({cluster.registry})")
        repo = git.create_repo("acme", NAME)
        first = repo.commit(
            "main",
            {"Dockerfile": DOCKERFILE, "solver.txt": "Jacobi iterations on a 64x64 grid\n"},
            "Initial solver",
        )
        print(DOCKERFILE)
        print(f"pushed main at {first[:12]}")

        step("Install the CRD; run the operator with the real node's build settings")
        start_over(cluster)
        process = start_operator(cluster, webhook_port)
        operator_record = {"pid": process.pid, "marker": "autobuild.cli", "port": webhook_port}
        save_background(operator=operator_record)
        step("Apply an AutomatedBuild: Kaniko builds main on creation and pushes it")
        manifest = automated_build(cluster, repo)
        apply(
            cluster,
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"{NAME}-hook", "namespace": NAMESPACE},
                "stringData": {"secret": HOOK_SECRET},
            },
        )
        print(json.dumps(manifest["spec"], indent=2))
        applied = time.monotonic()
        apply(cluster, manifest)
        created = wait_for_build(cluster, "main", process)
        timings["creation build"] = time.monotonic() - applied
        show(cluster)

        step("Commit a faster solver, tag it v1.0, deliver GitHub's signed push event")
        second = repo.commit(
            "main", {"solver.txt": "multigrid V-cycles on a 256x256 grid\n"}, "Multigrid"
        )
        repo.tag("v1.0", second)
        print(f"pushed main at {second[:12]}, tagged v1.0")
        hook_path = kubectl(
            cluster, "get", "ab", NAME, "-n", NAMESPACE, "-o", "jsonpath={.status.webhookPath}"
        )
        delivered = time.monotonic()
        answer = deliver_github_push(webhook_port, repo, "refs/tags/v1.0", second)
        print(
            f"POST http://127.0.0.1:{webhook_port}{hook_path or '/hooks/github'}"
            f" (X-GitHub-Event: push, X-Hub-Signature-256) -> {answer}"
        )
        tagged = wait_for_build(cluster, "v1.0", process)
        timings["webhook build"] = time.monotonic() - delivered
        show(cluster)

    # The same repository on the same port, served in the background from now on.
    git_server = start_git_server(git_port)
    save_background(
        operator=operator_record,
        gitserver={"pid": git_server.pid, "marker": "gitserver.py", "port": git_port},
    )

    step(f"The registry serves every tag with the recorded digest ({cluster.registry})")
    prove_digests(cluster, [created, tagged])

    image = f"{cluster.registry}/acme/{NAME}@{tagged['digest']}"
    step("Run it (the last step of Docker Hub's walkthrough): a pod on the real node, by digest")
    run_image(cluster, image)

    timings["whole demo"] = time.monotonic() - began
    print("\n" + ", ".join(f"{what} {seconds:.0f}s" for what, seconds in timings.items()))
    print(after_the_demo(cluster, git_port, webhook_port))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
