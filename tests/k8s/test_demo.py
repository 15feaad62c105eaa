"""`make demo` leaves a working cluster (issue #20, item 5), tried as a new user would.

The steps of `make demo` in their own processes, on a state dir of the test's own
(``AUTOBUILD_DEMO_STATE``): ``localcluster.py up --real-node``, ``examples/demo.py``; then what
the demo prints next: ``autobuild trigger`` builds, ``logs -f`` follows that build to its push,
``dockerfile`` reads the repository, and a ``git push`` followed by ``demo.py notify`` builds
the pushed commit. ``demo.py --stop`` + ``down`` (what `make cluster-down` runs) leave no
operator, git server or node process behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.controlplane import localcluster, realnode
from tests.support.gitserver import git_env

pytestmark = [pytest.mark.k8s, pytest.mark.realnode]

ROOT = Path(__file__).resolve().parents[2]
BUILD_DEADLINE_S = 420


def _run(argv: list[str], env: dict[str, str], timeout: float = 600) -> str:
    proc = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{argv}: {proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _builds(cluster: localcluster.LocalCluster) -> list[dict[str, Any]]:
    body = json.loads(cluster.kubectl("get", "ab", "cavityflow", "-n", "demo", "-o", "json").stdout)
    records: list[dict[str, Any]] = (body.get("status") or {}).get("builds") or []
    return records


def _wait(cluster: localcluster.LocalCluster, what: str, check: Any) -> dict[str, Any]:
    deadline = time.monotonic() + BUILD_DEADLINE_S
    while True:
        found = [b for b in _builds(cluster) if check(b)]
        if found and found[-1].get("phase") in ("Succeeded", "Failed"):
            return found[-1]
        assert time.monotonic() < deadline, f"{what}: {_builds(cluster)}"
        time.sleep(1)


def _demo_processes(state: Path) -> list[int]:
    """Pids of live processes started from this state dir's demo (operator, git server)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if f"AUTOBUILD_DEMO_STATE={state}".encode() in environ and (
            b"autobuild.cli" in cmdline or b"gitserver.py" in cmdline
        ):
            pids.append(int(entry.name))
    return pids


def test_make_demo_leaves_a_working_cluster(tmp_path: Path) -> None:
    problems = realnode.host_problems()
    if problems:
        pytest.skip("this host cannot run the real node: " + "; ".join(problems))
    state = tmp_path / "cluster"
    # The demo runs as its printed hint says: by path, the repository as its import root.
    env = {**os.environ, "AUTOBUILD_DEMO_STATE": str(state), "PYTHONPATH": str(ROOT)}
    script = [sys.executable, "-m", "tests.controlplane.localcluster"]
    demo = [sys.executable, str(ROOT / "examples" / "demo.py")]
    _run([*script, "up", "--real-node", "--state-dir", str(state), "--timeout", "300"], env)
    try:
        printed = _run(demo, env)
        cluster = localcluster.LocalCluster.attach(state)
        assert cluster is not None
        user = {**env, "KUBECONFIG": str(cluster.kubeconfig)}
        cli = [sys.executable, "-m", "autobuild.cli"]

        # The operator still runs: a trigger builds, and logs -f follows it to the push.
        before = {b["id"] for b in _builds(cluster)}
        assert "requested" in _run([*cli, "trigger", "cavityflow", "-n", "demo"], user)
        triggered = _wait(cluster, "the triggered build", lambda b: b["id"] not in before)
        assert triggered["phase"] == "Succeeded", triggered
        followed = _run([*cli, "logs", "cavityflow", "-n", "demo", "-f"], user)
        assert "Pushed" in followed

        # The git server still runs: dockerfile reads the repository.
        dockerfile = _run([*cli, "dockerfile", "cavityflow", "-n", "demo"], user)
        assert "COPY solver.txt" in dockerfile

        # A push, then GitHub's signed push event (demo.py notify), builds the new commit.
        port = json.loads((state / "demo-processes.json").read_text())["gitserver"]["port"]
        work = tmp_path / "work"
        genv = git_env(tmp_path / "home")
        subprocess.run(
            ["git", "clone", "-q", f"http://127.0.0.1:{port}/acme/cavityflow.git", str(work)],
            env=genv,
            check=True,
        )
        with (work / "solver.txt").open("a") as solver:
            solver.write("conjugate gradients\n")
        for argv in (["commit", "-qam", "CG solver"], ["push", "-q"]):
            subprocess.run(["git", *argv], cwd=work, env=genv, check=True)
        pushed = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=work,
            env=genv,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert "202" in _run([*demo, "notify"], env)
        built = _wait(cluster, "the pushed commit's build", lambda b: b["commit"] == pushed)
        assert built["phase"] == "Succeeded", built
        assert _demo_processes(state), "the demo's operator and git server should be running"
        # ... as the demo said, with the commands that work now.
        assert "keep running until `make cluster-down`" in printed
        assert "demo.py notify" in printed
    finally:
        stop = subprocess.run(
            [*demo, "--stop"], env=env, capture_output=True, text=True, check=False
        )
        down = subprocess.run(
            [*script, "down", "--state-dir", str(state)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    assert stop.returncode == 0, stop.stderr
    assert "stopped the operator" in stop.stdout
    assert down.returncode == 0, down.stderr
    assert _demo_processes(state) == []
