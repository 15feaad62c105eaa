"""The Helm chart (charts/autobuild), linted and rendered by the real helm (helmbin.py).

What a render must hold is checked on the parsed objects; the operator's own settings parser
reads the rendered environment, so a value the chart renders is a value the operator accepts.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from autobuild import __version__
from autobuild.api.crd import render_crd
from autobuild.settings import BuildSettings, GitHubSettings
from tests.support.helmbin import HELM_VERSION, ensure_helm
from tests.support.packaging import (
    CHART,
    NAMESPACE,
    RELEASE,
    by_kind,
    container_env,
    documents,
    helm_env,
    helm_template,
    identities,
    one,
    package_version,
)


@pytest.fixture(scope="module")
def helm() -> Path:
    return ensure_helm()


@pytest.fixture(scope="module")
def default_render(helm: Path) -> list[dict[str, Any]]:
    return documents(helm_template(helm).stdout)


# Every knob turned away from its default.
CUSTOM: dict[str, Any] = {
    "image": {
        "repository": "registry.example.com/autobuild/operator",
        "digest": "sha256:" + "a" * 64,
    },
    "watchNamespaces": ["team-a", "team-b"],
    "logFormat": "plain",
    "builds": {
        "executorImage": "registry.example.com/kaniko:v1.28.3",
        "cpuLimit": "4",
        "ephemeralStorageLimit": "20Gi",
        "nodeSelector": {"autobuild.dev/builder": "true", "kubernetes.io/arch": "amd64"},
        "insecureRegistries": ["registry.internal:5000", "10.0.0.5:5000"],
        "insecureGitHosts": ["git.internal"],
        "internalRealmHosts": ["auth.registry.svc.cluster.local"],
    },
    "github": {"url": "https://github.example.com/api/v3"},
    "dockerHub": {"url": "https://hub.example.com"},
    "webhook": {
        "publicUrl": "https://autobuild.example.com",
        "buildUrlTemplate": "https://dash.example.com/{namespace}/{name}/builds/{build}",
        "unhookTimeout": 60,
    },
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "tls": [{"secretName": "autobuild-tls", "hosts": ["autobuild.example.com"]}],
    },
    "serviceMonitor": {
        "enabled": True,
        "interval": "30s",
        "scrapeTimeout": "10s",
        "labels": {"release": "kube-prometheus-stack"},
    },
    "serviceAccount": {"annotations": {"example.com/role": "builder"}},
    "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
}


# The chart's default leaderElection values as `autobuild run` flags.
LEADER_ELECTION_ARGS = [
    "--leader-elect",
    "--leader-election-lease-duration",
    "15s",
    "--leader-election-renew-deadline",
    "10s",
    "--leader-election-retry-period",
    "2s",
]


def test_helm_is_the_pinned_build(helm: Path) -> None:
    out = subprocess.run(
        [str(helm), "version", "--short"],
        capture_output=True,
        text=True,
        check=True,
        env=helm_env(),
    ).stdout
    assert out.startswith(HELM_VERSION)


@pytest.mark.parametrize("values", [None, CUSTOM], ids=["defaults", "custom"])
def test_helm_lint_strict_passes(helm: Path, values: dict[str, Any] | None, tmp_path: Path) -> None:
    command = [str(helm), "lint", "--strict", str(CHART)]
    if values is not None:
        values_file = tmp_path / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        command += ["--values", str(values_file)]
    result = subprocess.run(command, capture_output=True, text=True, env=helm_env(), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_the_charts_crd_is_the_generated_one() -> None:
    """Helm installs CRDs only from the chart's crds/: `make crds` (or `make chart-crds`)."""
    chart_crd = CHART / "crds" / "automatedbuild.yaml"
    assert chart_crd.read_text() == render_crd(), (
        "charts/autobuild/crds/ is stale: run `make crds` and commit it"
    )


def test_chart_and_package_versions_agree() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == package_version() == __version__


def test_default_render_is_the_whole_installation(default_render: list[dict[str, Any]]) -> None:
    assert identities(default_render) == {
        ("CustomResourceDefinition", "", "automatedbuilds.autobuild.dev"),
        ("ServiceAccount", NAMESPACE, RELEASE),
        ("ClusterRole", "", RELEASE),
        ("ClusterRoleBinding", "", RELEASE),
        ("Role", NAMESPACE, f"{RELEASE}-leader-election"),
        ("RoleBinding", NAMESPACE, f"{RELEASE}-leader-election"),
        ("Service", NAMESPACE, RELEASE),
        ("Deployment", NAMESPACE, RELEASE),
        ("ValidatingAdmissionPolicy", "", f"{RELEASE}-build-jobs"),
        ("ValidatingAdmissionPolicyBinding", "", f"{RELEASE}-build-jobs"),
    }
    for doc in default_render:
        if doc["kind"] == "CustomResourceDefinition":
            continue
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == f"autobuild-{package_version()}"
        assert labels["app.kubernetes.io/instance"] == RELEASE


def test_default_deployment_runs_safely(default_render: list[dict[str, Any]]) -> None:
    deployment = one(default_render, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == RELEASE
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    (container,) = pod["containers"]
    assert container["image"] == f"autobuild/operator:{package_version()}"
    assert container["args"] == [
        "run",
        "--probes",
        "0.0.0.0:8081",
        "--webhook-address",
        "0.0.0.0:8080",
        "--log-format",
        "json",
        *LEADER_ELECTION_ARGS,
    ]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == "/tmp"
    assert not mount.get("readOnly")
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mount["name"]]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"webhook": 8080, "probes": 8081}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "probes"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "probes"}
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]
    service = one(default_render, "Service")
    assert service["spec"]["ports"] == [
        {"name": "webhook", "port": 8080, "targetPort": "webhook", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]


def test_default_settings_are_the_operators_defaults(default_render: list[dict[str, Any]]) -> None:
    """The chart restates the operator's defaults; they must not drift apart."""
    env = container_env(one(default_render, "Deployment"))
    assert BuildSettings.from_env(env) == BuildSettings()
    assert GitHubSettings.from_env(env) == GitHubSettings()
    assert env["AUTOBUILD_EXECUTOR_IMAGE"] == BuildSettings().executor_image


def grants(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) of every rule of a Role or ClusterRole."""
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_default_rbac_is_one_cluster_role_for_all_namespaces(
    default_render: list[dict[str, Any]],
) -> None:
    role = one(default_render, "ClusterRole")
    granted = grants(role)
    # Nothing broad: no wildcards, no Secret writes; AutomatedBuilds: status and finalizers.
    assert not any("*" in part for part in (x for triple in granted for x in triple))
    assert ("autobuild.dev", "automatedbuilds", "update") not in granted
    assert ("autobuild.dev", "automatedbuilds/status", "patch") in granted
    assert not {("", "secrets", verb) for verb in ("create", "update", "patch", "delete")} & granted
    binding = one(default_render, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}
    ]


def test_a_public_url_grants_exactly_what_webhook_registration_needs(
    helm: Path, default_render: list[dict[str, Any]]
) -> None:
    values = {"webhook": {"publicUrl": "https://autobuild.example.com"}}
    role = one(documents(helm_template(helm, values=values).stdout), "ClusterRole")
    added = grants(role) - grants(one(default_render, "ClusterRole"))
    # The Secret of a generated webhook secret (the finalizer's patch is always granted).
    assert added == {("", "secrets", "create")}


def test_custom_values_reach_the_operator(helm: Path) -> None:
    docs = documents(helm_template(helm, values=CUSTOM).stdout)
    deployment = one(docs, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == (
        f"registry.example.com/autobuild/operator:{package_version()}@sha256:" + "a" * 64
    )
    assert container["args"] == [
        "run",
        "--probes",
        "0.0.0.0:8081",
        "--webhook-address",
        "0.0.0.0:8080",
        "--log-format",
        "plain",
        *LEADER_ELECTION_ARGS,
        "--namespace",
        "team-a",
        "--namespace",
        "team-b",
    ]
    env = container_env(deployment)
    settings = BuildSettings.from_env(env)
    assert settings.executor_image == "registry.example.com/kaniko:v1.28.3"
    assert settings.cpu_limit == "4"
    assert settings.ephemeral_storage_limit == "20Gi"
    assert settings.node_selector == (
        ("autobuild.dev/builder", "true"),
        ("kubernetes.io/arch", "amd64"),
    )
    assert settings.insecure_registries == ("registry.internal:5000", "10.0.0.5:5000")
    assert settings.insecure_git_hosts == ("git.internal",)
    assert settings.internal_realm_hosts == ("auth.registry.svc.cluster.local",)
    assert settings.dockerhub_url == "https://hub.example.com"
    assert GitHubSettings.from_env(env) == GitHubSettings(
        github_url="https://github.example.com/api/v3",
        public_url="https://autobuild.example.com",
        build_url_template="https://dash.example.com/{namespace}/{name}/builds/{build}",
        unhook_timeout=60,
    )
    assert deployment["spec"]["template"]["spec"]["tolerations"] == CUSTOM["tolerations"]
    ingress = one(docs, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/hooks"
    assert path["backend"]["service"] == {"name": RELEASE, "port": {"number": 8080}}
    assert ingress["spec"]["tls"] == CUSTOM["ingress"]["tls"]
    account = one(docs, "ServiceAccount")
    assert account["metadata"]["annotations"] == {"example.com/role": "builder"}


def test_the_service_monitor_scrapes_metrics_on_the_webhook_port(helm: Path) -> None:
    docs = documents(helm_template(helm, values=CUSTOM).stdout)
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == NAMESPACE
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    service = one(docs, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {
        "port": "webhook",
        "path": "/metrics",
        "interval": "30s",
        "scrapeTimeout": "10s",
    }
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    # The Ingress routes git hosts to /hooks only: the metrics stay inside the cluster.
    ingress_paths = [
        path["path"]
        for rule in one(docs, "Ingress")["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]
    assert ingress_paths == ["/hooks"]


def _watching(doc: dict[str, Any]) -> bool:
    """A Role or RoleBinding of a watched namespace (not the leader election's)."""
    return not doc["metadata"]["name"].endswith("-leader-election")


def test_leader_election_is_on_with_a_role_for_its_lease_only(
    default_render: list[dict[str, Any]],
) -> None:
    """The Lease's Role: get, create, update on leases, in the release namespace only; the
    Pod's name and namespace from the downward API; the flags the operator accepts."""
    from autobuild.cli import build_parser
    from autobuild.cli.run import _election

    role = one(default_render, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert grants(role) == {
        ("coordination.k8s.io", "leases", verb) for verb in ("get", "create", "update")
    }
    binding = one(default_render, "RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}
    ]
    (container,) = one(default_render, "Deployment")["spec"]["template"]["spec"]["containers"]
    fields = {
        e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
        for e in container["env"]
        if "valueFrom" in e
    }
    assert fields == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    args = build_parser().parse_args(container["args"])
    election = _election(args)
    assert election is not None
    assert (election.lease_duration, election.renew_deadline, election.retry_period) == (
        15.0,
        10.0,
        2.0,
    )


def test_leader_election_values_map_to_the_flags(helm: Path) -> None:
    values = {
        "leaderElection": {
            "leaseDuration": "30s",
            "renewDeadline": "20s",
            "retryPeriod": "500ms",
            "namespace": "ops",
        }
    }
    docs = documents(helm_template(helm, values=values).stdout)
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["args"][7:] == [
        "--leader-elect",
        "--leader-election-namespace",
        "ops",
        "--leader-election-lease-duration",
        "30s",
        "--leader-election-renew-deadline",
        "20s",
        "--leader-election-retry-period",
        "500ms",
    ]
    assert one(docs, "Role")["metadata"]["namespace"] == "ops"
    assert one(docs, "RoleBinding")["metadata"]["namespace"] == "ops"
    off = documents(helm_template(helm, values={"leaderElection": {"enabled": False}}).stdout)
    (container,) = one(off, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert not [arg for arg in container["args"] if arg.startswith("--leader")]
    assert not by_kind(off, "Role")
    assert not by_kind(off, "RoleBinding")


def test_watch_namespaces_get_a_role_each_and_no_cluster_wide_access(helm: Path) -> None:
    docs = documents(helm_template(helm, values=CUSTOM).stdout)
    assert not by_kind(docs, "ClusterRole")
    assert not by_kind(docs, "ClusterRoleBinding")
    roles = {r["metadata"]["namespace"]: r for r in by_kind(docs, "Role") if _watching(r)}
    bindings = {b["metadata"]["namespace"]: b for b in by_kind(docs, "RoleBinding") if _watching(b)}
    assert roles.keys() == bindings.keys() == {"team-a", "team-b"}
    # CUSTOM has a public URL: the namespaced rules with webhook registration's.
    public = {"webhook": {"publicUrl": CUSTOM["webhook"]["publicUrl"]}}
    all_namespaces = one(documents(helm_template(helm, values=public).stdout), "ClusterRole")
    assert roles["team-a"]["rules"] == all_namespaces["rules"]
    for binding in bindings.values():
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}
        ]


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicas": 2}, "replicas"),
        ({"builds": {"executorimage": "x"}}, "executorimage"),
        ({"webhook": {"port": "eighty"}}, "port"),
        ({"image": {"tag": "latest"}}, "tag"),
        ({"github": {"url": "api.github.com"}}, "url"),
        ({"watchNamespaces": ["Team_A"]}, "watchNamespaces"),
        ({"logFormat": "xml"}, "logFormat"),
        ({"leaderElection": {"leaseDuration": "15"}}, "leaseDuration"),
        ({"leaderElection": {"renewdeadline": "10s"}}, "renewdeadline"),
        ({"builds": {"nodeSelector": {"a": "b,c=d"}}}, "nodeSelector"),
        ({"serviceMonitor": {"interval": "30"}}, "interval"),
        ({"serviceMonitor": {"enable": True}}, "enable"),
        ({"admissionPolicy": {"hostNetwork": True}}, "hostNetwork"),
        ({"admissionPolicy": {"buildServiceAccounts": ["Builder"]}}, "buildServiceAccounts"),
    ],
)
def test_the_schema_rejects_bad_values(helm: Path, values: dict[str, Any], complaint: str) -> None:
    result = helm_template(helm, values=values, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert complaint in result.stderr


def test_the_values_example_of_the_install_guide_renders(helm: Path) -> None:
    guide = (CHART.parents[1] / "docs" / "install.md").read_text()
    (example,) = re.findall(r"```yaml\n(# my-values\.yaml.*?)```", guide, re.S)
    docs = documents(helm_template(helm, values=yaml.safe_load(example)).stdout)
    env = container_env(one(docs, "Deployment"))
    assert GitHubSettings.from_env(env).public_url == "https://autobuild.example.com"
    assert one(docs, "Ingress")["spec"]["rules"][0]["host"] == "autobuild.example.com"


def _policy_text(docs: list[dict[str, Any]]) -> str:
    """Every CEL expression and message of the admission policy, one per line."""
    spec = one(docs, "ValidatingAdmissionPolicy")["spec"]
    parts = [c["expression"] for c in spec["matchConditions"] + spec["variables"]]
    parts += [v["expression"] + "\n" + v["message"] for v in spec["validations"]]
    return "\n".join(parts)


def test_the_admission_policy_binds_the_operators_jobs_to_the_build_settings(
    helm: Path, default_render: list[dict[str, Any]]
) -> None:
    """What the policy enforces follows the values: the operator's ServiceAccount, the executor
    image, the host network (the real node's builds use it) and the build ServiceAccounts."""
    policy = one(default_render, "ValidatingAdmissionPolicy")
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    (rule,) = spec["matchConstraints"]["resourceRules"]
    assert (rule["apiGroups"], rule["resources"]) == (["batch"], ["jobs"])
    assert set(rule["operations"]) == {"CREATE", "UPDATE"}
    who, what = spec["matchConditions"]
    account = f"system:serviceaccount:{NAMESPACE}:{RELEASE}"
    assert who["expression"] == f'request.userInfo.username == "{account}"'
    assert "oldObject.spec.template" in what["expression"]
    binding = one(default_render, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"] == {
        "policyName": policy["metadata"]["name"],
        "validationActions": ["Deny"],
    }
    text = _policy_text(default_render)
    assert f'c.image == "{BuildSettings().executor_image}"' in text
    assert "hostNetwork.orValue(false)" in text
    assert "serviceAccountName.orValue('default') in [\"default\"]" in text
    for word in ("privileged", "hostPath", "automountServiceAccountToken", "hostPID"):
        assert word in text, word

    custom = documents(
        helm_template(
            helm,
            values={
                "builds": {"executorImage": "registry.example.com/kaniko:v1@sha256:" + "b" * 64},
                "admissionPolicy": {"allowHostNetwork": True, "buildServiceAccounts": ["builder"]},
            },
        ).stdout
    )
    text = _policy_text(custom)
    assert f'c.image == "registry.example.com/kaniko:v1@sha256:{"b" * 64}"' in text
    assert "hostNetwork.orValue" not in text
    assert 'in ["default","builder"]' in text


@pytest.mark.parametrize(
    "args",
    [("--set", "admissionPolicy.enabled=false"), ("--kube-version", "1.29.0")],
    ids=["disabled", "before-1.30"],
)
def test_no_admission_policy_when_disabled_or_not_served(helm: Path, args: tuple[str, str]) -> None:
    docs = documents(helm_template(helm, *args).stdout)
    assert not by_kind(docs, "ValidatingAdmissionPolicy")
    assert not by_kind(docs, "ValidatingAdmissionPolicyBinding")
    assert by_kind(docs, "Deployment")


def test_host_network_and_a_loopback_bind_address(helm: Path) -> None:
    """For a node whose pods reach the API server only through the host's network (the test
    suite's real node): hostNetwork, the listeners and the kubelet's probes on 127.0.0.1."""
    values = {
        "hostNetwork": True,
        "bindAddress": "127.0.0.1",
        "probes": {"port": 18081, "host": "127.0.0.1"},
        "webhook": {"port": 18080},
    }
    pod = one(documents(helm_template(helm, values=values).stdout), "Deployment")["spec"][
        "template"
    ]["spec"]
    assert pod["hostNetwork"] is True
    (container,) = pod["containers"]
    assert container["args"][1:5] == [
        "--probes",
        "127.0.0.1:18081",
        "--webhook-address",
        "127.0.0.1:18080",
    ]
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert container[probe]["httpGet"] == {"host": "127.0.0.1", "path": path, "port": "probes"}
