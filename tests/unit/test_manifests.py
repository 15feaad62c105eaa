"""The shipped manifests can work: what the operator needs at run time is really there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"


def _deployment() -> dict[str, Any]:
    documents = list(yaml.safe_load_all((MANIFESTS / "base" / "operator.yaml").read_text()))
    (deployment,) = [d for d in documents if d and d.get("kind") == "Deployment"]
    return deployment


def test_the_operator_has_a_writable_tmp_on_a_read_only_root() -> None:
    """git ls-remote needs a scratch directory: $TMPDIR, else /tmp."""
    pod = _deployment()["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    tmp = env.get("TMPDIR", "/tmp")
    mounts = [m for m in container.get("volumeMounts", []) if m["mountPath"] == tmp]
    assert len(mounts) == 1, f"no volume mounted at {tmp}"
    (mount,) = mounts
    assert not mount.get("readOnly", False)
    assert "emptyDir" in volumes[mount["name"]]


def test_the_network_policy_example_selects_the_build_pods_and_the_operator() -> None:
    """The example's selectors match the labels of a rendered build pod and of the operator's
    pod (no CNI here enforces the policies: docs/security.md)."""
    from factories import COMMIT, automated_build

    from autobuild.planning.job import render_job
    from autobuild.planning.planner import PushEvent, plan_builds
    from autobuild.settings import BuildSettings

    policies = {
        p["metadata"]["name"]: p
        for p in yaml.safe_load_all((MANIFESTS / "networkpolicy-example.yaml").read_text())
        if p
    }
    ab = automated_build()
    (build,) = plan_builds(ab.spec, PushEvent.parse("main", COMMIT)).builds
    pod_labels = render_job(ab, build, BuildSettings())["spec"]["template"]["metadata"]["labels"]
    operator_labels = _deployment()["spec"]["template"]["metadata"]["labels"]
    for name, labels in (("autobuild-builds", pod_labels), ("autobuild-operator", operator_labels)):
        policy = policies[name]["spec"]
        assert policy["podSelector"]["matchLabels"].items() <= labels.items(), name
        assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
        # The cloud metadata address is never a destination.
        for rule in policy["egress"]:
            for peer in rule["to"]:
                block = peer.get("ipBlock")
                if block and block["cidr"] == "0.0.0.0/0":
                    assert "169.254.0.0/16" in block["except"]
    assert operator_labels["app.kubernetes.io/component"] == "operator"
    assert policies["autobuild-builds"]["spec"]["ingress"] == []
