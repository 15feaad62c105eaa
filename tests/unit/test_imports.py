"""What loading the operator costs: PyGithub (about 14 MiB and 0.4 s) only on a GitHub call."""

from __future__ import annotations

import subprocess
import sys


def test_the_operator_loads_without_pygithub() -> None:
    script = (
        "import sys, autobuild.controller.handlers, autobuild.cli; "
        "print(sorted(m for m in sys.modules if m == 'github' or m.startswith('github.')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"
