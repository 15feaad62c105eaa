"""Small builders of valid API objects for the unit tests."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from autobuild.api.models import AutomatedBuild, BuildPhase, BuildRecord, SourceType, Trigger
from autobuild.planning import registry_gate
from autobuild.planning.job import render_job
from autobuild.planning.planner import PushEvent, plan_builds
from autobuild.planning.registry_gate import RegistryResult
from autobuild.planning.snapshot import Snapshot
from autobuild.planning.steps import World
from autobuild.settings import BuildSettings, GitHubSettings

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_COMMIT = "89abcdef0123456789abcdef0123456789abcdef"
# When registry_answers answered: the clock of test_decide.py and test_hooks.py.
ANSWERED_AT = datetime(2026, 11, 29, 8, 0, 0, tzinfo=UTC)

_BASE: dict[str, Any] = {
    "apiVersion": "autobuild.dev/v1alpha1",
    "kind": "AutomatedBuild",
    "metadata": {
        "name": "cavityflow",
        "namespace": "ci",
        "uid": "6f1c2d4e-aaaa-bbbb-cccc-1234567890ab",
    },
    "spec": {
        "source": {"repo": "github.com/acme/dockertext-cavityflow"},
        "image": {
            "namespace": "acme",
            "name": "dockertext-cavityflow",
            "visibility": "Public",
            "shortDescription": "Cavity flow solver",
        },
    },
}


def document(**spec_changes: Any) -> dict[str, Any]:
    """A valid AutomatedBuild document with top-level spec fields replaced."""
    doc = copy.deepcopy(_BASE)
    doc["spec"].update(spec_changes)
    return doc


def automated_build(**spec_changes: Any) -> AutomatedBuild:
    """A validated AutomatedBuild with top-level spec fields replaced."""
    return AutomatedBuild.model_validate(document(**spec_changes))


def registry_answers(b: dict[str, Any], version: str = "") -> dict[str, RegistryResult]:
    """A registry that lets the push Secret push and has no visibility notion."""
    ab = AutomatedBuild.model_validate(b)
    preflight = registry_gate.push_preflight(ab, version, {}, ANSWERED_AT).request
    settings = registry_gate.repository_settings(
        registry_gate.image_fingerprint(ab, version), None, {}, ANSWERED_AT
    ).request
    assert preflight is not None
    assert settings is not None
    unsupported = {"name": "acme/x", "kind": "Registry", "reason": "VisibilityUnsupported"}
    return {
        preflight.id: RegistryResult(ANSWERED_AT, True),
        settings.id: RegistryResult(ANSWERED_AT, True, status=unsupported),
    }


def step_world(snapshot: Snapshot, github: GitHubSettings | None = None) -> World:
    """What a step of the decision reads, for a snapshot (the unit tests of one step)."""
    return World.of(snapshot, BuildSettings(), github or GitHubSettings())


def queued_job(n: int, *, suspend: bool = True, **status: Any) -> dict[str, Any]:
    """A Job of rule 0 (main) as the API returns it, created at minute ``n``."""
    ab = automated_build()
    commit = f"{n + 1:040x}"  # the all-zero commit means "deleted"
    build = plan_builds(ab.spec, PushEvent.parse("main", commit)).builds[0]
    job = render_job(ab, build, BuildSettings())
    job["metadata"].update(
        name=f"job-{n}",
        uid=f"uid-{n}",
        resourceVersion=str(n + 1),
        creationTimestamp=f"2026-11-29T07:{n:02d}:00Z",
    )
    job["spec"]["suspend"] = suspend
    job["status"] = status
    return job


def build_record(phase: BuildPhase, **fields: Any) -> BuildRecord:
    """Build b1 of main at COMMIT, Job job-1, pushed, in ``phase`` (other fields replaced)."""
    record = {
        "id": "b1",
        "rule": 0,
        "source_type": SourceType.BRANCH,
        "source_ref": "main",
        "commit": COMMIT,
        "trigger": Trigger.PUSH,
        "job_name": "job-1",
        "phase": phase,
    }
    return BuildRecord.model_validate(record | fields)
