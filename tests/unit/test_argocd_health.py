"""manifests/argocd-health.lua, run by a real Lua 5.1 (Argo CD runs health checks with
gopher-lua, a Lua 5.1) on statuses the operator's own ``conditions()`` writes, next to the
kstatus reading of the same status (docs/design.md, "Status and vocabulary"; Flux uses kstatus)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lupa.lua51 as lua51
import pytest

from autobuild.api.conditions import Reason
from autobuild.api.models import BuildPhase, BuildRecord, SourceType, Trigger
from autobuild.planning.status import Problem, conditions

SCRIPT = (Path(__file__).resolve().parents[2] / "manifests" / "argocd-health.lua").read_text()
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def argocd_health(obj: dict[str, Any]) -> tuple[str, str]:
    """(status, message) as Argo CD computes them: the script with the object as ``obj``."""
    lua = lua51.LuaRuntime()
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(SCRIPT)
    return str(result["status"]), str(result["message"])


def kstatus(obj: dict[str, Any]) -> str:
    """kstatus's reading, in its order (docs/design.md)."""
    if obj["metadata"].get("deletionTimestamp"):
        return "Terminating"
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"]["generation"]:
        return "InProgress"
    by_type = {c["type"]: c for c in status.get("conditions") or []}
    if by_type.get("Reconciling", {}).get("status") == "True":
        return "InProgress"
    if by_type.get("Stalled", {}).get("status") == "True":
        return "Failed"
    if by_type.get("Ready", {}).get("status") == "True":
        return "Current"
    return "InProgress"


def record(phase: BuildPhase, build_id: str = "b1") -> BuildRecord:
    return BuildRecord(
        id=build_id,
        rule=0,
        source_type=SourceType.BRANCH,
        source_ref="main",
        commit="a" * 40,
        trigger=Trigger.PUSH,
        tags=["latest"],
        phase=phase,
        reason="BuildStepFailed" if phase is BuildPhase.FAILED else None,
    )


def automated_build(
    problem: Problem | None = None,
    builds: tuple[BuildRecord, ...] = (),
    generation: int = 1,
    observed: int = 1,
) -> dict[str, Any]:
    written = conditions(observed, problem, builds, (), NOW)
    return {
        "apiVersion": "autobuild.dev/v1alpha1",
        "kind": "AutomatedBuild",
        "metadata": {"name": "app", "namespace": "ci", "generation": generation},
        "status": {
            "observedGeneration": observed,
            "conditions": [c.model_dump(mode="json", by_alias=True) for c in written],
        },
    }


KSTATUS_TO_ARGO = {"Current": "Healthy", "InProgress": "Progressing", "Failed": "Degraded"}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (automated_build(), "Healthy"),
        (automated_build(builds=(record(BuildPhase.SUCCEEDED),)), "Healthy"),
        (automated_build(builds=(record(BuildPhase.RUNNING),)), "Progressing"),
        (automated_build(builds=(record(BuildPhase.PENDING),)), "Progressing"),
        (
            automated_build(Problem(Reason.SOURCE_UNREACHABLE, "git ls-remote: no route")),
            "Progressing",
        ),
        (automated_build(Problem(Reason.SECRET_NOT_FOUND, "Secret link not found")), "Degraded"),
        (automated_build(Problem(Reason.INVALID_SPEC, "bad regex")), "Degraded"),
        (automated_build(generation=2, observed=1), "Progressing"),
    ],
    ids=[
        "idle",
        "succeeded",
        "running",
        "queued",
        "unreachable",
        "missing-secret",
        "invalid",
        "new-generation",
    ],
)
def test_health_follows_kstatus(obj: dict[str, Any], expected: str) -> None:
    status, message = argocd_health(obj)
    assert status == expected
    assert KSTATUS_TO_ARGO[kstatus(obj)] == expected
    assert message  # Argo CD shows it next to the health


def test_a_failed_build_is_degraded_in_argo_cd_but_in_progress_for_kstatus() -> None:
    """Deliberate: Argo CD shows the failure at once; kstatus (Flux) keeps Ready=False as
    InProgress, since the next push may fix it and the spec is not at fault."""
    obj = automated_build(builds=(record(BuildPhase.FAILED),))
    status, message = argocd_health(obj)
    assert (status, kstatus(obj)) == ("Degraded", "InProgress")
    assert message.startswith("BuildFailed: build b1 Failed")


def test_no_status_yet_is_progressing() -> None:
    obj = {"metadata": {"name": "app", "generation": 1}}
    assert argocd_health(obj) == ("Progressing", "waiting for the operator")
    assert kstatus(obj) == "InProgress"


def test_a_condition_without_message_does_not_break_the_script() -> None:
    obj = {
        "metadata": {"name": "app", "generation": 1},
        "status": {
            "observedGeneration": 1,
            "conditions": [{"type": "Stalled", "status": "True", "reason": "InvalidSpec"}],
        },
    }
    assert argocd_health(obj) == ("Degraded", "InvalidSpec")
