"""The shipped installation on the real control plane: the kustomize manifests equal the chart's
defaults and pass server-side validation; `helm install` of the chart runs (its Deployment is
scheduled on kwok's node), and the operator, run locally under the chart's ServiceAccount
(a TokenRequest token, not admin), takes a build through its lifecycle with exactly the chart's
RBAC, in both watch scopes. Without one permission it visibly fails.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from autobuild.settings import BuildSettings, GitHubSettings
from tests.support.gitserver import GitServer, Repo
from tests.support.helmbin import ensure_helm
from tests.support.operator_harness import DIGEST, World, build_phase, manifest
from tests.support.operator_process import Operator, eventually
from tests.support.packaging import (
    CHART,
    MANIFESTS,
    NAMESPACE,
    by_kind,
    container_env,
    documents,
    helm_env,
    helm_template,
    identities,
    one,
    package_version,
)

pytestmark = pytest.mark.k8s


@pytest.fixture(scope="module")
def helm() -> Path:
    return ensure_helm()


def kustomize(k8s_cluster: Any, directory: Path) -> list[dict[str, Any]]:
    return documents(k8s_cluster.kubectl("kustomize", str(directory)).stdout)


def images(docs: list[dict[str, Any]]) -> list[str]:
    return [
        c["image"]
        for d in by_kind(docs, "Deployment")
        for c in d["spec"]["template"]["spec"]["containers"]
    ]


def test_kustomize_base_is_the_charts_default_install(k8s_cluster: Any, helm: Path) -> None:
    base = kustomize(k8s_cluster, MANIFESTS / "base")
    chart = documents(helm_template(helm).stdout)
    # Helm leaves the namespace to `--create-namespace`; the base creates it.
    assert identities(base) - {("Namespace", "", NAMESPACE)} == identities(chart)
    assert one(base, "CustomResourceDefinition") == one(chart, "CustomResourceDefinition")
    kinds = (
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",  # the leader election's Lease
        "RoleBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    )
    for kind in kinds:
        assert {k: v for k, v in one(base, kind).items() if k != "metadata"} == {
            k: v for k, v in one(chart, kind).items() if k != "metadata"
        }, kind
    ours, theirs = one(base, "Deployment")["spec"], one(chart, "Deployment")["spec"]
    for field in ("replicas", "strategy", "selector"):
        assert ours[field] == theirs[field], field
    assert ours["template"]["spec"] == theirs["template"]["spec"]
    assert ours["template"]["metadata"]["labels"].items() <= (
        theirs["template"]["metadata"]["labels"].items()
    )
    assert one(base, "Service")["spec"] == one(chart, "Service")["spec"]


def test_images_are_tagged_with_the_package_version(k8s_cluster: Any, helm: Path) -> None:
    """Never `latest`: the operator and its CRD must be the same version."""
    renders = {
        "chart": documents(helm_template(helm).stdout),
        "base": kustomize(k8s_cluster, MANIFESTS / "base"),
        "overlay": kustomize(k8s_cluster, MANIFESTS / "overlays" / "example"),
    }
    for where, docs in renders.items():
        (image,) = images(docs)
        assert image.rpartition(":")[2] == package_version(), where
    rejected = helm_template(helm, values={"image": {"tag": "latest"}}, check=False)
    assert rejected.returncode != 0


def test_the_example_overlay_configures_the_operator(k8s_cluster: Any, helm: Path) -> None:
    docs = kustomize(k8s_cluster, MANIFESTS / "overlays" / "example")
    # It watches the namespace ci only: exactly the chart's RBAC for `watchNamespaces: [ci]`
    # with a public URL (no cluster-wide Secret access, not even the hooks' Secret create).
    values = {"watchNamespaces": ["ci"], "webhook": {"publicUrl": "https://autobuild.example.com"}}
    chart = documents(helm_template(helm, values=values).stdout)
    assert by_kind(docs, "ClusterRole") == by_kind(chart, "ClusterRole") == []

    def in_ci(render: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
        """Those of the watched namespace (not the leader election's, in autobuild-system)."""
        return [d for d in by_kind(render, kind) if d["metadata"]["namespace"] == "ci"]

    (role,) = in_ci(docs, "Role")
    (chart_role,) = in_ci(chart, "Role")
    assert role["rules"] == chart_role["rules"]
    (binding,) = in_ci(docs, "RoleBinding")
    (chart_binding,) = in_ci(chart, "RoleBinding")
    assert binding["subjects"] == chart_binding["subjects"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    (chart_container,) = one(chart, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["args"] == chart_container["args"]
    assert container["args"][-2:] == ["--namespace", "ci"]
    env = container_env(one(docs, "Deployment"))
    assert GitHubSettings.from_env(env).public_url == "https://autobuild.example.com"
    settings = BuildSettings.from_env(env)
    assert settings.node_selector == (("autobuild.dev/builder", "true"),)
    assert settings.insecure_registries == ("registry.internal:5000",)
    ingress = one(docs, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    service = one(docs, "Service")
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["number"] == service["spec"]["ports"][0]["port"]


@pytest.mark.parametrize("render", ["chart", "kustomize"])
def test_the_api_server_accepts_every_object(k8s_cluster: Any, helm: Path, render: str) -> None:
    """Server-side dry run: schema, defaults and admission of the real API server. The
    namespace and the CRD are applied for real first (a dry-run creates nothing that later
    objects could live in)."""
    if render == "chart":
        docs = documents(helm_template(helm, "--set", "ingress.enabled=true").stdout)
    else:
        docs = kustomize(k8s_cluster, MANIFESTS / "overlays" / "example")
        # The NetworkPolicy example, in the operator's namespace and the overlay's ci.
        docs += documents((MANIFESTS / "networkpolicy-example.yaml").read_text())
    k8s_cluster.kubectl(
        "apply",
        "--server-side",
        "-f",
        "-",
        input=yaml.safe_dump_all(
            [
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
                *by_kind(docs, "Namespace"),  # the example's watched namespace
                *by_kind(docs, "CustomResourceDefinition"),
            ]
        ),
    )
    result = k8s_cluster.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "--field-manager=autobuild-test",
        "-f",
        "-",
        input=yaml.safe_dump_all(docs),
    )
    applied = {line.split(" ")[0] for line in result.stdout.splitlines()}
    assert len(applied) == len(docs), result.stdout


class Release:
    """A `helm install` of the chart into its own namespace; uninstalled afterwards."""

    def __init__(self, helm: Path, k8s_cluster: Any, values: dict[str, Any]) -> None:
        suffix = uuid.uuid4().hex[:6]
        # The release name contains the chart's name, so it is every object's name too.
        self.name = f"autobuild-{suffix}"
        self.namespace = f"autobuild-system-{suffix}"
        self.helm = helm
        self.cluster = k8s_cluster
        self.values = values
        self.notes = ""

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.helm), *args, "--kubeconfig", str(self.cluster.kubeconfig)],
            input=json.dumps(self.values),
            capture_output=True,
            text=True,
            env=helm_env(),
            timeout=300,
            check=check,
        )

    def install(self) -> str:
        """Install and wait for the Deployment to be available; the NOTES helm printed."""
        result = self.run(
            "install",
            self.name,
            str(CHART),
            "--namespace",
            self.namespace,
            "--create-namespace",
            "--values",
            "-",
            "--wait",
            "--timeout",
            "3m",
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout.partition("NOTES:")[2]

    def uninstall(self) -> None:
        self.run("uninstall", self.name, "--namespace", self.namespace, "--wait", check=False)
        self.cluster.kubectl("delete", "namespace", self.namespace, "--wait=false", check=False)

    def kubeconfig(self, path: Path) -> Path:
        """A kubeconfig logged in as the release's ServiceAccount (TokenRequest API)."""
        token = self.cluster.kubectl(
            "create", "token", self.name, "-n", self.namespace, "--duration=1h"
        ).stdout.strip()
        config = yaml.safe_load(Path(self.cluster.kubeconfig).read_text())
        config["users"] = [{"name": config["users"][0]["name"], "user": {"token": token}}]
        path.write_text(yaml.safe_dump(config))
        return path


@pytest.fixture
def repo(git_server: GitServer) -> Repo:
    created = git_server.create_repo("acme", f"install-{uuid.uuid4().hex[:6]}")
    created.commit("main", {"Dockerfile": "FROM scratch\n"}, "Initial commit")
    return created


@pytest.fixture
def crd(k8s_cluster: Any) -> None:
    k8s_cluster.kubectl("apply", "--server-side", "-f", str(CHART / "crds"))
    k8s_cluster.kubectl(
        "wait", "--for=condition=Established", "crd/automatedbuilds.autobuild.dev", "--timeout=60s"
    )


@contextlib.contextmanager
def install(helm: Path, k8s_cluster: Any, values: dict[str, Any]) -> Iterator[Release]:
    release = Release(helm, k8s_cluster, values)
    try:
        notes = release.notes = release.install()
        assert f"rollout status deployment/{release.name}" in notes
        assert "Helm never upgrades or deletes CRDs" in notes
        yield release
    finally:
        release.uninstall()


def build_lifecycle(world: World, repo: Repo) -> None:
    """Creation build: Job, Running, Succeeded, Events."""
    world.create(manifest(world.namespace, repo))
    (job,) = eventually(world.jobs, 60, "the creation build's Job")
    world.run_pod(job.metadata.name)
    eventually(build_phase(world, "Running"), 60, "Running")
    world.finish_pod(job.metadata.name, 0, DIGEST)
    eventually(build_phase(world, "Succeeded"), 60, "Succeeded")
    assert world.status()["latestBuild"]["digest"] == DIGEST
    world.wait_events("BuildStarted", "BuildSucceeded")


@pytest.mark.parametrize("scope", ["all-namespaces", "watch-namespaces"])
def test_the_charts_rbac_runs_a_build(
    helm: Path,
    k8s_cluster: Any,
    k8s_api: Any,
    k8s_namespace: str,
    crd: None,
    repo: Repo,
    tmp_path: Path,
    scope: str,
) -> None:
    values: dict[str, Any] = {"tolerations": [{"operator": "Exists"}]}
    args: list[str] = []
    if scope == "watch-namespaces":
        values["watchNamespaces"] = [k8s_namespace]
        args = ["--namespace", k8s_namespace]
    with install(helm, k8s_cluster, values) as release:
        # kwok's node runs the chart's Deployment (kwok plays the kubelet; no image is pulled).
        pods = World(k8s_api, release.namespace).core.list_namespaced_pod(release.namespace)
        nodes = [p.spec.node_name or "" for p in pods.items]
        assert nodes
        assert all(n.startswith("kwok-node-") for n in nodes), nodes
        deployment = release.cluster.kubectl(
            "get", "deployment", release.name, "-n", release.namespace, "-o", "json"
        ).stdout
        container = json.loads(deployment)["spec"]["template"]["spec"]["containers"][0]
        if args:
            assert container["args"][-2:] == args
        else:
            assert "--namespace" not in container["args"]
        # Watching a list of namespaces, the operator can read no Secret outside it.
        account = f"system:serviceaccount:{release.namespace}:{release.name}"
        can_i = release.cluster.kubectl(
            "auth", "can-i", "list", "secrets", "-n", "kube-system", "--as", account, check=False
        )
        assert can_i.stdout.strip() == ("no" if args else "yes")
        operator = Operator(release.kubeconfig(tmp_path / "sa"), tmp_path / "op.log", args=args)
        operator.start()
        try:
            build_lifecycle(World(k8s_api, k8s_namespace), repo)
        finally:
            operator.stop()
        # RBAC denials read 'User "system:serviceaccount:..." cannot VERB resource ...'.
        assert "cannot " not in operator.log.read_text()


@pytest.mark.parametrize(
    ("resource", "verb"),
    [("automatedbuilds", "list"), ("jobs", "watch")],
)
def test_a_missing_permission_shows(
    helm: Path, k8s_cluster: Any, crd: None, tmp_path: Path, resource: str, verb: str
) -> None:
    """One verb taken from the chart's ClusterRole: the operator's log names the API server's
    refusal, and it never becomes ready (a list it cannot make or a watch it cannot keep
    would leave it blind)."""
    with install(helm, k8s_cluster, {}) as release:
        role = json.loads(
            k8s_cluster.kubectl("get", "clusterrole", release.name, "-o", "json").stdout
        )
        (rule,) = [r for r in role["rules"] if r["resources"] == [resource]]
        rule["verbs"].remove(verb)
        k8s_cluster.kubectl("replace", "-f", "-", input=json.dumps(role))
        operator = Operator(release.kubeconfig(tmp_path / "sa"), tmp_path / "op.log")
        refusal = (
            f'User \\"system:serviceaccount:{release.namespace}:{release.name}\\" '
            f'cannot {verb} resource \\"{resource}\\"'
        )
        try:
            with pytest.raises(AssertionError, match="operator readiness"):
                operator.start()
            eventually(lambda: refusal in operator.log.read_text(), 30, "the refusal logged")
        finally:
            operator.stop()


def _build_job(
    k8s_cluster: Any,
    namespace: str,
    repo: Repo,
    release: Release,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The Job the operator renders for a push to main, with the chart's build settings (or
    the operator settings ``env``), for an AutomatedBuild that exists (its uid is the Job's
    controller owner)."""
    from autobuild.cli.render import load_automated_builds
    from autobuild.planning.job import render_job
    from autobuild.planning.planner import PushEvent, plan_builds

    body = manifest(
        namespace,
        repo,
        name=f"policy-{uuid.uuid4().hex[:6]}",
        source={"repo": repo.clone_url, "credentialsSecret": "git-link"},
    )
    body["spec"]["image"]["pushSecret"] = "registry-push"
    created = k8s_cluster.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(body))
    (automated_build,) = load_automated_builds(created.stdout, "cluster")
    if env is None:
        deployment = release.cluster.kubectl(
            "get", "deployment", release.name, "-n", release.namespace, "-o", "json"
        ).stdout
        env = container_env(json.loads(deployment))
    plan = plan_builds(
        automated_build.spec, PushEvent.parse("refs/heads/main", "c0ffee" * 6 + "c0ff")
    )
    job = render_job(automated_build, plan.builds[0], BuildSettings.from_env(env), {"token"})
    job["spec"]["suspend"] = True  # kwok would run it otherwise; admission is what is tested
    return job


def _create_as(
    kubeconfig: Path, k8s_cluster: Any, job: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    return k8s_cluster.kubectl(
        "--kubeconfig",
        str(kubeconfig),
        "create",
        "-f",
        "-",
        "-o",
        "name",
        input=json.dumps(job),
        check=False,
    )


def _variant(job: dict[str, Any], name: str, change: Any) -> dict[str, Any]:
    other = json.loads(json.dumps(job))
    other["metadata"]["name"] = f"{job['metadata']['name'][:50]}-{name}"
    change(other["spec"]["template"]["spec"])
    return other


def _privileged(pod: dict[str, Any]) -> None:
    pod["containers"][0]["securityContext"] = {"privileged": True}


def _host_path(pod: dict[str, Any]) -> None:
    pod.setdefault("volumes", []).append({"name": "root", "hostPath": {"path": "/"}})
    pod["containers"][0].setdefault("volumeMounts", []).append(
        {"name": "root", "mountPath": "/host"}
    )


def _token(pod: dict[str, Any]) -> None:
    pod["automountServiceAccountToken"] = True


def _other_image(pod: dict[str, Any]) -> None:
    pod["containers"][0]["image"] = "busybox:1.36"
    pod["containers"][0]["command"] = ["sh", "-c", "cat /var/run/secrets/*"]


def _shell(pod: dict[str, Any]) -> None:
    pod["containers"][0]["command"] = ["/busybox/sh", "-c", "id"]


def _host_network(pod: dict[str, Any]) -> None:
    pod["hostNetwork"] = True


def _init_container(pod: dict[str, Any]) -> None:
    pod["initContainers"] = [dict(pod["containers"][0], name="first")]


REFUSED = {
    "privileged": _privileged,
    "hostpath": _host_path,
    "token": _token,
    "image": _other_image,
    "command": _shell,
    "hostnet": _host_network,
    "init": _init_container,
}


def test_the_admission_policy_admits_the_operators_builds_and_nothing_else(
    helm: Path,
    k8s_cluster: Any,
    k8s_namespace: str,
    crd: None,
    repo: Repo,
    tmp_path: Path,
) -> None:
    """The chart's ValidatingAdmissionPolicy on the real API server, as the operator's
    ServiceAccount (its token): a privileged, hostPath, token-mounting, other-image or
    hostNetwork variant of a rendered build Job is refused; the rendered Job itself is admitted
    and can be patched (release, cancel); the cluster admin is not concerned."""
    with install(helm, k8s_cluster, {"tolerations": [{"operator": "Exists"}]}) as release:
        assert f"ValidatingAdmissionPolicy {release.name}-build-jobs" in release.notes
        operator = release.kubeconfig(tmp_path / "sa")
        job = _build_job(k8s_cluster, k8s_namespace, repo, release)
        # The policy takes effect once the API server has compiled it: wait for a refusal.
        privileged = _variant(job, "privileged", _privileged)

        def refused() -> str | None:
            answer = _create_as(operator, k8s_cluster, privileged)
            if answer.returncode == 0:  # created before the policy was active: try again
                k8s_cluster.kubectl(
                    "delete",
                    "job",
                    privileged["metadata"]["name"],
                    "-n",
                    k8s_namespace,
                    "--wait=false",
                )
                return None
            return answer.stderr

        first = eventually(refused, 60, "the policy refusing a privileged Job")
        assert "ValidatingAdmissionPolicy" in first
        assert f"{release.name}-build-jobs" in first
        policy = json.loads(
            k8s_cluster.kubectl(
                "get", "validatingadmissionpolicy", f"{release.name}-build-jobs", "-o", "json"
            ).stdout
        )
        checked = policy.get("status", {}).get("typeChecking", {})
        assert not checked.get("expressionWarnings"), checked
        for name, change in REFUSED.items():
            answer = _create_as(operator, k8s_cluster, _variant(job, name, change))
            assert answer.returncode != 0, f"{name}: admitted"
            assert "denied request" in answer.stderr, (name, answer.stderr)
        # What the operator renders passes, and so do its writes to it.
        admitted = _create_as(operator, k8s_cluster, job)
        assert admitted.returncode == 0, admitted.stderr
        name = job["metadata"]["name"]
        # The operator's PATCH (it has no `get` on Jobs, which kubectl patch would need).
        from kubernetes import client, config

        with config.new_client_from_config(config_file=str(operator)) as api:
            for suspend in (False, True):
                client.BatchV1Api(api).patch_namespaced_job(
                    name, k8s_namespace, {"spec": {"suspend": suspend}}
                )
        # Only the operator's ServiceAccount is concerned: the admin still creates anything.
        k8s_cluster.kubectl("create", "-f", "-", input=json.dumps(privileged))
        # A Job from before the policy (or before builds.executorImage changed) can still be
        # cancelled: an update that keeps the pod template is not checked.
        with config.new_client_from_config(config_file=str(operator)) as api:
            client.BatchV1Api(api).patch_namespaced_job(
                privileged["metadata"]["name"], k8s_namespace, {"spec": {"suspend": True}}
            )
            # A change of its pod template (a suspended Job's node selector may change) is
            # checked, and this one is privileged.
            with pytest.raises(client.ApiException) as refused_update:
                client.BatchV1Api(api).patch_namespaced_job(
                    privileged["metadata"]["name"],
                    k8s_namespace,
                    {"spec": {"template": {"spec": {"nodeSelector": {"zone": "b"}}}}},
                )
            assert refused_update.value.status == 403
            assert "ValidatingAdmissionPolicy" in str(refused_update.value.body)
        # The real node's builds (tests/controlplane/realnode.py's operator settings: its own
        # executor image, the host network, a toleration): refused by the default policy,
        # admitted with the executor image and admissionPolicy.allowHostNetwork set.
        from tests.controlplane import realnode

        executor = "127.0.0.1:5000/autobuild/kaniko-executor:v1.25.5"
        images = realnode.NodeImages(executor, "127.0.0.1:5000/busybox", "127.0.0.1:5000/pause")
        real_env = realnode.operator_settings(images, ["127.0.0.1:5000"])
        real_node_job = _build_job(k8s_cluster, k8s_namespace, repo, release, real_env)
        assert real_node_job["spec"]["template"]["spec"]["hostNetwork"] is True
        refused_there = _create_as(operator, k8s_cluster, real_node_job)
        assert refused_there.returncode != 0
        assert "denied request" in refused_there.stderr
        release.values = {
            **release.values,
            "builds": {"executorImage": executor},
            "admissionPolicy": {"allowHostNetwork": True},
        }
        upgraded = release.run(
            "upgrade",
            release.name,
            str(CHART),
            "--namespace",
            release.namespace,
            "--values",
            "-",
            "--wait",
            check=False,
        )
        assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
        answer = eventually(
            lambda: (a := _create_as(operator, k8s_cluster, real_node_job)).returncode == 0 and a,
            60,
            "the real node's build admitted with admissionPolicy.allowHostNetwork",
        )
        assert answer
        for name, change in REFUSED.items():
            if name != "hostnet":
                refused_now = _create_as(
                    operator, k8s_cluster, _variant(real_node_job, name, change)
                )
                assert refused_now.returncode != 0, f"{name}: admitted"
