"""``autobuild trigger``, ``cancel`` and ``logs``: ask for, stop and read the builds of one
AutomatedBuild. They call the Kubernetes API in sequence (cli/kube.py), with no event loop;
each imports cli/kube.py when it runs, so that ``render`` and ``--help`` load no client."""

from __future__ import annotations

import argparse
import secrets
from datetime import UTC, datetime
from typing import Any, TextIO

from autobuild.api import checks
from autobuild.api.models import AutomatedBuild
from autobuild.cli.common import CliError, add_kube_options
from autobuild.planning import status as build_status
from autobuild.planning.job import CONTAINER_NAME, LABEL_BUILD_ID
from autobuild.planning.planner import check_commit, full_ref, parse_ref
from autobuild.planning.triggers import TriggerRequest, request_id


def trigger(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``autobuild trigger``: ask the operator for a build now. The request is appended to the
    ``autobuild.dev/trigger`` list (with optimistic concurrency), so quick triggers all count."""
    from autobuild.cli import kube

    try:
        if args.commit and not args.ref:
            raise CliError("--commit needs --ref: say which branch or tag the commit is on")
        ref = full_ref(*parse_ref(args.ref)) if args.ref else None
        commit = check_commit(args.commit) if args.commit else None
    except checks.InputError as exc:
        raise CliError(f"--{exc}") from exc
    namespace, body = kube.automated_build_target(args)
    automated_build = AutomatedBuild.model_validate(body)
    if ref is None and all(rule.source_regex is not None for rule in automated_build.spec.tags):
        raise CliError(
            "every build rule of this AutomatedBuild is a regex: say which branch or tag to "
            "build with --ref"
        )
    request = TriggerRequest(request_id(datetime.now(UTC), secrets.token_hex(3)), ref, commit)
    kube.append_trigger(namespace, args.name, request)
    out.write(f"automatedbuild/{args.name} trigger {request.id} requested\n")
    return 0


def _build_jobs(namespace: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The AutomatedBuild's build Jobs, newest first."""
    from autobuild.cli import kube

    jobs = kube.list_jobs(namespace, body["metadata"]["uid"])
    return sorted(jobs, key=build_status.creation_key, reverse=True)


def _pick(jobs: list[dict[str, Any]], build_id: str | None) -> list[dict[str, Any]]:
    if build_id is None:
        return jobs
    picked = [j for j in jobs if j["metadata"]["labels"].get(LABEL_BUILD_ID) == build_id]
    if not picked:
        raise CliError(f"no build {build_id!r}")
    return picked


def cancel(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``autobuild cancel``: stop queued or running builds (all of them, or one)."""
    from autobuild.cli import kube

    namespace, body = kube.automated_build_target(args)
    jobs = _pick(_build_jobs(namespace, body), args.build)
    cancelled = 0
    for job in jobs:
        build_id = job["metadata"]["labels"].get(LABEL_BUILD_ID)
        if build_status.is_finished(build_status.observe(job, ()).phase):
            if args.build:
                raise CliError(f"build {build_id} has already finished")
            continue
        patch = build_status.cancel_patch(datetime.now(UTC))
        kube.patch_job(namespace, job["metadata"]["name"], patch)
        out.write(f"build {build_id} cancelled\n")
        cancelled += 1
    if not cancelled:
        err.write("autobuild: no queued or running build to cancel\n")
    return 0


def logs(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``autobuild logs``: print (or follow) a build's Kaniko log; the newest build by default."""
    from autobuild.cli import kube

    namespace, body = kube.automated_build_target(args)
    jobs = _pick(_build_jobs(namespace, body), args.build)
    if not jobs:
        raise CliError(f"AutomatedBuild {args.name} has no builds yet")
    job_name = jobs[0]["metadata"]["name"]
    pods = kube.list_pods(namespace, job_name)
    if not pods:
        raise CliError(f"build Job {job_name} has no pod yet (queued?)")
    # RFC 3339 timestamps of one format: the newest sorts last as text.
    pod = max(pods, key=lambda p: p["metadata"]["creationTimestamp"])
    pod_status: dict[str, Any] = pod.get("status") or {}
    kaniko = next(
        (c for c in pod_status.get("containerStatuses") or [] if c["name"] == CONTAINER_NAME),
        None,
    )
    state = (kaniko or {}).get("state") or {}
    if kaniko is None or (state.get("running") is None and state.get("terminated") is None):
        # The API answers an empty log, not an error, for a pod that has not started.
        waiting = state.get("waiting")
        why = (
            f"{waiting.get('reason')}: {waiting.get('message') or ''}"
            if waiting is not None
            else str(pod_status.get("phase"))
        )
        raise CliError(f"build Job {job_name} has not started yet ({why.strip(': ')})")
    try:
        chunks = kube.read_log(
            namespace, pod["metadata"]["name"], CONTAINER_NAME, follow=args.follow
        )
    except kube.LogReadError as exc:
        raise CliError(f"cannot read the log of build Job {job_name}: {exc}") from exc
    for chunk in chunks:
        out.write(chunk.decode(errors="replace"))
        out.flush()
    return 0


def add_commands(commands: Any) -> None:
    """``trigger``, ``cancel`` and ``logs``: one AutomatedBuild, named on the command line."""
    for name, help_text, handler in (
        ("trigger", "ask for a build now", trigger),
        ("cancel", "cancel queued or running builds", cancel),
        ("logs", "print a build's log", logs),
    ):
        cmd = commands.add_parser(name, help=help_text)
        cmd.add_argument("name", help="the AutomatedBuild")
        cmd.add_argument("-n", "--namespace", help="its namespace (default: the context's)")
        add_kube_options(cmd)
        cmd.set_defaults(handler=handler)
        if name == "trigger":
            cmd.add_argument("--ref", help="build this ref (default: every exact-name rule)")
            cmd.add_argument("--commit", help="build this commit (default: the ref's head)")
        else:
            cmd.add_argument("--build", help="the build id (default: all / the newest)")
        if name == "logs":
            cmd.add_argument("-f", "--follow", action="store_true", help="stream the log")
