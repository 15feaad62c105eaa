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
