"""``autobuild repos``, ``new`` and ``dockerfile``: the linked account, through GitHub's API (or
git for other hosts). Each command runs its calls to the git host in one event loop; PyGithub
and the Kubernetes client (cli/kube.py) are imported only when a command needs them."""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from pydantic import ValidationError

from autobuild import yamlio
from autobuild.api import checks
from autobuild.api.models import AutomatedBuild, BuildRecord, Provider
from autobuild.api.repos import repo_host
from autobuild.cli.common import CliError, add_kube_options, read_input, write_bytes
from autobuild.planning.credentials import (
    TOKEN_KEY,
    USERNAME_KEY,
    default_username,
    git_credentials_problem,
    git_username,
)
from autobuild.planning.job import clone_url
from autobuild.planning.planner import full_ref
from autobuild.settings import BuildSettings, GitHubSettings, check_http_url

if TYPE_CHECKING:  # PyGithub is heavy: only the GitHub commands import it
    from autobuild.sources.github import GitHub

T = TypeVar("T")


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
    from autobuild.cli import kube

    where = f"Secret {namespace}/{secret_name}"
    secret = kube.read_secret(namespace, secret_name)
    if secret is None:
        raise CliError(f"{where} not found")
    raw = secret.get("data") or {}
    if TOKEN_KEY not in raw:
        raise CliError(f"{where} has no key {TOKEN_KEY!r}")
    data = {}
    for key in (TOKEN_KEY, USERNAME_KEY):
        if key in raw:
            try:
                data[key] = base64.b64decode(raw[key], validate=True).decode().strip()
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise CliError(f"{where}: key {key!r} is not valid") from exc
    return LinkedSecret(data, dict(secret["metadata"].get("annotations") or {}))


def _secret_token(namespace: str, secret_name: str) -> str:
    """The ``token`` key of a Secret (the linked account), read through the Kubernetes API."""
    return _linked_secret(namespace, secret_name).data[TOKEN_KEY]


def _linked_token(args: argparse.Namespace) -> str:
    """The token from ``--token-file`` or from the Secret named by ``--secret``."""
    if args.token_file:
        token = read_input(args.token_file).strip()
        if not token:
            raise CliError(f"{args.token_file}: empty token")
        return token
    if not args.secret:
        raise CliError("give --secret NAME (a Secret with key 'token') or --token-file FILE")
    from autobuild.cli import kube

    kube.load_kube_config(args)
    return _secret_token(args.namespace or kube.current_namespace(args), args.secret)


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


def dockerfile(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``autobuild dockerfile``: the Dockerfile as it was at a build's commit, through the
    GitHub API for GitHub repositories and with a shallow git fetch from other hosts."""
    from autobuild.cli import kube

    namespace, body = kube.automated_build_target(args)
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
    write_bytes(out, content)
    return 0


def add_commands(commands: Any) -> None:
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
        add_kube_options(cmd)
        cmd.add_argument("--github-url", **github_url)
        cmd.add_argument(
            "--token-file", help="read the token from this file ('-': stdin) instead of a Secret"
        )
        cmd.set_defaults(handler=handler)
