"""`kubectl autobuild ...`: the real kubectl (built by the harness) finds the package's
``kubectl-autobuild`` on PATH, and the plugin honours kubectl's --kubeconfig, --context and
-n/--namespace, reaching the local control plane."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "autobuild.dev", "v1alpha1", "automatedbuilds"
PLUGIN = Path(sys.executable).parent / "kubectl-autobuild"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def kubeconfig(k8s_cluster: Any, k8s_namespace: str, tmp_path: Path) -> Path:
    """Two contexts: `good` (the cluster, defaulting to the test namespace) and `broken`
    (current; a port nothing listens on): only an honoured --context reaches the cluster."""
    config = yaml.safe_load(Path(k8s_cluster.kubeconfig).read_text())
    cluster = config["clusters"][0]
    user = config["users"][0]
    dead = {**cluster["cluster"], "server": f"https://127.0.0.1:{closed_port()}"}
    config["clusters"] = [cluster, {"name": "nowhere", "cluster": dead}]
    config["contexts"] = [
        {
            "name": "good",
            "context": {
                "cluster": cluster["name"],
                "user": user["name"],
                "namespace": k8s_namespace,
            },
        },
        {"name": "broken", "context": {"cluster": "nowhere", "user": user["name"]}},
    ]
    config["current-context"] = "broken"
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def automated_build(k8s_cluster: Any, k8s_api: Any, k8s_namespace: str) -> str:
    k8s_cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds" / "automatedbuild.yaml"))
    k8s_cluster.kubectl(
        "wait", "--for=condition=Established", "crd/automatedbuilds.autobuild.dev", "--timeout=60s"
    )
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AutomatedBuild",
        "metadata": {"name": "app", "namespace": k8s_namespace},
        "spec": {
            "source": {"repo": "http://127.0.0.1:9/acme/app.git"},
            "image": {
                "registry": "127.0.0.1:5000",
                "namespace": "acme",
                "name": "app",
                "visibility": "Public",
                "shortDescription": "plugin test",
            },
            "tags": [{"source": "main", "dockerTag": "latest"}],
        },
    }
    client.CustomObjectsApi(k8s_api).create_namespaced_custom_object(
        GROUP, VERSION, k8s_namespace, PLURAL, body
    )
    return "app"


def kubectl(k8s_cluster: Any, *args: str, kubeconfig_env: Path | None = None) -> Any:
    """The built kubectl, with the plugin (and nothing else of this venv) first on PATH."""
    assert PLUGIN.is_file(), f"{PLUGIN} is missing: run `make install` (pyproject scripts)"
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["PATH"] = os.pathsep.join(
        [str(PLUGIN.parent), str(k8s_cluster.bin_dir), "/usr/bin", "/bin"]
    )
    if kubeconfig_env is not None:
        env["KUBECONFIG"] = str(kubeconfig_env)
    return subprocess.run(
        [str(k8s_cluster.kubectl_path), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def trigger_annotation(k8s_api: Any, namespace: str) -> str:
    body = client.CustomObjectsApi(k8s_api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "app"
    )
    return str((body["metadata"].get("annotations") or {}).get("autobuild.dev/trigger", ""))


def test_kubectl_lists_the_plugin(k8s_cluster: Any) -> None:
    result = kubectl(k8s_cluster, "plugin", "list", "--name-only")
    assert "kubectl-autobuild" in result.stdout.split()
    usage = kubectl(k8s_cluster, "autobuild", "--help")
    assert usage.returncode == 0
    assert usage.stdout.startswith("usage: kubectl autobuild")
    for command in ("trigger", "cancel", "logs", "repos", "new", "dockerfile"):
        assert command in usage.stdout


def test_context_and_kubeconfig_pick_the_cluster_and_namespace(
    k8s_cluster: Any, k8s_api: Any, k8s_namespace: str, kubeconfig: Path, automated_build: str
) -> None:
    # The current context points nowhere: the trigger fails and writes nothing.
    failed = kubectl(
        k8s_cluster,
        "autobuild",
        "trigger",
        "app",
        "-n",
        k8s_namespace,
        "--kubeconfig",
        str(kubeconfig),
    )
    assert failed.returncode == 1
    assert failed.stderr.startswith("autobuild: cannot reach the Kubernetes API server: ")
    assert "Traceback" not in failed.stderr
    assert trigger_annotation(k8s_api, k8s_namespace) == ""
    # --context good: its namespace is the default, as with kubectl.
    done = kubectl(
        k8s_cluster,
        "autobuild",
        "trigger",
        "app",
        "--kubeconfig",
        str(kubeconfig),
        "--context",
        "good",
    )
    assert done.returncode == 0, done.stderr
    request_id = done.stdout.split()[2]
    assert done.stdout == f"automatedbuild/app trigger {request_id} requested\n"
    assert request_id in trigger_annotation(k8s_api, k8s_namespace)
    # KUBECONFIG from the environment, --context and --namespace=... on the command line.
    logs = kubectl(
        k8s_cluster,
        "autobuild",
        "logs",
        "app",
        f"--namespace={k8s_namespace}",
        "--context",
        "good",
        kubeconfig_env=kubeconfig,
    )
    assert (logs.returncode, logs.stderr) == (
        1,
        "autobuild: AutomatedBuild app has no builds yet\n",
    )
    cancel = kubectl(
        k8s_cluster, "autobuild", "cancel", "app", "--context=good", kubeconfig_env=kubeconfig
    )
    assert cancel.returncode == 0, cancel.stderr
    assert cancel.stderr == "autobuild: no queued or running build to cancel\n"
    # Another namespace, named with -n, wins over the context's.
    elsewhere = kubectl(
        k8s_cluster,
        "autobuild",
        "logs",
        "app",
        "-n",
        "default",
        "--context",
        "good",
        kubeconfig_env=kubeconfig,
    )
    assert elsewhere.stderr == "autobuild: AutomatedBuild default/app not found\n"


def test_an_unknown_context_is_a_clear_error(k8s_cluster: Any, kubeconfig: Path) -> None:
    result = kubectl(
        k8s_cluster,
        "autobuild",
        "trigger",
        "app",
        "--kubeconfig",
        str(kubeconfig),
        "--context",
        "nope",
    )
    assert result.returncode == 1
    assert result.stderr.startswith("autobuild: kubeconfig: ")
    assert "nope" in result.stderr
