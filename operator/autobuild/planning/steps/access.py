"""Access: whether the spec is valid, its Secrets are there, and the tokens may go where the
spec sends them (the credential host policy). Never a Job, an ls-remote or a registry call
with a token its Secret does not allow for the host."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import ValidationError

from autobuild.api import checks
from autobuild.api.conditions import Reason
from autobuild.api.models import AutomatedBuild, Provider
from autobuild.planning import status as tracking
from autobuild.planning.credentials import (
    git_credentials_problem,
    git_username,
    push_credentials_problem,
)
from autobuild.planning.job import REGISTRY_CA_KEY
from autobuild.planning.snapshot import Obj, SecretView
from autobuild.planning.steps.base import Contribution, World
from autobuild.settings import BuildSettings

# The spec as the status reports it back: which generation was seen, where builds push to,
# where the push webhook goes.
OWNS: Final = frozenset({"observedGeneration", "image", "webhookPath"})
# Secret keys that the spec's references need.
_SECRET_KEYS: Final = (
    (("source", "credentialsSecret"), "token"),
    (("source", "webhookSecret"), "secret"),
    (("image", "pushSecret"), ".dockerconfigjson"),
    (("image", "caSecret"), REGISTRY_CA_KEY),
    (("triggerSecret",), "trigger-token"),
)
# The receiver's route per provider; plain git hosts (Gitea, Forgejo) send GitHub's format.
WEBHOOK_PATHS: Final = {
    Provider.GITHUB: "/hooks/github",
    Provider.BITBUCKET: "/hooks/bitbucket",
    Provider.GITLAB: "/hooks/gitlab",
}


@dataclass(kw_only=True)
class Access(Contribution):
    """The validated object (None: the spec is invalid) and the credentials it may use."""

    automated_build: AutomatedBuild | None = None
    # The git host's username and the linked token (None: no token may be sent).
    username: str = ""
    password: str | None = field(default=None, repr=False)
    # Whether the linked token's state is known (its Secrets are there, the host allowed).
    credentials_known: bool = False
    # The push Secret is bound to other repositories: no Job mounts it, no registry call.
    push_refused: tracking.Problem | None = None
    # Status fields: what the spec says.
    generation: int = 0
    image: str = ""
    webhook_path: str = ""


def run(world: World) -> Access:
    """Validate the object and check its Secrets and credential host policy, in that order:
    the first problem found is the step's."""
    snapshot = world.snapshot
    generation = int(snapshot.body["metadata"].get("generation", 0))
    try:
        automated_build = AutomatedBuild.model_validate(snapshot.body)
    except ValidationError as exc:
        message = "; ".join(checks.describe_validation_error(exc))
        return Access(
            problem=tracking.Problem(Reason.INVALID_SPEC, message),
            generation=generation,
            image=world.previous.image,
            webhook_path=world.previous.webhook_path,
        )
    username, password = "", None
    problem = _secret_problem(snapshot.body.get("spec") or {}, snapshot.secrets)
    if problem is None:
        problem, username, password = git_access(automated_build, snapshot.secrets, world.settings)
    known = problem is None
    push_refused = push_access(automated_build, snapshot.secrets)
    return Access(
        problem=problem or push_refused,
        automated_build=automated_build,
        username=username,
        password=password,
        credentials_known=known,
        push_refused=push_refused,
        generation=generation,
        image=automated_build.spec.image.repository,
        webhook_path=WEBHOOK_PATHS.get(
            automated_build.spec.provider, WEBHOOK_PATHS[Provider.GITHUB]
        ),
    )


def _secret_references(spec: Obj) -> list[tuple[str, str, str]]:
    """(field path, Secret name, key it must have) of each Secret the spec names; from the raw
    spec, so that specs that fail validation are covered too."""
    found = []
    for path, key in _SECRET_KEYS:
        value: Any = spec
        for part in path:
            value = (value or {}).get(part) if isinstance(value, Mapping) else None
        if isinstance(value, str) and value:
            found.append(("spec." + ".".join(path), value, key))
    return found


def referenced_secrets(spec: Obj) -> list[str]:
    """Names of the Secrets a spec refers to."""
    return list(dict.fromkeys(name for _, name, _ in _secret_references(spec)))


def _secret_problem(spec: Obj, secrets: Mapping[str, SecretView | None]) -> tracking.Problem | None:
    for where, name, key in _secret_references(spec):
        secret = secrets.get(name)
        if secret is None:
            return tracking.Problem(Reason.SECRET_NOT_FOUND, f"{where}: Secret {name!r} not found")
        if key not in secret.data:
            return tracking.Problem(
                Reason.SECRET_KEY_MISSING, f"{where}: Secret {name!r} has no key {key!r}"
            )
    return None


def git_access(
    automated_build: AutomatedBuild,
    secrets: Mapping[str, SecretView | None],
    settings: BuildSettings,
) -> tuple[tracking.Problem | None, str, str | None]:
    """Whether the linked token may go to the repository's host; the username and password."""
    spec = automated_build.spec
    name = spec.source.credentials_secret
    secret = secrets.get(name) if name else None
    if name is None or secret is None:
        return None, git_username(spec.provider, {}), None
    refused = git_credentials_problem(
        spec.source.repo, name, secret.annotations, settings.insecure_git_hosts
    )
    if refused is not None:
        return tracking.Problem(Reason(refused[0]), refused[1]), "", None
    return None, git_username(spec.provider, secret.data), secret.data.get("token")


def push_access(
    automated_build: AutomatedBuild, secrets: Mapping[str, SecretView | None]
) -> tracking.Problem | None:
    """Whether the push Secret may be used for spec.image's repository (its annotation
    ``autobuild.dev/image-repos``): refused, no Job mounts it and no registry call sends it."""
    image = automated_build.spec.image
    secret = secrets.get(image.push_secret) if image.push_secret else None
    if image.push_secret is None or secret is None:
        return None
    refused = push_credentials_problem((image.repository,), image.push_secret, secret.annotations)
    return None if refused is None else tracking.Problem(Reason(refused[0]), refused[1])


__all__ = [
    "OWNS",
    "WEBHOOK_PATHS",
    "Access",
    "git_access",
    "push_access",
    "referenced_secrets",
    "run",
]
