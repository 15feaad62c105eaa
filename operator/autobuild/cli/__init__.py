"""The ``autobuild`` command."""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import os
import secrets
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import urllib3
import yaml
from pydantic import ValidationError

from autobuild import API_GROUP, KIND, yamlio
from autobuild.api import checks
from autobuild.api.models import AutomatedBuild, BuildRecord, Provider, Trigger
from autobuild.api.repos import repo_host
from autobuild.planning import status as build_status
from autobuild.planning.credentials import (
    TOKEN_KEY,
    USERNAME_KEY,
    default_username,
    git_credentials_problem,
    git_username,
    push_credentials_problem,
)
from autobuild.planning.job import CONTAINER_NAME, LABEL_BUILD_ID, clone_url, render_job
from autobuild.planning.planner import PushEvent, check_commit, full_ref, parse_ref, plan_builds
from autobuild.planning.triggers import TriggerRequest, request_id
from autobuild.settings import BuildSettings, GitHubSettings, check_http_url

if TYPE_CHECKING:  # PyGithub is heavy: only the GitHub commands import it
    from autobuild.sources.github import GitHub
from autobuild.webhooks.receiver import DEFAULT_ADDRESS

T = TypeVar("T")


class CliError(Exception):
    """A user error: printed as ``autobuild: <message>`` with exit code 1."""


def _documents(text: str, source: str) -> list[Any]:
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise CliError(f"{source}: not valid YAML: {exc}") from exc


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
    for document in _documents(text, source):
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
    documents = _documents(text, source)
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
    text = _read(args.file)
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


def _cluster_target(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """Load client config; return the namespace and the AutomatedBuild named on the command line."""
    from autobuild.controller import kube

    load_kube_config(args)
    namespace = args.namespace or _current_namespace(args)
    body = asyncio.run(kube.get_automated_build(namespace, args.name))
    if body is None:
        raise CliError(f"AutomatedBuild {namespace}/{args.name} not found")
    return namespace, body


def load_kube_config(args: argparse.Namespace) -> None:
    """Client config as kubectl would pick it: ``--kubeconfig`` and ``--context`` when given
    (``kubectl autobuild ... --context NAME``), else in-cluster, KUBECONFIG or ~/.kube/config."""
    from autobuild.controller import kube

    kubeconfig, context = args.kubeconfig, args.context
    if kubeconfig is None and context is None:
        kube.load_config()
        return
    from kubernetes import config

    try:
        config.load_kube_config(
            config_file=kubeconfig or os.environ.get("KUBECONFIG"), context=context
        )
    except (config.ConfigException, OSError) as exc:
        raise CliError(f"kubeconfig: {exc}") from exc


def _current_namespace(args: argparse.Namespace) -> str:
    """The namespace of the kubeconfig context in use (``--context``, else the current one)."""
    from kubernetes import config

    try:
        contexts, current = config.list_kube_config_contexts(
            config_file=args.kubeconfig or os.environ.get("KUBECONFIG")
        )
    except (config.ConfigException, OSError):
        return "default"
    if args.context is not None:
        current = next((c for c in contexts if c.get("name") == args.context), None)
    return str((current or {}).get("context", {}).get("namespace") or "default")


def trigger(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``autobuild trigger``: ask the operator for a build now. The request is appended to the
    ``autobuild.dev/trigger`` list (with optimistic concurrency), so quick triggers all count."""
    from autobuild.controller import kube

    try:
        if args.commit and not args.ref:
            raise CliError("--commit needs --ref: say which branch or tag the commit is on")
        ref = full_ref(*parse_ref(args.ref)) if args.ref else None
        commit = check_commit(args.commit) if args.commit else None
    except checks.InputError as exc:
        raise CliError(f"--{exc}") from exc
    namespace, body = _cluster_target(args)
    automated_build = AutomatedBuild.model_validate(body)
    if ref is None and all(rule.source_regex is not None for rule in automated_build.spec.tags):
        raise CliError(
            "every build rule of this AutomatedBuild is a regex: say which branch or tag to "
            "build with --ref"
        )
    request = TriggerRequest(request_id(datetime.now(UTC), secrets.token_hex(3)), ref, commit)
    asyncio.run(kube.append_trigger(namespace, args.name, request))
    out.write(f"automatedbuild/{args.name} trigger {request.id} requested\n")
    return 0


def _build_jobs(namespace: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    from autobuild.controller import kube

    jobs = asyncio.run(kube.list_jobs(namespace, body["metadata"]["uid"]))
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
    from autobuild.controller import kube

    namespace, body = _cluster_target(args)
    jobs = _pick(_build_jobs(namespace, body), args.build)
    cancelled = 0
    for job in jobs:
        build_id = job["metadata"]["labels"].get(LABEL_BUILD_ID)
        if build_status.is_finished(build_status.observe(job, ()).phase):
            if args.build:
                raise CliError(f"build {build_id} has already finished")
            continue
        patch = build_status.cancel_patch(datetime.now(UTC))
        asyncio.run(kube.patch_job(namespace, job["metadata"]["name"], patch))
        out.write(f"build {build_id} cancelled\n")
        cancelled += 1
    if not cancelled:
        err.write("autobuild: no queued or running build to cancel\n")
    return 0


def logs(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``autobuild logs``: print (or follow) a build's Kaniko log; the newest build by default."""
    from kubernetes import client

    namespace, body = _cluster_target(args)
    jobs = _pick(_build_jobs(namespace, body), args.build)
    if not jobs:
        raise CliError(f"AutomatedBuild {args.name} has no builds yet")
    job_name = jobs[0]["metadata"]["name"]
    pods = client.CoreV1Api().list_namespaced_pod(namespace, label_selector=f"job-name={job_name}")
    if not pods.items:
        raise CliError(f"build Job {job_name} has no pod yet (queued?)")
    pod = max(pods.items, key=lambda p: p.metadata.creation_timestamp)
    kaniko = next(
        (c for c in pod.status.container_statuses or [] if c.name == CONTAINER_NAME), None
    )
    if kaniko is None or (kaniko.state.running is None and kaniko.state.terminated is None):
        # The API answers an empty log, not an error, for a pod that has not started.
        waiting = kaniko.state.waiting if kaniko is not None else None
        why = f"{waiting.reason}: {waiting.message or ''}" if waiting else pod.status.phase
        raise CliError(f"build Job {job_name} has not started yet ({why.strip(': ')})")
    try:
        stream = client.CoreV1Api().read_namespaced_pod_log(
            pod.metadata.name,
            namespace,
            container=CONTAINER_NAME,
            follow=args.follow,
            _preload_content=False,
        )
    except client.ApiException as exc:
        # e.g. 400 'container "kaniko" in pod ... is waiting to start' while it is Pending.
        detail = json.loads(exc.body).get("message", exc.reason) if exc.body else exc.reason
        raise CliError(f"cannot read the log of build Job {job_name}: {detail}") from exc
    for chunk in stream.stream():
        out.write(chunk.decode(errors="replace"))
        out.flush()
    return 0


def _github_url(args: argparse.Namespace) -> str:
    """``--github-url``, else ``AUTOBUILD_GITHUB_URL``."""
    if args.github_url:
        return str(args.github_url)
    try:
        return GitHubSettings.from_env().github_url
    except ValueError as exc:
        raise CliError(str(exc)) from exc


def _github(args: argparse.Namespace) -> GitHub:
    """A GitHub client for ``--github-url``, else ``AUTOBUILD_GITHUB_URL``."""
    from autobuild.sources.github import ClientOptions, GitHub

    url = _github_url(args)
    try:
        check_http_url(url, "--github-url")
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    # One call at a time: GitHub's write throttle is irrelevant, its read throttle kept.
    return GitHub(url, ClientOptions(seconds_between_writes=0), workers=1)


@dataclass(frozen=True)
class LinkedSecret:
    """A linked account's Secret as the CLI uses it: its decoded ``token`` (and ``username``
    when it has that key) and its annotations (the hosts its token may go to)."""

    data: dict[str, str]
    annotations: dict[str, str]


def _linked_secret(namespace: str, secret_name: str) -> LinkedSecret:
    """Read the Secret through the Kubernetes API; a CliError when it or its token is missing."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    where = f"Secret {namespace}/{secret_name}"
    try:
        secret = client.CoreV1Api().read_namespaced_secret(secret_name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise CliError(f"{where} not found") from exc
        raise
    raw = secret.data or {}
    if TOKEN_KEY not in raw:
        raise CliError(f"{where} has no key {TOKEN_KEY!r}")
    data = {}
    for key in (TOKEN_KEY, USERNAME_KEY):
        if key in raw:
            try:
                data[key] = base64.b64decode(raw[key], validate=True).decode().strip()
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise CliError(f"{where}: key {key!r} is not valid") from exc
    return LinkedSecret(data, dict(secret.metadata.annotations or {}))


def _secret_token(namespace: str, secret_name: str) -> str:
    """The ``token`` key of a Secret (the linked account), read through the Kubernetes API."""
    return _linked_secret(namespace, secret_name).data[TOKEN_KEY]


def _linked_token(args: argparse.Namespace) -> str:
    """The token from ``--token-file`` or from the Secret named by ``--secret``."""
    if args.token_file:
        token = _read(args.token_file).strip()
        if not token:
            raise CliError(f"{args.token_file}: empty token")
        return token
    if not args.secret:
        raise CliError("give --secret NAME (a Secret with key 'token') or --token-file FILE")
    load_kube_config(args)
    return _secret_token(args.namespace or _current_namespace(args), args.secret)


def _on_github(args: argparse.Namespace, call: Callable[[GitHub], Awaitable[T]]) -> T:
    from autobuild.sources.github import GitHubError

    github = _github(args)

    async def run() -> T:
        return await call(github)

    try:
        return asyncio.run(run())
    except GitHubError as exc:
        raise CliError(str(exc)) from exc
    finally:
        github.close()


def repos(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``autobuild repos``: the repositories the linked account can build (the picker)."""
    token = _linked_token(args)
    found = _on_github(args, lambda github: github.list_repositories(token))
    if not found:
        err.write("autobuild: the linked account sees no repository\n")
        return 0
    rows = [("REPOSITORY", "VISIBILITY", "DEFAULT BRANCH", "WEBHOOK")]
    rows += [
        (
            repo.full_name,
            "private" if repo.private else "public",
            repo.default_branch,
            "automatic" if repo.admin else "manual (no admin rights)",
        )
        for repo in found
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        out.write("   ".join(cells).rstrip() + "\n")
    return 0


def new(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``autobuild new``: print a ready AutomatedBuild for one repository."""
    from autobuild.sources.github import manifest_for

    token = _linked_token(args)
    repository = _on_github(args, lambda github: github.get_repository(token, args.repo))
    try:
        document = manifest_for(
            repository,
            credentials_secret=args.secret or "github-link",
            namespace=args.namespace,
            image_namespace=args.image_namespace,
            image_name=args.image_name,
            registry=args.registry,
            private=True if args.private else None,
        )
    except ValidationError as exc:
        raise CliError("\n".join(checks.describe_validation_error(exc))) from exc
    if not args.secret:
        err.write("autobuild: credentialsSecret set to 'github-link': create that Secret\n")
    out.write(yamlio.dump(document))
    return 0


def dockerfile_location(
    automated_build: AutomatedBuild, build_id: str | None
) -> tuple[BuildRecord, str]:
    """The build (by id, else the newest) and the repository path of its rule's Dockerfile."""
    from autobuild.sources.github import dockerfile_path

    builds = automated_build.status.builds
    name = automated_build.metadata.name
    if build_id is not None:
        record = next((b for b in builds if b.id == build_id), None)
        if record is None:
            raise CliError(f"AutomatedBuild {name} has no build {build_id!r} in its status")
    elif builds:
        record = builds[0]
    else:
        raise CliError(f"AutomatedBuild {name} has no builds yet")
    rules = automated_build.spec.tags
    if record.rule >= len(rules):
        raise CliError(f"build {record.id}: its build rule {record.rule} no longer exists")
    return record, dockerfile_path(rules[record.rule])


def _dockerfile_from_github(
    args: argparse.Namespace,
    namespace: str,
    automated_build: AutomatedBuild,
    record: BuildRecord,
    path: str,
) -> tuple[str, str, bytes]:
    """(repository, path, bytes) read through the GitHub contents API, as the linked account:
    the credentialsSecret's token only where the operator would send it (the Secret allows the
    repository's host, and that host is the one the GitHub API serves)."""
    from autobuild.planning.hooks import api_web_host
    from autobuild.sources.github import repository_full_name

    spec = automated_build.spec
    if spec.source.credentials_secret and not args.token_file:
        served = api_web_host(_github_url(args))
        host = repo_host(spec.source.repo)
        if host != served:
            raise CliError(
                f"AutomatedBuild {automated_build.metadata.name}: the GitHub API at "
                f"{_github_url(args)} serves {served}, not {host}: the operator never sends "
                f"Secret {spec.source.credentials_secret!r} there (give --github-url)"
            )
    token, _ = _git_credentials(args, namespace, automated_build)
    full_name = repository_full_name(spec.source)
    found = _on_github(args, lambda github: github.read_file(token, full_name, path, record.commit))
    return full_name, found.path, found.content


def _git_credentials(
    args: argparse.Namespace, namespace: str, automated_build: AutomatedBuild
) -> tuple[str | None, str | None]:
    """The token and username to send to the repository's host (over git or GitHub's API):
    ``--token-file`` (the provider's username), else the credentialsSecret's, only where the
    operator would send them (the Secret's ``autobuild.dev/git-hosts`` annotation lists the
    host, and plain http only to an insecure host), else none."""
    spec = automated_build.spec
    if args.token_file:
        return _linked_token(args), default_username(spec.provider)
    name = spec.source.credentials_secret
    if name is None:
        return None, None  # a public repository
    secret = _linked_secret(namespace, name)
    try:
        settings = BuildSettings.from_env()
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    problem = git_credentials_problem(
        spec.source.repo, name, secret.annotations, settings.insecure_git_hosts
    )
    if problem is not None:
        raise CliError(
            f"AutomatedBuild {automated_build.metadata.name}: {problem[0]}: {problem[1]}"
        )
    return secret.data[TOKEN_KEY], git_username(spec.provider, secret.data)


def _dockerfile_over_git(
    args: argparse.Namespace,
    namespace: str,
    automated_build: AutomatedBuild,
    record: BuildRecord,
    path: str,
) -> bytes:
    """The file's bytes at the build's commit, from a shallow git fetch of that commit (of the
    build's branch or tag when the server does not send commits by id)."""
    from autobuild.sources.git import GitFileError, SourceUnreachable, read_file_at_commit

    token, username = _git_credentials(args, namespace, automated_build)
    spec = automated_build.spec
    ref = full_ref(record.source_type, record.source_ref)
    reading = read_file_at_commit(
        clone_url(spec), record.commit, path, ref=ref, token=token, username=username
    )
    try:
        return asyncio.run(reading)
    except (SourceUnreachable, GitFileError, ValueError) as exc:
        raise CliError(str(exc)) from exc


def _write_bytes(out: TextIO, content: bytes) -> None:
    """Write ``content`` exactly (through the binary buffer when the stream has one)."""
    out.flush()
    binary = getattr(out, "buffer", None)
    if binary is not None:
        binary.write(content)
        binary.flush()
    else:
        out.write(content.decode(errors="replace"))


def dockerfile(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``autobuild dockerfile``: the Dockerfile as it was at a build's commit, through the
    GitHub API for GitHub repositories and with a shallow git fetch from other hosts."""
    namespace, body = _cluster_target(args)
    try:
        automated_build = AutomatedBuild.model_validate(body)
    except ValidationError as exc:
        raise CliError("\n".join(checks.describe_validation_error(exc))) from exc
    spec = automated_build.spec
    record, path = dockerfile_location(automated_build, args.build)
    if spec.provider == Provider.GITHUB:
        repository, path, content = _dockerfile_from_github(
            args, namespace, automated_build, record, path
        )
    else:
        repository = spec.source.repo
        content = _dockerfile_over_git(args, namespace, automated_build, record, path)
    err.write(f"# {repository}: {path} at {record.commit} (build {record.id})\n")
    _write_bytes(out, content)
    return 0


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``autobuild run``: the operator."""
    import kopf

    from autobuild.controller.handlers import PROBES, RUNTIME  # importing registers handlers
    from autobuild.webhooks.receiver import parse_address

    host, _, port = args.probes.rpartition(":")
    if not host or not port.isdigit():
        raise CliError(f"--probes: expected HOST:PORT, got {args.probes!r}")
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat[args.log_format.upper()])
    RUNTIME.namespaces = list(args.namespace or [])
    try:
        parse_address(args.webhook_address)
    except ValueError as exc:
        raise CliError(f"--webhook-address: {exc}") from exc
    RUNTIME.webhook_address = args.webhook_address
    try:  # a bad setting stops the start, with its name, before anything runs
        BuildSettings.from_env()
        GitHubSettings.from_env()
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    server = PROBES.serve(host.strip("[]"), int(port))
    err.write(f"autobuild: probes on http://{args.probes}/healthz and /readyz\n")
    try:
        kopf.run(standalone=True, clusterwide=True)
    finally:
        server.shutdown()
    return 0


def _add_kube_options(parser: argparse.ArgumentParser) -> None:
    """kubectl's ``--kubeconfig`` and ``--context`` on a client command. kubectl never hands
    its own flags to a plugin (it passes the arguments after the plugin's name), so
    ``kubectl autobuild trigger app --context C`` must parse them itself."""
    parser.add_argument("--kubeconfig", help="the kubeconfig file (as kubectl's)")
    parser.add_argument("--context", help="the kubeconfig context (as kubectl's)")


def build_parser(prog: str = "autobuild") -> argparse.ArgumentParser:
    """The argument parser of the ``autobuild`` command (``kubectl autobuild`` as a plugin)."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Docker Hub-style Automated Builds for Kubernetes."
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

    run_cmd = commands.add_parser("run", help="run the operator")
    run_cmd.add_argument(
        "-n", "--namespace", action="append", help="watch only this namespace (repeatable)"
    )
    run_cmd.add_argument(
        "--probes",
        default="127.0.0.1:8081",
        help="HOST:PORT serving /healthz and /readyz (use 0.0.0.0:8081 in a Pod)",
    )
    run_cmd.add_argument(
        "--webhook-address",
        default=DEFAULT_ADDRESS,
        help="HOST:PORT of the webhook receiver (/hooks/github, /hooks/bitbucket, /hooks/gitlab, "
        "/hooks/trigger/NS/NAME/TOKEN)",
    )
    run_cmd.add_argument(
        "--log-format", choices=["full", "plain", "json"], default="full", help="log lines"
    )
    run_cmd.add_argument("-v", "--verbose", action="store_true")
    run_cmd.set_defaults(handler=run)

    for name, help_text, handler in (
        ("trigger", "ask for a build now", trigger),
        ("cancel", "cancel queued or running builds", cancel),
        ("logs", "print a build's log", logs),
    ):
        cmd = commands.add_parser(name, help=help_text)
        cmd.add_argument("name", help="the AutomatedBuild")
        cmd.add_argument("-n", "--namespace", help="its namespace (default: the context's)")
        _add_kube_options(cmd)
        cmd.set_defaults(handler=handler)
        if name == "trigger":
            cmd.add_argument("--ref", help="build this ref (default: every exact-name rule)")
            cmd.add_argument("--commit", help="build this commit (default: the ref's head)")
        else:
            cmd.add_argument("--build", help="the build id (default: all / the newest)")
        if name == "logs":
            cmd.add_argument("-f", "--follow", action="store_true", help="stream the log")
    _add_github_commands(commands)
    return parser


def _add_github_commands(commands: Any) -> None:
    """``repos``, ``new`` and ``dockerfile``: the linked account (GitHub's API, or git)."""
    github_url = {
        "help": "the GitHub API (default: AUTOBUILD_GITHUB_URL, else https://api.github.com; "
        "GitHub Enterprise: https://HOST/api/v3)",
    }
    repos_cmd = commands.add_parser(
        "repos",
        help="list the repositories a linked GitHub account can build",
        description="The repositories the linked account's token can see (Docker Hub's "
        "'select the repository'); WEBHOOK says whether the operator can register the push "
        "webhook itself (admin rights).",
    )
    new_cmd = commands.add_parser(
        "new",
        help="print a ready AutomatedBuild for a GitHub repository",
        description="Print an AutomatedBuild for OWNER/REPO: image namespace and name from "
        "the repository, visibility from its privacy, description from its description, rules "
        "default branch -> latest and tags v1.2.3 -> 1.2.3. Pipe it to kubectl apply -f -.",
    )
    new_cmd.add_argument("repo", metavar="OWNER/REPO")
    new_cmd.add_argument("--image-namespace", help="image namespace (default: the owner)")
    new_cmd.add_argument("--name", dest="image_name", help="image name (default: the repo's)")
    new_cmd.add_argument("--registry", help="registry host (default: docker.io)")
    new_cmd.add_argument(
        "--private", action="store_true", help="a private image even for a public repository"
    )
    for cmd in (repos_cmd, new_cmd):
        cmd.add_argument("--secret", help="the linked account: a Secret with key 'token'")
        cmd.add_argument("-n", "--namespace", help="the Secret's namespace (default: context's)")
    dockerfile_cmd = commands.add_parser(
        "dockerfile",
        help="print the Dockerfile as it was at a build's commit",
        description="Print the Dockerfile of a build (the newest by default) exactly as it was "
        "at its commit, with the AutomatedBuild's linked account: through the GitHub API for "
        "GitHub repositories, with a shallow git fetch of that commit from other hosts (the "
        "Secret's token goes only to the hosts its annotation autobuild.dev/git-hosts lists, "
        "over http:// only to AUTOBUILD_INSECURE_GIT_HOSTS). The path and commit go to stderr.",
    )
    dockerfile_cmd.add_argument("name", help="the AutomatedBuild")
    dockerfile_cmd.add_argument("-n", "--namespace", help="its namespace (default: context's)")
    dockerfile_cmd.add_argument("--build", help="the build id (default: the newest)")
    for cmd, handler in ((repos_cmd, repos), (new_cmd, new), (dockerfile_cmd, dockerfile)):
        _add_kube_options(cmd)
        cmd.add_argument("--github-url", **github_url)
        cmd.add_argument(
            "--token-file", help="read the token from this file ('-': stdin) instead of a Secret"
        )
        cmd.set_defaults(handler=handler)


def main(argv: Sequence[str] | None = None, prog: str = "autobuild") -> int:
    """Entry point of the ``autobuild`` console script."""
    args = build_parser(prog).parse_args(argv)
    try:
        code: int = args.handler(args, sys.stdout, sys.stderr)
    except CliError as exc:
        sys.stderr.write(f"autobuild: {exc}\n")
        return 1
    except urllib3.exceptions.MaxRetryError as exc:
        # The Kubernetes client gave up connecting: wrong context, or the cluster is down.
        sys.stderr.write(f"autobuild: cannot reach the Kubernetes API server: {exc.reason}\n")
        return 1
    return code


def kubectl_plugin() -> int:
    """Entry point of ``kubectl-autobuild``: ``kubectl autobuild COMMAND ...``."""
    return main(prog="kubectl autobuild")
