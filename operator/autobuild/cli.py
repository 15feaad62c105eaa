"""The ``autobuild`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml
from pydantic import ValidationError

from autobuild import API_GROUP, KIND, yamlio
from autobuild.api import checks
from autobuild.api.models import AutomatedBuild, Trigger
from autobuild.build.job import render_job
from autobuild.build.planner import PushEvent, plan_builds
from autobuild.settings import BuildSettings


class CliError(Exception):
    """A user error: printed as ``autobuild: <message>`` with exit code 1."""


def load_automated_builds(text: str, source: str) -> list[AutomatedBuild]:
    """Parse every AutomatedBuild document of a YAML stream; other kinds are skipped.

    All documents are validated before any is returned, so bad input yields nothing.
    """
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise CliError(f"{source}: not valid YAML: {exc}") from exc
    problems: list[str] = []
    found: list[AutomatedBuild] = []
    for number, document in enumerate(documents, start=1):
        if not isinstance(document, dict):
            problems.append(f"{source}: document {number}: not a YAML mapping")
            continue
        if document.get("kind") != KIND or not str(document.get("apiVersion", "")).startswith(
            f"{API_GROUP}/"
        ):
            continue
        name = (document.get("metadata") or {}).get("name", "?")
        try:
            found.append(AutomatedBuild.model_validate(document))
        except ValidationError as exc:
            where = f"{source}: document {number} (AutomatedBuild {name})"
            problems += [f"{where}: {line}" for line in checks.describe_validation_error(exc)]
    if problems:
        raise CliError("\n".join(problems))
    return found


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror}") from exc


def render(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``autobuild render``: print the Jobs a push would create, as a YAML stream."""
    try:
        event = PushEvent.parse(args.ref, args.commit, args.message, Trigger(args.trigger))
    except checks.InputError as exc:
        raise CliError(f"--{exc}") from exc
    automated_builds = load_automated_builds(_read(args.file), args.file)
    if not automated_builds:
        raise CliError(f"{args.file}: no AutomatedBuild ({API_GROUP}) document found")
    settings = BuildSettings.from_env()
    jobs: list[dict[str, Any]] = []
    for automated_build in automated_builds:
        plan = plan_builds(automated_build.spec, event)
        for note in plan.notes:
            err.write(f"{automated_build.metadata.name}: {note}\n")
        jobs += [render_job(automated_build, build, settings) for build in plan.builds]
    if not jobs:
        err.write(f"autobuild: nothing to build for {event.git_ref} at {event.commit[:12]}\n")
        return 0
    out.write(yamlio.dump_all(jobs))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``autobuild`` command."""
    parser = argparse.ArgumentParser(
        prog="autobuild", description="Docker Hub-style Automated Builds for Kubernetes."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    render_cmd = commands.add_parser(
        "render",
        help="print the Kaniko Jobs a push would create (no cluster needed)",
        description="Print, as a YAML stream, the Kaniko Job(s) that a push of REF at SHA "
        "creates for each AutomatedBuild in FILE.",
    )
    render_cmd.add_argument("-f", "--file", required=True, help="YAML file ('-' for stdin)")
    render_cmd.add_argument(
        "--ref", required=True, help="refs/heads/BRANCH, refs/tags/TAG, or a bare branch name"
    )
    render_cmd.add_argument("--commit", required=True, help="full commit id (40 hex digits)")
    render_cmd.add_argument("--message", default="", help="commit message (COMMIT_MSG)")
    render_cmd.add_argument(
        "--trigger",
        default=Trigger.PUSH.value,
        choices=[t.value for t in Trigger],
        help="what asks for the build; manual and api also build rules with autobuild: false",
    )
    render_cmd.set_defaults(handler=render)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``autobuild`` console script."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args, sys.stdout, sys.stderr)
    except CliError as exc:
        sys.stderr.write(f"autobuild: {exc}\n")
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
