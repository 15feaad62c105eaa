"""The harness of the operator tests on the real control plane (tests/k8s/): AutomatedBuild
manifests, a :class:`World` that reads and moves one test namespace's objects (playing the
kubelet for build pods), and the waits, triggers and credentials the tests share. The
fixtures that start the operator, a registry and a git server are in tests/k8s/conftest.py."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from tests.support.gitserver import Repo
from tests.support.operator_process import eventually

ROOT = Path(__file__).resolve().parents[2]
DIGEST = "sha256:" + "c" * 64
# A push Secret for the (unused) registry the builds of these tests name.
DEFAULT_REGISTRY_AUTH = json.dumps({"auths": {"127.0.0.1:5000": {"auth": "dTpw"}}})
GROUP, VERSION, PLURAL = "autobuild.dev", "v1alpha1", "automatedbuilds"


def manifest(namespace: str, repo: Repo | str, name: str = "app", **spec: Any) -> dict[str, Any]:
    """An AutomatedBuild of ``repo`` (main -> latest, to the unused 127.0.0.1:5000); ``spec``
    replaces top-level spec fields."""
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AutomatedBuild",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "source": {"repo": repo if isinstance(repo, str) else repo.clone_url},
            "image": {
                "registry": "127.0.0.1:5000",
                "namespace": "acme",
                "name": name,
                "visibility": "Public",
                "shortDescription": "test image",
            },
            "tags": [{"source": "main", "dockerTag": "latest"}],
        },
    }
    body["spec"].update(spec)
    return body


class World:
    """Reads and moves the objects of one test namespace."""

    def __init__(self, api: Any, namespace: str) -> None:
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api)
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)

    def create(self, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)

    def get(self, name: str = "app") -> dict[str, Any]:
        found: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )
        return found

    def status(self, name: str = "app") -> dict[str, Any]:
        return self.get(name).get("status") or {}

    def jobs(self) -> list[Any]:
        return sorted(
            self.batch.list_namespaced_job(self.namespace).items,
            key=lambda j: j.metadata.creation_timestamp,
        )

    def pods(self, job_name: str) -> list[Any]:
        return self.core.list_namespaced_pod(
            self.namespace, label_selector=f"job-name={job_name}"
        ).items

    def push_secret(self, config: str, name: str = "regcred") -> None:
        """A kubernetes.io/dockerconfigjson Secret holding ``config``."""
        self.core.create_namespaced_secret(
            self.namespace,
            {
                "metadata": {"name": name},
                "type": "kubernetes.io/dockerconfigjson",
                "stringData": {".dockerconfigjson": config},
            },
        )

    def wait_events(self, *reasons: str) -> list[Any]:
        """The AutomatedBuilds' Events once all ``reasons`` are among them: the operator posts
        Events after the status write they describe, so a test that saw the status waits."""

        def posted() -> list[Any]:
            events = [
                e
                for e in self.core.list_namespaced_event(self.namespace).items
                if e.involved_object.kind == "AutomatedBuild"
            ]
            return events if set(reasons) <= {e.reason for e in events} else []

        found: list[Any] = eventually(posted, 30, f"Events {reasons}")
        return found

    def builds(self, name: str = "app") -> list[dict[str, Any]]:
        return list(self.status(name).get("builds") or [])

    def finish_pod(
        self, job_name: str, exit_code: int, message: str = "", reason: str | None = None
    ) -> None:
        """Play kubelet: the build pod ran and ended."""
        pod = eventually(lambda: self.pods(job_name), 30, f"pod of {job_name}")[0]
        status = terminated_pod_status(exit_code, message, reason)
        self.core.patch_namespaced_pod_status(pod.metadata.name, self.namespace, {"status": status})

    def run_pod(self, job_name: str) -> None:
        pod = eventually(lambda: self.pods(job_name), 30, f"pod of {job_name}")[0]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        status = _kaniko_pod_status("Running", ready=True, state={"running": {"startedAt": now}})
        self.core.patch_namespaced_pod_status(pod.metadata.name, self.namespace, {"status": status})


def build_phase(world: World, phase: str, index: int = 0) -> Callable[[], bool]:
    """A check for :func:`eventually`: the ``index``-th newest build is in ``phase``."""

    def check() -> bool:
        builds = world.builds()
        return len(builds) > index and builds[index]["phase"] == phase

    return check


def wait_triggers_handled(world: World) -> None:
    """Creation and every trigger request so far are acted on."""
    from autobuild.planning.triggers import ANNOTATION_TRIGGER, parse_requests

    def handled() -> bool:
        body = world.get()
        requests = parse_requests(
            (body["metadata"].get("annotations") or {}).get(ANNOTATION_TRIGGER)
        )
        wanted = requests[-1].id if requests else "create"
        return ((body.get("status") or {}).get("lastTrigger") or {}).get("id") == wanted

    eventually(handled, 30, "earlier triggers handled")


def trigger(k8s_cluster: Any, world: World, *extra: str) -> str:
    """``autobuild trigger app`` once the earlier triggers are handled; its stdout."""
    wait_triggers_handled(world)
    result = subprocess.run(
        [sys.executable, "-m", "autobuild.cli", "trigger", "app", "-n", world.namespace, *extra],
        env=dict(os.environ, KUBECONFIG=str(k8s_cluster.kubeconfig)),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout


def stalled_condition(world: World, name: str = "app") -> dict[str, Any] | None:
    """The Stalled condition while it is True."""
    conditions = world.status(name).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Stalled" and c["status"] == "True"), None)


def ready_condition(world: World) -> dict[str, Any] | None:
    """The Ready condition, whatever its status."""
    return next((c for c in world.status().get("conditions") or [] if c["type"] == "Ready"), None)


@contextlib.contextmanager
def service_account_kubeconfig(k8s_cluster: Any, where: Path, *more_rbac: Path) -> Iterator[Path]:
    """A kubeconfig with a real token of the operator's ServiceAccount, bound by the shipped
    manifests/base/rbac.yaml (and ``more_rbac``) only; the RBAC objects are deleted after (the
    Helm tests install their own, and Helm refuses objects it does not own)."""
    files = [ROOT / "manifests" / "base" / "rbac.yaml", *more_rbac]
    try:
        for rbac in files:
            k8s_cluster.kubectl("apply", "-f", str(rbac))
        token = k8s_cluster.kubectl(
            "create", "token", "autobuild-operator", "-n", "autobuild-system", "--duration=1h"
        ).stdout.strip()
        config = yaml.safe_load(Path(k8s_cluster.kubeconfig).read_text())
        config["users"] = [{"name": config["users"][0]["name"], "user": {"token": token}}]
        limited = where / "operator-kubeconfig"
        limited.write_text(yaml.safe_dump(config))
        yield limited
    finally:
        # Not the Namespace: deleting it takes a while, and the Helm tests install into it.
        for rbac in reversed(files):
            for doc in yaml.safe_load_all(rbac.read_text()):
                if doc and doc["kind"] != "Namespace":
                    meta = doc["metadata"]
                    where = ["-n", meta["namespace"]] if "namespace" in meta else []
                    k8s_cluster.kubectl(
                        "delete", "--ignore-not-found", doc["kind"], meta["name"], *where
                    )


def autobuild_cli(k8s_cluster: Any, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it against the cluster; not checked, output as text."""
    return subprocess.run(
        [sys.executable, "-m", "autobuild.cli", *args],
        env=dict(os.environ, KUBECONFIG=str(k8s_cluster.kubeconfig)),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def hook_secret(
    world: World, name: str = "hook", key: str = "secret", value: str = "s3cret"
) -> bytes:
    """A webhook Secret holding ``value`` under ``key``; the value as bytes."""
    world.core.create_namespaced_secret(
        world.namespace, {"metadata": {"name": name}, "stringData": {key: value}}
    )
    return value.encode()


def create_tag_builds(world: World, repo: Repo) -> bytes:
    """An AutomatedBuild ``app`` of ``repo`` that builds tags ``vX.Y`` as ``X.Y`` (Parallel),
    its GitHub deliveries verified with a webhook Secret, after the operator's first visit; the
    Secret's value."""
    secret = hook_secret(world)
    tags = [{"sourceType": "Tag", "source": "/^v([0-9.]+)$/", "dockerTag": "{\\1}"}]
    body = manifest(world.namespace, repo, tags=tags, runPolicy="Parallel")
    body["spec"]["source"]["webhookSecret"] = "hook"
    world.create(body)
    eventually(lambda: ready_condition(world), 30, "first visit")
    return secret


def docker_config(host: str, user: str, password: str) -> str:
    """A ``.dockerconfigjson`` with one registry's credentials."""
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    return json.dumps({"auths": {host: {"auth": auth}}})


def terminated_pod_status(
    exit_code: int, message: str = "", reason: str | None = None
) -> dict[str, Any]:
    """A build pod's status as kubelet writes it once its kaniko container ended."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    terminated = {
        "exitCode": exit_code,
        "reason": reason or ("Completed" if exit_code == 0 else "Error"),
        "message": message,
        "startedAt": now,
        "finishedAt": now,
    }
    phase = "Succeeded" if exit_code == 0 else "Failed"
    return _kaniko_pod_status(phase, ready=False, state={"terminated": terminated})


def _kaniko_pod_status(phase: str, ready: bool, state: dict[str, Any]) -> dict[str, Any]:
    """A build pod's status with its one kaniko container in ``state``."""
    container = {
        "name": "kaniko",
        "image": "kaniko",
        "imageID": "",
        "ready": ready,
        "restartCount": 0,
        "state": state,
    }
    return {"phase": phase, "containerStatuses": [container]}
