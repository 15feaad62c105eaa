"""The operator's one vocabulary: every condition type and every reason it writes (CamelCase, as
the Kubernetes API conventions; declared once, as Flux's ``api/v1/condition_types.go``).

The CRD's description of ``status.conditions``, docs/troubleshooting.md (a unit test keeps it in
step) and every module take their words from here; no other module spells a reason.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class ConditionType(StrEnum):
    """The types of ``status.conditions``, each with its polarity: "positive" means ``True`` is
    the healthy state, "negative" (abnormal-true, kstatus) means ``True`` needs attention."""

    # Positive. The object can build and its newest build did not fail; kstatus reads
    # True as Current and False or Unknown as InProgress.
    READY = "Ready"
    # Negative. Builds are queued or running; kstatus reads True as InProgress.
    RECONCILING = "Reconciling"
    # Negative. Only a change of the spec or of a Secret fixes it (reasons in STALLED); kstatus
    # reads True as Failed.
    STALLED = "Stalled"
    # Positive. The registry's repository has the spec's visibility and short description.
    VISIBILITY_APPLIED = "VisibilityApplied"
    # Positive. The GitHub push webhook the operator registered exists and its last delivery
    # succeeded; only on objects whose webhook the operator registers.
    WEBHOOK_READY = "WebhookReady"


class Reason(StrEnum):
    """Why an AutomatedBuild, one of its builds or one of its conditions is where it is: every
    reason a condition, a build record, ``status.lastTrigger``, an Event or a command carries."""

    # Ready / Stalled
    READY = "Ready"
    VALID = "Valid"
    IDLE = "Idle"
    BUILD_RUNNING = "BuildRunning"
    BUILD_SUCCEEDED = "BuildSucceeded"
    BUILD_FAILED = "BuildFailed"
    INVALID_SPEC = "InvalidSpec"
    SECRET_NOT_FOUND = "SecretNotFound"  # noqa: S105 (a reason, not a secret)
    SECRET_KEY_MISSING = "SecretKeyMissing"  # noqa: S105
    CREDENTIALS_NOT_ALLOWED = "CredentialsNotAllowed"
    SOURCE_UNREACHABLE = "SourceUnreachable"
    SOURCE_TOO_LARGE = "SourceTooLarge"
    PUSH_SECRET_INVALID = "PushSecretInvalid"  # noqa: S105
    REGISTRY_UNREACHABLE = "RegistryUnreachable"
    REGISTRY_CERTIFICATE_UNTRUSTED = "RegistryCertificateUntrusted"
    CA_SECRET_INVALID = "CASecretInvalid"  # noqa: S105
    DIGEST_MISMATCH = "DigestMismatch"
    # VisibilityApplied and status.repository (the registry's repository settings)
    APPLIED = "Applied"
    APPLYING = "Applying"
    VISIBILITY_UNSUPPORTED = "VisibilityUnsupported"
    # Harbor: the project's visibility differs and the project holds other repositories.
    VISIBILITY_CONFLICT = "VisibilityConflict"
    # Harbor: a repository exists only after its first push; its description is set then.
    REPOSITORY_PENDING = "RepositoryPending"
    REPOSITORY_UNAUTHORIZED = "RepositoryUnauthorized"
    # The repository (Docker Hub) or Harbor project existed before autobuild and the push
    # Secret does not allow managing existing repositories: its visibility and description stay.
    REPOSITORY_NOT_MANAGED = "RepositoryNotManaged"
    # Docker Hub's or GitHub's rate limit.
    RATE_LIMITED = "RateLimited"
    REPOSITORY_SETTINGS_FAILED = "RepositorySettingsFailed"
    # WebhookReady and the GitHub Events
    REGISTERING = "Registering"
    REGISTERED = "Registered"
    WEBHOOK_REGISTERED = "WebhookRegistered"
    WEBHOOK_REMOVED = "WebhookRemoved"
    WEBHOOK_NOT_REMOVED = "WebhookNotRemoved"
    WEBHOOK_GONE = "WebhookGone"
    WEBHOOK_DELIVERY_FAILED = "WebhookDeliveryFailed"
    WEBHOOK_INACTIVE = "WebhookInactive"
    WEBHOOK_SECRET_NOT_OWNED = "WebhookSecretNotOwned"  # noqa: S105 (a reason, not a secret)
    COMMIT_STATUS_FAILED = "CommitStatusFailed"
    # The API server refused one of the operator's own writes (RBAC).
    FORBIDDEN = "Forbidden"
    # GitHub's and git's refusals (WebhookReady, commit statuses, the GitHub commands).
    AUTHENTICATION_FAILED = "AuthenticationFailed"
    NOT_FOUND = "NotFound"
    NOT_A_FILE = "NotAFile"
    WEBHOOK_FORBIDDEN = "WebhookForbidden"
    WEBHOOK_LIMIT_REACHED = "WebhookLimitReached"
    STATUS_FORBIDDEN = "StatusForbidden"
    UNREACHABLE = "Unreachable"
    REJECTED = "Rejected"
    # git ls-remote or a fetch did not finish in time (a trigger URL call's Warning Event).
    TIMEOUT = "Timeout"
    # Plain git (the dockerfile command): the commit has no such path, or the server no such commit.
    PATH_NOT_FOUND = "PathNotFound"
    COMMIT_NOT_FOUND = "CommitNotFound"
    # Triggers (Events and status.lastTrigger)
    TRIGGERED = "Triggered"
    INVALID_TRIGGER = "InvalidTrigger"
    NOTHING_TO_BUILD = "NothingToBuild"
    # A webhook push refused as a possible replay (planning/replay.py): an Event.
    STALE_PUSH = "StalePush"
    # Builds (status.builds[].reason and Events)
    BUILD_STARTED = "BuildStarted"
    # The Warning Events of a finished build that did not succeed (BUILD_FAILED above too).
    BUILD_CANCELLED = "BuildCancelled"
    BUILD_TIMED_OUT = "BuildTimedOut"
    CANCELLED = "Cancelled"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    OOM_KILLED = "OOMKilled"
    GIT_AUTH_FAILED = "GitAuthFailed"
    GIT_CLONE_FAILED = "GitCloneFailed"
    PUSH_UNAUTHORIZED = "PushUnauthorized"
    DOCKERFILE_NOT_FOUND = "DockerfileNotFound"
    DOCKERFILE_INVALID = "DockerfileInvalid"
    CONTEXT_FILE_MISSING = "ContextFileMissing"
    PUSH_FAILED = "PushFailed"
    BASE_IMAGE_PULL_FAILED = "BaseImagePullFailed"
    BUILD_STEP_FAILED = "BuildStepFailed"
    IMAGE_PULL_FAILED = "ImagePullFailed"
    UNSCHEDULABLE = "Unschedulable"
    POD_NOT_CREATED = "PodNotCreated"
    ERROR = "Error"


# Problems that only a change of the spec or of a Secret can fix: kstatus reads them as Failed.
STALLED: Final = frozenset(
    {
        Reason.INVALID_SPEC,
        Reason.SECRET_NOT_FOUND,
        Reason.SECRET_KEY_MISSING,
        Reason.CREDENTIALS_NOT_ALLOWED,
        Reason.PUSH_SECRET_INVALID,
        Reason.PUSH_UNAUTHORIZED,
        Reason.REGISTRY_CERTIFICATE_UNTRUSTED,
        Reason.CA_SECRET_INVALID,
    }
)
