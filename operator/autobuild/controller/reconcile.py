"""One level-based reconcile per AutomatedBuild: spec + Jobs + Pods -> Jobs and status.

Every entry point (a watch event, a push, a manual trigger, a retry timer) ends here, so there
is a single place that decides what to build and what status to write.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from autobuild.api import checks
from autobuild.api.models import (
    AutomatedBuild,
    AutomatedBuildStatus,
    BuildPhase,
    BuildRecord,
    BuildRule,
    Condition,
    RunPolicy,
    Trigger,
)
from autobuild.controller import kube
from autobuild.planning import status as core
from autobuild.planning.job import clone_url, render_job, token_username
from autobuild.planning.planner import (
    PlannedBuild,
    PushEvent,
    check_commit,
    parse_ref,
    plan_builds,
)
from autobuild.settings import BuildSettings
from autobuild.sources.git import SourceUnreachable, ls_remote

ANNOTATION_TRIGGER: Final = "autobuild.dev/trigger"
ANNOTATION_TRIGGER_REF: Final = "autobuild.dev/trigger-ref"
ANNOTATION_TRIGGER_COMMIT: Final = "autobuild.dev/trigger-commit"
# Which Secret keys the spec's references need.
_SECRET_KEYS: Final = (
    (("source", "credentialsSecret"), "token"),
    (("source", "webhookSecret"), "secret"),
    (("image", "pushSecret"), ".dockerconfigjson"),
)
_CONFLICT_RETRIES: Final = 5
_RETRY_SECONDS: Final = 30.0
# Objects with a problem that may fix itself without an event on the object.
_retry: set[tuple[str, str]] = set()
# The resourceVersion of each object's last status write by this process.
_own_writes: dict[tuple[str, str], str] = {}


def is_own_write(namespace: str, name: str, resource_version: str) -> bool:
    """True for the watch event of our own status write: nothing new to look at."""
    return _own_writes.get((namespace, name)) == resource_version


_locks: defaultdict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)
log = logging.getLogger("autobuild.reconcile")


class Reporter:
    """Where Kubernetes Events go; the kopf handlers post them through kopf."""

    def event(self, body: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        """Post an Event about ``body``."""
        log.info("%s %s: %s", kind, reason, message)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def _check_secrets(namespace: str, spec: Mapping[str, Any]) -> core.Problem | None:
    for (section, field), key in _SECRET_KEYS:
        name = (spec.get(section) or {}).get(field)
        if not name:
            continue
        data = await kube.read_secret(namespace, name)
        where = f"spec.{section}.{field}"
        if data is None:
            return core.Problem("SecretNotFound", f"{where}: Secret {name!r} not found", True)
        if key not in data:
            return core.Problem(
                "SecretKeyMissing", f"{where}: Secret {name!r} has no key {key!r}", True
            )
    return None


async def _token(automated_build: AutomatedBuild) -> str | None:
    secret = automated_build.spec.source.credentials_secret
    if secret is None:
        return None
    data = await kube.read_secret(automated_build.metadata.namespace, secret) or {}
    return base64.b64decode(data.get("token", "")).decode().strip() or None


async def resolve_heads(automated_build: AutomatedBuild) -> dict[str, str]:
    """Every branch and tag head of the source repository, with the linked token if any."""
    spec = automated_build.spec
    return await ls_remote(
        clone_url(spec),
        token=await _token(automated_build),
        username=token_username(spec.provider),
    )


def _rule_ref(rule: BuildRule) -> str | None:
    """The full ref an exact-name rule builds; None for regex rules."""
    if rule.source_regex is not None:
        return None
    prefix = "refs/tags/" if rule.source_type.value == "Tag" else "refs/heads/"
    return prefix + rule.source


def _wanted_refs(automated_build: AutomatedBuild, ref: str | None, creation: bool) -> list[str]:
    """The refs a person asked to build: one, or every exact-name rule's (on creation, only
    rules with autobuild, as Docker Hub's 'Save and build')."""
    if ref:
        source_type, name = parse_ref(ref)
        return [("refs/tags/" if source_type.value == "Tag" else "refs/heads/") + name]
    rules = [r for r in automated_build.spec.tags if r.autobuild or not creation]
    return list(dict.fromkeys(r for r in map(_rule_ref, rules) if r))


def _explicit_builds(
    automated_build: AutomatedBuild,
    refs: list[str],
    heads: Mapping[str, str],
    trigger_id: str,
    creation: bool,
) -> list[PlannedBuild]:
    """Plan manual builds of ``refs`` at ``heads``; refs without a head are skipped."""
    builds: list[PlannedBuild] = []
    for ref in refs:
        head = heads.get(ref)
        if head is None:
            continue
        event = PushEvent.parse(ref, head, "", Trigger.MANUAL, trigger_id)
        planned = plan_builds(automated_build.spec, event).builds
        builds += [b for b in planned if b.rule.autobuild or not creation]
    return builds


async def create_builds(
    automated_build: AutomatedBuild, builds: list[PlannedBuild], settings: BuildSettings
) -> list[str]:
    """Create the Jobs of planned builds (queued, i.e. suspended, unless runPolicy is Parallel)."""
    created = []
    for build in builds:
        job = render_job(automated_build, build, settings)
        job["metadata"]["annotations"][core.ANNOTATION_REQUESTED] = datetime.now(UTC).isoformat()
        if automated_build.spec.run_policy is not RunPolicy.PARALLEL:
            job["spec"]["suspend"] = True
        if await kube.create_job(automated_build.metadata.namespace, job):
            created.append(job["metadata"]["name"])
    return created


async def _triggered_builds(
    automated_build: AutomatedBuild, body: Mapping[str, Any], settings: BuildSettings
) -> tuple[str | None, core.Problem | None, bool]:
    """Handle creation ('save and build') and the trigger annotation; return the new
    lastTrigger, a problem if any, and whether the git host was asked."""
    annotations = body["metadata"].get("annotations") or {}
    wanted = annotations.get(ANNOTATION_TRIGGER, "")
    handled = (body.get("status") or {}).get("lastTrigger")
    if handled is not None and wanted in ("", handled):
        return handled, None, False
    creation = handled is None
    ref = None if creation else annotations.get(ANNOTATION_TRIGGER_REF) or None
    commit = None if creation else annotations.get(ANNOTATION_TRIGGER_COMMIT) or None
    asked = False
    try:
        refs = _wanted_refs(automated_build, ref, creation)
        if commit:
            heads = {r: check_commit(commit) for r in refs}
        elif refs:  # only ask the git host when there is something to build
            asked = True
            heads = await resolve_heads(automated_build)
        else:
            heads = {}
    except checks.InputError as exc:
        # Not marked handled: the condition stays until the annotations are corrected.
        return handled, core.Problem("InvalidTrigger", str(exc), False), asked
    except SourceUnreachable as exc:
        return handled, _unreachable(exc), asked
    trigger_id = "create" if creation else wanted
    await create_builds(
        automated_build,
        _explicit_builds(automated_build, refs, heads, trigger_id, creation),
        settings,
    )
    return wanted, None, asked


def _unreachable(exc: SourceUnreachable) -> core.Problem:
    return core.Problem("SourceUnreachable", str(exc), False)


async def _check_source(
    automated_build: AutomatedBuild, previous: AutomatedBuildStatus
) -> core.Problem | None:
    """Verify the repository answers, after a spec change or while it did not: the one
    check the CRD cannot make."""
    generation = automated_build.metadata.generation
    ready = next((c for c in previous.conditions if c.type == "Ready"), None)
    was_unreachable = ready is not None and ready.reason == "SourceUnreachable"
    if previous.observed_generation == generation and not was_unreachable:
        return None
    try:
        await resolve_heads(automated_build)
    except SourceUnreachable as exc:
        return _unreachable(exc)
    return None


async def _apply_actions(
    namespace: str, uid: str, automated_build: AutomatedBuild
) -> tuple[core.BuildActions, bool]:
    jobs = await kube.list_jobs(namespace, uid)
    pods = await kube.list_pods(namespace, uid)
    by_job: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for pod in pods:
        by_job[(pod["metadata"].get("labels") or {}).get("job-name", "")].append(pod)
    actions = core.plan_actions(automated_build.spec, jobs, by_job)
    for name in actions.release:
        await kube.patch_job(namespace, name, {"spec": {"suspend": False}})
    for name in actions.cancel:
        await kube.patch_job(namespace, name, core.cancel_patch(_now()))
    for name in actions.delete:
        await kube.delete_job(namespace, name)
    return actions, bool(actions.release or actions.cancel or actions.delete)


def _previous_status(body: Mapping[str, Any]) -> AutomatedBuildStatus:
    try:
        return AutomatedBuildStatus.model_validate(body.get("status") or {})
    except ValidationError:
        return AutomatedBuildStatus()


def _report_transitions(
    reporter: Reporter,
    body: Mapping[str, Any],
    before: list[BuildRecord],
    after: tuple[BuildRecord, ...],
) -> None:
    old = {b.id: b.phase for b in before}
    for build in after:
        if old.get(build.id) == build.phase:
            continue
        what = (
            f"build {build.id} of {build.source_ref}@{build.commit[:7]} -> {','.join(build.tags)}"
        )
        if build.phase is BuildPhase.RUNNING:
            reporter.event(body, "Normal", "BuildStarted", what)
        elif build.phase is BuildPhase.SUCCEEDED:
            reporter.event(body, "Normal", "BuildSucceeded", f"{what}: {build.digest or ''}")
        elif core.is_finished(build.phase):
            detail = f"{build.reason}: {build.message}" if build.message else str(build.reason)
            reporter.event(body, "Warning", f"Build{build.phase.value}", f"{what}: {detail}")


async def _reconcile_once(
    body: Mapping[str, Any], settings: BuildSettings, reporter: Reporter
) -> core.Problem | None:
    meta = body["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
    previous = _previous_status(body)
    problem: core.Problem | None = None
    last_trigger = previous.last_trigger
    automated_build: AutomatedBuild | None = None
    try:
        automated_build = AutomatedBuild.model_validate(body)
    except ValidationError as exc:
        message = "; ".join(checks.describe_validation_error(exc))
        problem = core.Problem("InvalidSpec", message, True)
    if automated_build is not None:
        problem = await _check_secrets(namespace, body["spec"])
    if automated_build is not None and problem is None:
        last_trigger, problem, asked = await _triggered_builds(automated_build, body, settings)
        if problem is None and not asked:
            problem = await _check_source(automated_build, previous)
    builds: tuple[BuildRecord, ...] = tuple(previous.builds)
    if automated_build is not None:
        actions, changed = await _apply_actions(namespace, uid, automated_build)
        if changed:
            actions, _ = await _apply_actions(namespace, uid, automated_build)
        builds = actions.builds
    image = automated_build.spec.image.repository if automated_build else previous.image
    status = AutomatedBuildStatus(
        observed_generation=meta.get("generation", 0),
        image=image,
        conditions=core.conditions(
            meta.get("generation", 0), problem, builds, previous.conditions, _now()
        ),
        latest_build=core.latest_build(builds),
        builds=list(builds),
        last_trigger=last_trigger,
    )
    new = status.model_dump(by_alias=True, exclude_none=True, mode="json")
    old = previous.model_dump(by_alias=True, exclude_none=True, mode="json")
    if new == old:
        return problem
    _report_transitions(reporter, body, previous.builds, builds)
    if problem is not None and _condition_changed(previous.conditions, problem):
        reporter.event(body, "Warning", problem.reason, problem.message)
    # latestBuild is removed explicitly when there is none (merge patch: null deletes).
    new.setdefault("latestBuild", None)
    new.setdefault("lastTrigger", None)
    _own_writes[(namespace, name)] = await kube.patch_status(
        namespace, name, meta["resourceVersion"], new
    )
    return problem


def _condition_changed(previous: list[Condition], problem: core.Problem) -> bool:
    ready = next((c for c in previous if c.type == "Ready"), None)
    return ready is None or ready.reason != problem.reason or ready.message != problem.message


async def reconcile(
    namespace: str,
    name: str,
    settings: BuildSettings,
    reporter: Reporter | None = None,
) -> None:
    """Bring one AutomatedBuild's Jobs and status in line with its spec; safe to call anytime."""
    key = (namespace, name)
    async with _locks[key]:
        for _ in range(_CONFLICT_RETRIES):
            body = await kube.get_automated_build(namespace, name)
            if body is None or body["metadata"].get("deletionTimestamp"):
                _retry.discard(key)
                _own_writes.pop(key, None)
                return
            try:
                problem = await _reconcile_once(body, settings, reporter or Reporter())
            except ApiException as exc:
                if exc.status == 409:
                    continue  # someone wrote in between: read again and redo
                raise
            if problem is None or problem.reason == "InvalidSpec":
                _retry.discard(key)  # fine, or only a spec change (an event) can help
            else:
                _retry.add(key)
            return
        log.warning("%s/%s: gave up after %d conflicts", namespace, name, _CONFLICT_RETRIES)


async def retry_not_ready(
    settings: BuildSettings, reporter: Reporter, interval: float = _RETRY_SECONDS
) -> None:
    """Every ``interval`` seconds, look again at objects whose problem may fix itself (a
    Secret created later, a git host back up). Kept in memory, not in the objects: a restart
    visits every object anyway."""
    while True:
        await asyncio.sleep(interval)
        for namespace, name in sorted(_retry):
            try:
                await reconcile(namespace, name, settings, reporter)
            except Exception:
                log.exception("%s/%s: retry failed", namespace, name)


async def submit_push(
    namespace: str, name: str, event: PushEvent, settings: BuildSettings
) -> list[str]:
    """The one entry point for pushes (webhooks, polling): plan, create Jobs, reconcile."""
    body = await kube.get_automated_build(namespace, name)
    if body is None:
        return []
    automated_build = AutomatedBuild.model_validate(body)
    plan = plan_builds(automated_build.spec, event)
    created = await create_builds(automated_build, list(plan.builds), settings)
    await reconcile(namespace, name, settings)
    return created
