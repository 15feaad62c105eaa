"""Apply an AutomatedBuild's visibility and short description to its image repository.

``apply_repository_settings`` is what the operator calls when an AutomatedBuild is created or
its spec.image changes (as Docker Hub did on "Create"), independently of builds and of the push
preflight. It reads the repository through the registry's management API, plans the calls
(:mod:`autobuild.registry.plan`), makes them, and returns what was applied for status.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import aiohttp

from autobuild.api.conditions import Reason
from autobuild.api.registries import base_url, is_docker_hub, normalize_registry
from autobuild.planning.credentials import ANNOTATION_MANAGE_EXISTING
from autobuild.registry.api import ApiError
from autobuild.registry.client import session_or_own
from autobuild.registry.dockerconfig import Credentials
from autobuild.registry.dockerhub import DockerHub
from autobuild.registry.harbor import Harbor
from autobuild.registry.plan import Desired, Observed, describe, plan_docker_hub, plan_harbor
from autobuild.settings import DEFAULT_DOCKERHUB_URL

DEFAULT_TIMEOUT_S = 20.0
DOCKER_HUB_KIND = "DockerHub"
HARBOR_KIND = "Harbor"
PLAIN_KIND = "Registry"


@dataclass(frozen=True)
class RepositorySettingsResult:
    """What happened to one repository's settings, for ``status.repository``.

    ``ok`` is False only for failures (refused, rate-limited, unreachable, failed);
    ``VisibilityUnsupported`` and ``RepositoryPending`` are ok with a reason that says why
    nothing (or not everything) was set.
    """

    repository: str
    kind: str
    ok: bool
    visibility: str | None = None
    description: str | None = None
    applied: tuple[str, ...] = ()
    reason: str = ""
    message: str = ""
    retry_after: float | None = field(default=None, compare=False)
    # autobuild created it (or its Harbor project), or it was missing before the first push.
    created: bool = False

    def as_status(self) -> dict[str, object]:
        """camelCase fields for ``status.repository`` (no credentials ever in here)."""
        status: dict[str, object] = {"name": self.repository, "kind": self.kind}
        if self.visibility is not None:
            status["visibility"] = self.visibility
        if self.description is not None:
            status["description"] = self.description
        if self.applied:
            status["applied"] = list(self.applied)
        if self.reason:
            status["reason"] = self.reason
            status["message"] = self.message
        if self.created:
            status["created"] = True
        return status


async def apply_repository_settings(
    registry: str,
    repository: str,
    visibility: str,
    description: str,
    credentials: Credentials | None,
    *,
    dockerhub_url: str = DEFAULT_DOCKERHUB_URL,
    insecure_registries: Iterable[str] = (),
    also_owned: Iterable[str] = (),
    created: bool = False,
    manage_existing: bool = False,
    session: aiohttp.ClientSession | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> RepositorySettingsResult:
    """Bring ``registry``/``repository`` (e.g. ``docker.io``, ``acme/app``) to ``visibility``
    (``Public``/``Private``) and ``description``.

    Docker Hub: create when missing, else update what differs. Harbor: the project's visibility
    (only when the project holds nothing but this AutomatedBuild's repositories: ``also_owned``
    names the others, e.g. its build cache) and the repository's description. Any other
    registry: ``VisibilityUnsupported``. Never raises for API answers.

    A repository that existed before autobuild (``created``: status says autobuild created it
    earlier) is changed only with ``manage_existing`` (the push Secret's consent): otherwise
    ``RepositoryNotManaged`` and no write, so an AutomatedBuild cannot flip the visibility of
    any repository its push Secret's account can administer.
    """
    if visibility not in ("Public", "Private"):
        raise ValueError(f"visibility must be Public or Private, not {visibility!r}")
    async with session_or_own(session) as http:
        desired = Desired(private=visibility == "Private", description=description)
        full_name = f"{normalize_registry(registry)}/{repository}"
        if is_docker_hub(registry):
            kind = DOCKER_HUB_KIND
            run = _docker_hub(
                http,
                dockerhub_url.rstrip("/"),
                repository,
                desired,
                credentials,
                timeout,
                created or manage_existing,
            )
        else:
            harbor = Harbor(http, base_url(registry, insecure_registries), credentials, timeout)
            try:
                found = await harbor.is_harbor()
            except ApiError as error:
                return _failed(full_name, PLAIN_KIND, error)
            if not found:
                return RepositorySettingsResult(
                    full_name,
                    PLAIN_KIND,
                    ok=True,
                    reason=Reason.VISIBILITY_UNSUPPORTED,
                    message=(
                        f"registry {normalize_registry(registry)} has no repository visibility or "
                        "description autobuild can set (supported: Docker Hub, Harbor); the "
                        "repository is as the registry makes it on the first push"
                    ),
                )
            kind = HARBOR_KIND
            run = _harbor(harbor, repository, desired, also_owned, created or manage_existing)
        try:
            applied, reason, message, made = await run
        except ApiError as error:
            return _failed(full_name, kind, error, created)
        left_alone = reason in (Reason.VISIBILITY_CONFLICT, Reason.REPOSITORY_NOT_MANAGED)
        return RepositorySettingsResult(
            full_name,
            kind,
            ok=reason != Reason.VISIBILITY_CONFLICT,
            visibility=None if left_alone else visibility,
            description=(
                None
                if reason in (Reason.REPOSITORY_PENDING, Reason.REPOSITORY_NOT_MANAGED)
                else description
            ),
            applied=applied,
            reason=reason,
            message=message,
            created=created or made,
        )


async def _docker_hub(
    session: aiohttp.ClientSession,
    hub_url: str,
    repository: str,
    desired: Desired,
    credentials: Credentials | None,
    timeout: float,
    manage: bool,
) -> tuple[tuple[str, ...], str, str, bool]:
    namespace, _, name = repository.rpartition("/")
    if credentials is None:
        raise ApiError(
            Reason.REPOSITORY_UNAUTHORIZED,
            "Docker Hub needs the push secret's credentials to set visibility and description",
        )
    hub = DockerHub(session, hub_url, timeout)
    await hub.login(credentials)
    observed = await hub.get(namespace, name)
    steps = plan_docker_hub(desired, observed)
    if observed is not None and steps and not manage:
        return (), Reason.REPOSITORY_NOT_MANAGED, _not_managed(repository, observed), False
    for step in steps:
        await hub.apply(namespace, name, step)
    return tuple(describe(step) for step in steps), "", "", observed is None


async def _harbor(
    harbor: Harbor, repository: str, desired: Desired, also_owned: Iterable[str], manage: bool
) -> tuple[tuple[str, ...], str, str, bool]:
    project_name, _, rest = repository.partition("/")
    project = await harbor.project(project_name)
    observed = None if project is None else await harbor.repository(project_name, rest)
    plan = plan_harbor(desired, project_name, project, observed, {repository, *also_owned})
    # Ours: the project is created now, or the repository does not exist yet (the first push,
    # a build of ours, creates it).
    made = project is None or observed is None
    if not made and plan.steps and not manage:
        assert project is not None
        assert observed is not None
        shown = Observed(private=not project.public, description=observed.description)
        return (), Reason.REPOSITORY_NOT_MANAGED, _not_managed(repository, shown), False
    for step in plan.steps:
        await harbor.apply(project_name, rest, step)
    return tuple(describe(step) for step in plan.steps), plan.reason, plan.message, made


def _not_managed(repository: str, observed: Observed) -> str:
    state = "Private" if observed.private else "Public"
    return (
        f"{repository} existed before autobuild (it is {state}): its visibility and "
        "description are left as they are. To let autobuild manage them, annotate the push "
        f'Secret with {ANNOTATION_MANAGE_EXISTING}: "true"'
    )


def _failed(
    full_name: str, kind: str, error: ApiError, created: bool = False
) -> RepositorySettingsResult:
    return RepositorySettingsResult(
        full_name,
        kind,
        ok=False,
        reason=error.reason,
        message=error.message,
        retry_after=error.retry_after,
        created=created,
    )
