"""docs/troubleshooting.md documents every reason the operator writes, and only those."""

from __future__ import annotations

import re
from pathlib import Path

from autobuild.api.conditions import ConditionType, Reason

TROUBLESHOOTING = Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md"


def written_reasons() -> set[str]:
    """Every reason: conditions, builds, triggers, registry, Events, GitHub commands."""
    return {r.value for r in Reason}


def documented_reasons() -> set[str]:
    """The code spans in the first cell of every table row of the troubleshooting page."""
    found: set[str] = set()
    for line in TROUBLESHOOTING.read_text().splitlines():
        if line.startswith("| `"):
            first_cell = line.split(" | ", 1)[0]
            found |= set(re.findall(r"`([A-Za-z]+)`", first_cell))
    return found


def test_every_reason_is_documented() -> None:
    missing = written_reasons() - documented_reasons()
    assert not missing, f"document these reasons in docs/troubleshooting.md: {sorted(missing)}"


def test_no_documented_reason_is_stale() -> None:
    conditions = {c.value for c in ConditionType}
    stale = documented_reasons() - written_reasons() - conditions
    assert not stale, f"docs/troubleshooting.md documents reasons nobody writes: {sorted(stale)}"


def test_the_registry_reasons_are_found() -> None:
    # The scan of the registry module must see its constants, or the first test proves nothing.
    assert {"VisibilityUnsupported", "RepositoryPending", "RateLimited"} <= written_reasons()
    assert "BuildTimedOut" in written_reasons()
    assert "WebhookLimitReached" in written_reasons()
