"""``autobuild render``: the Kaniko Jobs a push would create, with no cluster."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, TextIO

from pydantic import ValidationError

from autobuild import API_GROUP, KIND, yamlio
from autobuild.api import checks
from autobuild.api.models import AutomatedBuild, Trigger
from autobuild.cli.common import CliError, read_input, yaml_documents
from autobuild.planning.credentials import git_credentials_problem, push_credentials_problem
from autobuild.planning.job import render_job
from autobuild.planning.planner import PushEvent, plan_builds
from autobuild.settings import BuildSettings


@dataclass(frozen=True)
class SecretDocument:
    """What render may know of a Secret in the same file: key names and annotations (no values)."""

    namespace: str
    name: str
    keys: frozenset[str]
    annotations: dict[str, str]


def load_secrets(text: str, source: str) -> list[SecretDocument]:
    """The v1 Secrets of a YAML stream (namespace 'default' when the document names none)."""
    found = []
    for document in yaml_documents(text, source):
        if not isinstance(document, dict) or document.get("kind") != "Secret":
            continue
        if document.get("apiVersion") != "v1":
            continue
        meta = document.get("metadata") or {}
        keys = {*(document.get("data") or {}), *(document.get("stringData") or {})}
        annotations = {str(k): str(v) for k, v in (meta.get("annotations") or {}).items()}
        namespace = str(meta.get("namespace") or "default")
        found.append(SecretDocument(namespace, str(meta.get("name")), frozenset(keys), annotations))
    return found


def _credentials_secret_keys(
    automated_build: AutomatedBuild, secrets: list[SecretDocument], settings: BuildSettings
) -> frozenset[str]:
    """The key names of the build's credentialsSecret when the file holds it (else none known);
    a CliError when the operator would refuse to send it (CredentialsNotAllowed)."""
    meta = automated_build.metadata
    name = automated_build.spec.source.credentials_secret
    secret = next((s for s in secrets if (s.namespace, s.name) == (meta.namespace, name)), None)
    if name is None or secret is None:
        return frozenset()
    problem = git_credentials_problem(
        automated_build.spec.source.repo, name, secret.annotations, settings.insecure_git_hosts
    )
    if problem is not None:
        raise CliError(f"AutomatedBuild {meta.name}: {problem[0]}: {problem[1]}")
    return secret.keys


def _check_push_secret(automated_build: AutomatedBuild, secrets: list[SecretDocument]) -> None:
    """A CliError when the file holds the build's pushSecret and the operator would refuse it
    for spec.image (its annotation ``autobuild.dev/image-repos``)."""
    meta = automated_build.metadata
    image = automated_build.spec.image
    secret = next(
        (s for s in secrets if (s.namespace, s.name) == (meta.namespace, image.push_secret)), None
    )
    if image.push_secret is None or secret is None:
        return
    problem = push_credentials_problem((image.repository,), image.push_secret, secret.annotations)
    if problem is not None:
        raise CliError(f"AutomatedBuild {meta.name}: {problem[0]}: {problem[1]}")


def load_automated_builds(text: str, source: str) -> list[AutomatedBuild]:
    """Parse every AutomatedBuild document of a YAML stream; other kinds are skipped.

    All documents are validated before any is returned, so bad input yields nothing.
    """
    documents = yaml_documents(text, source)
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


def render(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``autobuild render``: print the Jobs a push would create, as a YAML stream."""
    try:
        event = PushEvent.parse(args.ref, args.commit, args.message, Trigger(args.trigger))
    except checks.InputError as exc:
        raise CliError(f"--{exc}") from exc
    text = read_input(args.file)
    automated_builds = load_automated_builds(text, args.file)
    if not automated_builds:
        raise CliError(f"{args.file}: no AutomatedBuild ({API_GROUP}) document found")
    secrets = load_secrets(text, args.file)
    settings = BuildSettings.from_env()
    jobs: list[dict[str, Any]] = []
    for automated_build in automated_builds:
        keys = _credentials_secret_keys(automated_build, secrets, settings)
        _check_push_secret(automated_build, secrets)
        plan = plan_builds(automated_build.spec, event)
        for note in plan.notes:
            err.write(f"{automated_build.metadata.name}: {note}\n")
        jobs += [render_job(automated_build, build, settings, keys) for build in plan.builds]
    if not jobs:
        err.write(f"autobuild: nothing to build for {event.git_ref} at {event.commit[:12]}\n")
        return 0
    out.write(yamlio.dump_all(jobs))
    return 0


def add_commands(commands: Any) -> None:
    """``render``."""
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
