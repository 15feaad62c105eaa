"""Every condition and Event reason the operator writes, declared once (CamelCase, as the
Kubernetes API conventions and Shipwright's reason constants)."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Reason(StrEnum):
    """Why an AutomatedBuild or one of its builds is where it is."""

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
    # VisibilityApplied
    APPLIED = "Applied"
    APPLYING = "Applying"
    # WebhookReady and the GitHub Events (GitHub's own refusals: autobuild.sources.github)
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
    FORBIDDEN = "Forbidden"
    # Triggers (Events and status.lastTrigger)
    TRIGGERED = "Triggered"
    INVALID_TRIGGER = "InvalidTrigger"
    NOTHING_TO_BUILD = "NothingToBuild"
    # A webhook push refused as a possible replay (planning/replay.py): an Event.
    STALE_PUSH = "StalePush"
    # Builds (status.builds[].reason and Events)
    BUILD_STARTED = "BuildStarted"
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
