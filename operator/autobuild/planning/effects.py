"""The effects a decision asks for beyond Kubernetes writes, one frozen type each, and their
answers. Pure: the controller runs each type with an executor of its own
(:mod:`autobuild.controller.executors`) and hands the answers back in the snapshot by ``id``.

An effect's ``id`` is its identity: what it is about, never a token or secret, so an answer
stays valid across passes (asking again is deduplicated by it) and memories keyed by it survive
an upgrade as long as these strings do not change. ``kind`` names the type in metrics.

- GitHub calls (:mod:`autobuild.planning.hooks`): :class:`RegisterHook`, :class:`RemoveHook`,
  :class:`RefreshHook`, :class:`PostCommitStatus`, answered by a :class:`GitHubResult`;
- registry checks (:mod:`autobuild.planning.registry_gate`): :class:`ApplyRepositorySettings`,
  :class:`CheckPush`, :class:`VerifyDigests`, answered by a :class:`RegistryResult`;
- :class:`RefusedWrite`: a Kubernetes write of the webhook path that the API server refused,
  kept beside the GitHub answers (the webhook decision reads both).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Final

from autobuild.api.conditions import Reason
from autobuild.api.models import WebhookStatus
from autobuild.planning.github import CommitStatus

HOOK: Final = "hook"
UNHOOK: Final = "unhook"
REFRESH: Final = "refresh"
STATUS: Final = "status"
SETTINGS: Final = "settings"
PREFLIGHT: Final = "preflight"
VERIFY: Final = "verify"
# Kubernetes writes of the webhook path that the API server may refuse (RBAC).
WRITE_SECRET: Final = "write:secret"  # noqa: S105 (a request id, not a secret)
WRITE_FINALIZERS: Final = "write:finalizers"


# GitHub ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RegisterHook:
    """Make the push webhook to ``url`` exist on ``repository``, signed with ``secret``; once
    per ``fingerprint`` (repository, URL, Secret versions)."""

    kind: ClassVar[str] = HOOK
    repository: str
    token: str = field(repr=False)
    url: str
    secret: str = field(repr=False)
    fingerprint: str

    @property
    def id(self) -> str:
        """The registration of this fingerprint."""
        return f"{HOOK}:{self.fingerprint}"


@dataclass(frozen=True)
class RemoveHook:
    """Delete the hook ``hook_id`` (None: the one pointing to ``url``) from ``repository``."""

    kind: ClassVar[str] = UNHOOK
    repository: str
    token: str = field(repr=False)
    url: str
    hook_id: int | None

    @property
    def id(self) -> str:
        """The hook, not the token: an answer stays valid when the token changes."""
        what = self.hook_id if self.hook_id is not None else self.url
        return f"{UNHOOK}:{self.repository}:{what}"


@dataclass(frozen=True)
class RefreshHook:
    """Read the hook ``hook_id`` again, conditional on ``etag``, once in period ``slot``."""

    kind: ClassVar[str] = REFRESH
    repository: str
    token: str = field(repr=False)
    url: str
    hook_id: int | None
    slot: int
    etag: str | None = None

    @staticmethod
    def prefix(hook_id: int | None) -> str:
        """What the ids of every refresh of one hook start with."""
        return f"{REFRESH}:{hook_id}:"

    @property
    def id(self) -> str:
        """This hook's read of this period."""
        return f"{self.prefix(self.hook_id)}{self.slot}"


@dataclass(frozen=True)
class PostCommitStatus:
    """Post ``status`` on commit ``sha`` of ``repository`` for the build ``build``."""

    kind: ClassVar[str] = STATUS
    repository: str
    token: str = field(repr=False)
    build: str
    sha: str
    status: CommitStatus

    @staticmethod
    def id_of(build: str, state: str) -> str:
        """The id of posting ``state`` for ``build`` (looked up before the status is made)."""
        return f"{STATUS}:{build}:{state}"

    @property
    def id(self) -> str:
        """One build's one state."""
        return self.id_of(self.build, self.status.state.value)


@dataclass(frozen=True)
class GitHubResult:
    """The answer to a GitHub call. ``attempts`` counts tries of the same id."""

    at: datetime
    ok: bool
    reason: str = ""
    message: str = ""
    retryable: bool = False
    retry_after: float | None = None
    attempts: int = 1
    # RegisterHook and RefreshHook: the hook as GitHub shows it (RefreshHook: None when not
    # modified).
    hook: WebhookStatus | None = None
    etag: str | None = None
    # RefreshHook: the hook is gone (deleted on GitHub, or no longer pointing to us).
    gone: bool = False
    # RemoveHook: a hook was deleted (False: there was none left to delete).
    deleted: bool = False


@dataclass(frozen=True)
class RefusedWrite(GitHubResult):
    """A Kubernetes write of the webhook path (``write``: :data:`WRITE_SECRET` or
    :data:`WRITE_FINALIZERS`) that the API server refused, e.g. for want of RBAC. It is an
    answer under its own ``id``, beside the GitHub answers: the webhook decision reads both, says
    why in WebhookReady, and tries the write again later. Never ok, never retryable."""

    write: str = field(kw_only=True)
    ok: bool = field(default=False, init=False)
    reason: str = field(default=Reason.FORBIDDEN, init=False)

    @property
    def id(self) -> str:
        """The write that was refused."""
        return self.write


# Registries -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ApplyRepositorySettings:
    """Apply visibility and description to the repository of spec.image, once per
    ``fingerprint`` (spec.image and its Secrets' versions)."""

    kind: ClassVar[str] = SETTINGS
    fingerprint: str

    @property
    def id(self) -> str:
        """The settings of this fingerprint."""
        return f"{SETTINGS}:{self.fingerprint}"


@dataclass(frozen=True)
class CheckPush:
    """May the push Secret push to the repository? ``fingerprint``: repository, Secret names
    and the push Secret's version."""

    kind: ClassVar[str] = PREFLIGHT
    fingerprint: str

    @property
    def id(self) -> str:
        """The check of this fingerprint."""
        return f"{PREFLIGHT}:{self.fingerprint}"


@dataclass(frozen=True)
class VerifyDigests:
    """Does every tag of the build Job ``job_name`` carry the ``digest`` Kaniko reported?"""

    kind: ClassVar[str] = VERIFY
    job_name: str
    tags: tuple[str, ...]
    digest: str

    @property
    def id(self) -> str:
        """One build's check."""
        return f"{VERIFY}:{self.job_name}"


@dataclass(frozen=True)
class RegistryResult:
    """The answer to a registry check."""

    at: datetime
    ok: bool
    reason: str = ""
    message: str = ""
    status: Mapping[str, Any] | None = None
    digests: Mapping[str, str | None] | None = None


GitHubRequest = RegisterHook | RemoveHook | RefreshHook | PostCommitStatus
RegistryRequest = ApplyRepositorySettings | CheckPush | VerifyDigests
