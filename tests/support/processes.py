"""Waiting for processes the code under test started to be gone."""

from __future__ import annotations

import os
import time


def group_gone(pgid: int, within: float = 3.0) -> bool:
    """True once no process of the group is left (killed children are reaped by init)."""
    deadline = time.monotonic() + within
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
