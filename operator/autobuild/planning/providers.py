"""The git hosting providers the operator links accounts on: where their webhooks and commit
statuses are decided. The commit-status and webhook steps speak to a :class:`HostingProvider`;
GitHub's is :class:`GitHubProvider` (planning/hooks.py). Bitbucket and GitLab add a provider
here and a client at the edge, not a copy of the steps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from autobuild.api.models import AutomatedBuild, BuildRecord, WebhookStatus
from autobuild.planning import hooks
from autobuild.planning.snapshot import SecretView
from autobuild.settings import GitHubSettings


class HostingProvider(Protocol):
    """What a provider's linked account decides: its API's calls are effects, its answers are
    read back by request id (planning/hooks.py for GitHub's)."""

    def repository(self, automated_build: AutomatedBuild) -> str | None:
        """The repository on this provider's API that the linked token may go to (None: the
        object's repository is not on it)."""
        ...

    def generated_secret_name(self, automated_build: AutomatedBuild) -> str | None:
        """The Secret the operator creates for the hook secret (None: it creates none)."""
        ...

    def hook_secret_owned(self, automated_build: AutomatedBuild, view: SecretView | None) -> bool:
        """Whether the hook secret's Secret (None: absent) may be used."""
        ...

    def involved(self, recorded: WebhookStatus | None, finalizers: Sequence[str] | None) -> bool:
        """Whether the object's webhook needs deciding at all."""
        ...

    def webhook(self, world: hooks.HookWorld) -> hooks.HookOutcome:
        """The hook the object should have, and the calls and writes to get there."""
        ...

    def commit_statuses(
        self,
        automated_build: AutomatedBuild,
        repository: str | None,
        token: str | None,
        records: Sequence[BuildRecord],
        previous: Mapping[str, BuildRecord],
        results: Mapping[str, hooks.GitHubResult],
        now: datetime,
    ) -> tuple[list[BuildRecord], list[hooks.GitHubRequest], list[hooks.Note], float | None]:
        """Each build's commit status: records, calls, Events and a requeue."""
        ...


@dataclass(frozen=True)
class GitHubProvider:
    """GitHub and GitHub Enterprise (``AUTOBUILD_GITHUB_URL``): hooks and commit statuses."""

    settings: GitHubSettings

    def repository(self, automated_build: AutomatedBuild) -> str | None:
        """``OWNER/NAME`` when the repository is on the GitHub the settings serve."""
        return hooks.github_repository(automated_build, self.settings)

    def generated_secret_name(self, automated_build: AutomatedBuild) -> str | None:
        """The generated hook secret's Secret, when the operator registers hooks for it."""
        return hooks.generated_secret_name(automated_build, self.settings)

    def hook_secret_owned(self, automated_build: AutomatedBuild, view: SecretView | None) -> bool:
        """Only a generated Secret the operator created for this object may be used."""
        return hooks.hook_secret_owned(automated_build, view, self.settings)

    def involved(self, recorded: WebhookStatus | None, finalizers: Sequence[str] | None) -> bool:
        """Registration is on, or a hook or its finalizer is left from when it was."""
        return hooks.involved(self.settings, recorded, finalizers)

    def webhook(self, world: hooks.HookWorld) -> hooks.HookOutcome:
        """GitHub's hook lifecycle: register, refresh, re-create, remove."""
        return hooks.webhook(world, self.settings)

    def commit_statuses(
        self,
        automated_build: AutomatedBuild,
        repository: str | None,
        token: str | None,
        records: Sequence[BuildRecord],
        previous: Mapping[str, BuildRecord],
        results: Mapping[str, hooks.GitHubResult],
        now: datetime,
    ) -> tuple[list[BuildRecord], list[hooks.GitHubRequest], list[hooks.Note], float | None]:
        """GitHub commit statuses, linked to the build URL template of the settings."""
        return hooks.commit_statuses(
            automated_build,
            repository,
            token,
            records,
            previous,
            results,
            now,
            self.settings.build_url_template,
        )


__all__ = ["GitHubProvider", "HostingProvider"]
