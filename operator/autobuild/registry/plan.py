"""Repository settings as a pure plan: desired vs observed → the API calls to make.

Docker Hub (per-repository ``is_private`` and ``description``): create the repository when it
is missing, otherwise set whichever of privacy and description differ, nothing when both match.
Harbor (visibility per *project*, description per repository): create the project when missing;
change its visibility only when it holds no repository but ours (changing it would expose or
hide other people's images: that is a ``VisibilityConflict`` instead); set the repository's
description once the repository exists (Harbor creates it on the first push).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from autobuild.api.conditions import Reason


@dataclass(frozen=True)
class Desired:
    """What spec.image asks for."""

    private: bool
    description: str


@dataclass(frozen=True)
class Observed:
    """A repository as the registry's API shows it."""

    private: bool
    description: str


@dataclass(frozen=True)
class CreateRepository:
    """Docker Hub: create the repository with its privacy and description in one call."""

    private: bool
    description: str


@dataclass(frozen=True)
class SetPrivacy:
    """Docker Hub: make the repository private or public."""

    private: bool


@dataclass(frozen=True)
class SetDescription:
    """Set the repository's short description."""

    description: str


@dataclass(frozen=True)
class CreateProject:
    """Harbor: create the project, public or private."""

    public: bool


@dataclass(frozen=True)
class SetProjectVisibility:
    """Harbor: make the project public or private."""

    public: bool


Step = CreateRepository | SetPrivacy | SetDescription | CreateProject | SetProjectVisibility


def describe(step: Step) -> str:
    """A short text of one call for status (``applied``) and Events."""
    match step:
        case CreateRepository(private=private):
            return f"created the repository ({'Private' if private else 'Public'})"
        case SetPrivacy(private=private):
            return f"set visibility {'Private' if private else 'Public'}"
        case SetDescription():
            return "set the short description"
        case CreateProject(public=public):
            return f"created the project ({'Public' if public else 'Private'})"
        case SetProjectVisibility(public=public):
            return f"set the project's visibility {'Public' if public else 'Private'}"


def plan_docker_hub(desired: Desired, observed: Observed | None) -> tuple[Step, ...]:
    """The Docker Hub calls that bring the repository to ``desired`` (none when it is there)."""
    if observed is None:
        return (CreateRepository(desired.private, desired.description),)
    steps: list[Step] = []
    if observed.private != desired.private:
        steps.append(SetPrivacy(desired.private))
    if observed.description != desired.description:
        steps.append(SetDescription(desired.description))
    return tuple(steps)


@dataclass(frozen=True)
class HarborProject:
    """A Harbor project: its visibility and the repositories it holds (full names)."""

    public: bool
    repositories: tuple[str, ...]


@dataclass(frozen=True)
class HarborPlan:
    """Harbor calls to make, and what cannot be done now (reason and message, else empty)."""

    steps: tuple[Step, ...]
    reason: str = ""
    message: str = ""


def plan_harbor(
    desired: Desired,
    project_name: str,
    project: HarborProject | None,
    repository: Observed | None,
    ours: Iterable[str],
) -> HarborPlan:
    """The Harbor calls for ``desired``; ``ours`` are the full names this AutomatedBuild owns
    in the project (the image and its build cache)."""
    public = not desired.private
    if project is None:
        return HarborPlan(
            (CreateProject(public),),
            Reason.REPOSITORY_PENDING,
            "the repository appears with the first push; its description is set then",
        )
    steps: list[Step] = []
    reason = message = ""
    if project.public != public:
        others = sorted(set(project.repositories) - set(ours))
        if others:
            reason = Reason.VISIBILITY_CONFLICT
            shown = ", ".join(others[:3]) + (" and more" if len(others) > 3 else "")
            message = (
                f"Harbor sets visibility per project: project {project_name} is "
                f"{'Public' if project.public else 'Private'} and holds other repositories "
                f"({shown}); autobuild does not change it for them. Change the project's "
                "visibility in Harbor or use a project of its own"
            )
        else:
            steps.append(SetProjectVisibility(public))
    if repository is None:
        if not reason:
            reason = Reason.REPOSITORY_PENDING
            message = "the repository appears with the first push; its description is set then"
    elif repository.description != desired.description:
        steps.append(SetDescription(desired.description))
    return HarborPlan(tuple(steps), reason, message)
