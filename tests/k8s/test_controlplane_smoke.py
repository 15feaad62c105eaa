"""Smoke tests of the real local control plane (etcd, kube-apiserver, controller-manager,
scheduler, kwok) that the operator's tests, the demo and the benchmarks run on."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.controlplane import localcluster

pytestmark = pytest.mark.k8s


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def test_server_reports_the_pinned_version(k8s_cluster: Any, k8s_api: Any) -> None:
    pinned = localcluster.load_versions()["kubernetes"]
    assert client.VersionApi(k8s_api).get_code().git_version == pinned
    out = json.loads(k8s_cluster.kubectl("version", "-o", "json").stdout)
    assert out["clientVersion"]["gitVersion"] == pinned
    assert out["serverVersion"]["gitVersion"] == pinned


def test_fake_node_is_ready_and_big(k8s_api: Any) -> None:
    nodes = client.CoreV1Api(k8s_api).list_node().items
    fake = [n for n in nodes if (n.metadata.annotations or {}).get("kwok.x-k8s.io/node")]
    assert fake
    for node in fake:
        ready = {c.type: c.status for c in node.status.conditions}["Ready"]
        assert ready == "True"
        assert node.status.allocatable["pods"] == "110"


CRD_TEMPLATE = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{group}
spec:
  group: {group}
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size:
                type: integer
                minimum: 1
"""


def test_crd_applied_with_kubectl_becomes_served(
    k8s_cluster: Any, k8s_api: Any, k8s_namespace: str
) -> None:
    group = f"smoke{uuid.uuid4().hex[:8]}.autobuild.test"
    crd = f"widgets.{group}"
    applied = k8s_cluster.kubectl("apply", "-f", "-", input=CRD_TEMPLATE.format(group=group))
    assert f"customresourcedefinition.apiextensions.k8s.io/{crd} created" in applied.stdout
    try:
        localcluster.wait_crd_established(k8s_cluster.kubectl_path, k8s_cluster.kubeconfig, crd)
        custom = client.CustomObjectsApi(k8s_api)
        body = {
            "apiVersion": f"{group}/v1",
            "kind": "Widget",
            "metadata": {"name": "w1"},
            "spec": {"size": 3},
        }
        # Discovery and the REST endpoint can lag the Established condition by a moment.
        wait_for(
            "the Widget endpoint",
            lambda: (
                k8s_cluster.kubectl("api-resources", f"--api-group={group}", "-o", "name")
                .stdout.strip()
                .startswith("widgets")
            ),
            timeout=30,
        )
        custom.create_namespaced_custom_object(group, "v1", k8s_namespace, "widgets", body)
        got = custom.get_namespaced_custom_object(group, "v1", k8s_namespace, "widgets", "w1")
        assert got["spec"] == {"size": 3}
        # The schema is enforced by the real apiserver.
        bad = {**body, "metadata": {"name": "w2"}, "spec": {"size": 0}}
        with pytest.raises(client.ApiException) as err:
            custom.create_namespaced_custom_object(group, "v1", k8s_namespace, "widgets", bad)
        assert err.value.status == 422
        listed = k8s_cluster.kubectl("get", "widgets", "-n", k8s_namespace, "-o", "name")
        assert listed.stdout.split() == [f"widget.{group}/w1"]
    finally:
        k8s_cluster.kubectl("delete", "crd", crd, "--wait=false", check=False)


def _job(name: str) -> client.V1Job:
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1JobSpec(
            backoff_limit=0,
            template=client.V1PodTemplateSpec(
                spec=client.V1PodSpec(
                    restart_policy="Never",
                    containers=[
                        client.V1Container(name="main", image="busybox:1.36", command=["true"])
                    ],
                )
            ),
        ),
    )


def test_job_runs_to_complete(k8s_api: Any, k8s_namespace: str) -> None:
    batch = client.BatchV1Api(k8s_api)
    core = client.CoreV1Api(k8s_api)
    batch.create_namespaced_job(k8s_namespace, _job("hello"))

    def complete() -> bool:
        job = batch.read_namespaced_job_status("hello", k8s_namespace)
        conds = {c.type: c.status for c in (job.status.conditions or [])}
        assert conds.get("Failed") != "True", job.status
        return conds.get("Complete") == "True"

    wait_for("the Job to complete", complete, timeout=90)
    job = batch.read_namespaced_job_status("hello", k8s_namespace)
    assert job.status.succeeded == 1
    pods = core.list_namespaced_pod(k8s_namespace, label_selector="job-name=hello").items
    assert len(pods) == 1
    pod = pods[0]
    # Bound by the scheduler to the fake node, finished by kwok's pod-complete stage.
    assert pod.spec.node_name.startswith("kwok-node-")
    assert pod.status.phase == "Succeeded"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0
    # The ServiceAccount admission and controllers ran: the pod got the default account.
    assert pod.spec.service_account_name == "default"


def test_deleting_a_namespace_removes_its_objects(k8s_api: Any) -> None:
    core = client.CoreV1Api(k8s_api)
    batch = client.BatchV1Api(k8s_api)
    ns = f"t-delete-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    core.create_namespaced_config_map(
        ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm"), data={"a": "b"})
    )
    batch.create_namespaced_job(ns, _job("job"))
    wait_for(
        "the Job's pod",
        lambda: core.list_namespaced_pod(ns, label_selector="job-name=job").items,
    )
    core.delete_namespace(ns)

    def gone() -> bool:
        try:
            core.read_namespace(ns)
        except client.ApiException as e:
            if e.status == 404:
                return True
            raise
        return False

    wait_for("the namespace to be deleted", gone, timeout=120, every=0.5)
    assert not core.list_namespaced_config_map(ns).items
    assert not batch.list_namespaced_job(ns).items
    assert not core.list_namespaced_pod(ns).items


def test_rbac_is_enforced_for_service_account_tokens(
    k8s_cluster: Any, k8s_api: Any, k8s_namespace: str, tmp_path: Path
) -> None:
    """Service-account keys sign tokens the apiserver accepts; RBAC denies by default."""
    core = client.CoreV1Api(k8s_api)
    core.create_namespaced_service_account(
        k8s_namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody"))
    )
    token = core.create_namespaced_service_account_token(
        "nobody",
        k8s_namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
        ),
    ).status.token
    # The same cluster entry, but the token as the only credential (no client cert).
    cfg = yaml.safe_load(k8s_cluster.kubeconfig.read_text())
    cfg["users"] = [{"name": "nobody", "user": {"token": token}}]
    for ctx in cfg["contexts"]:
        ctx["context"]["user"] = "nobody"
    as_nobody = tmp_path / "nobody.kubeconfig"
    as_nobody.write_text(yaml.safe_dump(cfg))
    denied = subprocess.run(
        [str(k8s_cluster.kubectl_path), f"--kubeconfig={as_nobody}", "get", "secrets"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()
    assert f"system:serviceaccount:{k8s_namespace}:nobody" in denied.stderr


def test_a_second_cluster_starts_and_stops_without_leftovers(
    k8s_cluster: Any, tmp_path: Path
) -> None:
    """The harness itself: own dir, own ports, every process gone after stop()."""
    cluster = localcluster.LocalCluster(state_dir=tmp_path / "second")
    with cluster:
        assert cluster.server != k8s_cluster.server
        pids = [c.pid for c in cluster.components]
        assert {c.name for c in cluster.components} == {
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kwok",
        }
        nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
        assert [n["metadata"]["name"] for n in nodes] == ["kwok-node-0"]
        assert sum(cluster.rss_bytes().values()) > 0
    for pid in pids:
        assert not localcluster._pid_alive(pid), f"pid {pid} survived stop()"
    assert not (tmp_path / "second" / "state.json").exists()
