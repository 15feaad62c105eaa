"""``autobuild trigger``, ``cancel`` and ``logs`` without a cluster: what they refuse before
they reach one (on the real control plane: tests/k8s/test_kubectl_plugin.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--ref=-x"], "--ref: '-x' is not a safe git ref name"),
        (["--ref", "refs/pull/1/head"], "only refs/heads/* and refs/tags/* build"),
        (["--ref", "main", "--commit", "abc"], "--commit: 'abc' is not a full commit id"),
        (["--commit", "ab" * 20], "--commit needs --ref"),
    ],
)
def test_trigger_refuses_bad_ref_or_commit_before_touching_a_cluster(
    args: list[str], words: str
) -> None:
    command = [sys.executable, "-m", "autobuild.cli", "trigger", "app", "-n", "ci", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert words in result.stderr
