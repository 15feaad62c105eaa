"""Condition reasons of the registry side, for status conditions, build records and Events."""

from __future__ import annotations

from typing import Final

# Push preflight (before a Kaniko Job is created).
PUSH_SECRET_INVALID: Final = "PushSecretInvalid"  # noqa: S105 (a reason)
PUSH_UNAUTHORIZED: Final = "PushUnauthorized"
# The registry (or its token endpoint, or Docker Hub's API) did not answer: transient, not fatal.
REGISTRY_UNREACHABLE: Final = "RegistryUnreachable"
# The registry's TLS certificate does not verify against the system's CAs and spec.image.caSecret.
REGISTRY_CERTIFICATE_UNTRUSTED: Final = "RegistryCertificateUntrusted"
# spec.image.caSecret's ca.crt is not PEM certificates.
CA_SECRET_INVALID: Final = "CASecretInvalid"  # noqa: S105 (a reason)

# Digest verification (after a build succeeded).
DIGEST_MISMATCH: Final = "DigestMismatch"

# Repository settings (visibility and short description).
VISIBILITY_UNSUPPORTED: Final = "VisibilityUnsupported"
# Harbor: the project's visibility differs and the project holds other repositories.
VISIBILITY_CONFLICT: Final = "VisibilityConflict"
# Harbor: a repository exists only after its first push; its description is set then.
REPOSITORY_PENDING: Final = "RepositoryPending"
REPOSITORY_UNAUTHORIZED: Final = "RepositoryUnauthorized"
# The repository (Docker Hub) or Harbor project existed before autobuild and the push Secret
# does not allow managing existing repositories: its visibility and description stay as they are.
REPOSITORY_NOT_MANAGED: Final = "RepositoryNotManaged"
RATE_LIMITED: Final = "RateLimited"
REPOSITORY_SETTINGS_FAILED: Final = "RepositorySettingsFailed"
