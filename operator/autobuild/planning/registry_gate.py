"""The registry side of the decision: which registry checks a reconcile needs, and what their
answers mean for Jobs and status. Pure; the checks are :mod:`autobuild.planning.effects`, the
controller runs them (:mod:`autobuild.registry.operations`) and hands their results back in the
snapshot.

- repository settings (visibility, short description): applied when spec.image or its push
  Secret changes, independently of builds;
- push preflight: before any Job is created, may the push Secret push to the repository?
- digest verification: after a build succeeded, does every tag carry the digest Kaniko reported?
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from autobuild.api.conditions import Reason
from autobuild.api.models import AutomatedBuild, BuildPhase, BuildRecord, RepositoryStatus
from autobuild.planning.effects import (
    PREFLIGHT,
    SETTINGS,
    VERIFY,
    ApplyRepositorySettings,
    CheckPush,
    RegistryRequest,
    RegistryResult,
    VerifyDigests,
)

# How long an answer stands before it is asked again.
_FRESH_OK: Final = timedelta(minutes=10)
_FRESH_FAILED: Final = timedelta(seconds=30)
RETRY_SECONDS: Final = 30.0
# Repository settings that could not be applied are tried again this often: a registry that
# does not answer must not cost one request per object every few seconds.
SETTINGS_RETRY: Final = timedelta(minutes=5)
# Settings outcomes that a later try may change (the registry was away, rate limits, Harbor's
# repository that exists only after the first push).
_SETTINGS_RETRY: Final = frozenset(
    {Reason.REGISTRY_UNREACHABLE, Reason.RATE_LIMITED, Reason.REPOSITORY_PENDING}
)
# Preflight outcomes that mean "do not start Kaniko".
# An untrusted certificate is no passing outage: Kaniko would fail the same way.
_PUSH_REFUSED: Final = frozenset(
    {
        Reason.PUSH_SECRET_INVALID,
        Reason.PUSH_UNAUTHORIZED,
        Reason.REGISTRY_CERTIFICATE_UNTRUSTED,
        Reason.CA_SECRET_INVALID,
    }
)


def _fingerprint(*parts: object) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def image_fingerprint(automated_build: AutomatedBuild, secret_version: str) -> str:
    """What repository settings depend on: spec.image and the versions of its Secrets (never
    their content)."""
    spec_image = automated_build.spec.image
    # Without a caSecret the fingerprint is the one it was before caSecret existed (no
    # re-apply of every repository's settings on upgrade).
    unset = {"ca_secret"} if spec_image.ca_secret is None else None
    image = spec_image.model_dump(mode="json", exclude=unset)
    caches = [rule.build_cache for rule in automated_build.spec.tags]
    return _fingerprint(image, caches, secret_version)


def _preflight(
    repository: str, push_secret: str | None, ca_secret: str | None, secret_version: str
) -> CheckPush:
    # Without a caSecret the id is the one it was before caSecret existed.
    parts = (repository, push_secret) + ((ca_secret,) if ca_secret is not None else ())
    return CheckPush(_fingerprint(*parts, secret_version))


def _fresh(result: RegistryResult | None, now: datetime) -> bool:
    if result is None:
        return False
    return now - result.at < (_FRESH_OK if result.ok else _FRESH_FAILED)


@dataclass(frozen=True)
class SettingsOutcome:
    """``status.repository`` to write (None: keep the old), and a request if one is needed."""

    repository: RepositoryStatus | None
    request: ApplyRepositorySettings | None
    requeue_after: float | None = None


def repository_settings(
    fingerprint: str,
    previous: RepositoryStatus | None,
    results: Mapping[str, RegistryResult],
    now: datetime,
) -> SettingsOutcome:
    """Apply the repository settings once per fingerprint; retry what may pass later."""
    if previous is not None and previous.observed == fingerprint:
        return SettingsOutcome(None, None)
    request = ApplyRepositorySettings(fingerprint)
    result = results.get(request.id)
    retry = result is not None and result.reason in _SETTINGS_RETRY
    if result is None or (retry and now - result.at >= SETTINGS_RETRY):
        return SettingsOutcome(None, request)
    wait = (result.at + SETTINGS_RETRY - now).total_seconds() if retry else None
    if retry and previous is not None and previous.reason == result.reason:
        # The same trouble as status already says: its error text varies from try to try
        # (connection refused, reset, timeouts), and a status that churns costs a write each.
        return SettingsOutcome(None, None, wait)
    state = RepositoryStatus.model_validate(
        {**(result.status or {}), "observed": "" if retry else fingerprint}
    )
    return SettingsOutcome(state, None, wait)


def created_repositories(body: Mapping[str, Any]) -> frozenset[str]:
    """The repositories status records as created by autobuild (``status.repository`` and its
    ``cache``): the ones whose visibility and description autobuild may change without the push
    Secret's ``autobuild.dev/manage-existing-repos``."""
    try:
        found = RepositoryStatus.model_validate((body.get("status") or {}).get("repository") or {})
    except ValueError:
        return frozenset()
    states = [found, *([found.cache] if found.cache is not None else [])]
    return frozenset(state.name for state in states if state.created and state.name)


def visibility_condition(repository: RepositoryStatus | None) -> tuple[str, str, str]:
    """The VisibilityApplied condition: (status, reason, message)."""
    if repository is None:
        return ("Unknown", Reason.APPLYING, "visibility and description not applied yet")
    if not repository.reason:
        what = ", ".join(repository.applied) or "nothing to change"
        return ("True", Reason.APPLIED, f"{repository.name}: {what}")
    return ("False", repository.reason, repository.message)


@dataclass(frozen=True)
class PreflightOutcome:
    """Whether new Jobs may be created now; a request or a refusal otherwise."""

    proceed: bool
    request: CheckPush | None = None
    refusal: tuple[str, str] | None = None
    requeue_after: float | None = None


def push_preflight(
    automated_build: AutomatedBuild,
    secret_version: str,
    results: Mapping[str, RegistryResult],
    now: datetime,
) -> PreflightOutcome:
    """Before Kaniko runs: the push Secret must be able to push (checked at most every ten
    minutes per Secret version). An unreachable registry does not hold builds back."""
    image = automated_build.spec.image
    request = _preflight(image.repository, image.push_secret, image.ca_secret, secret_version)
    result = results.get(request.id)
    if not _fresh(result, now):
        return PreflightOutcome(False, request)
    assert result is not None
    if result.reason in _PUSH_REFUSED:
        return PreflightOutcome(False, None, (result.reason, result.message), RETRY_SECONDS)
    return PreflightOutcome(True)


def digest_checks(
    records: Sequence[BuildRecord],
    previous: Mapping[str, BuildRecord],
    results: Mapping[str, RegistryResult],
) -> tuple[list[BuildRecord], list[RegistryRequest], list[tuple[str, str]]]:
    """Per-tag digests of succeeded builds: carried over once checked, else asked for.
    Returns the records, the checks to run, and (reason, message) of new mismatches."""
    out: list[BuildRecord] = []
    requests: list[RegistryRequest] = []
    mismatches: list[tuple[str, str]] = []
    for record in records:
        if record.phase is not BuildPhase.SUCCEEDED or not record.digest:
            out.append(record)
            continue
        before = previous.get(record.id)
        if before is not None and (before.digests or before.reason == Reason.DIGEST_MISMATCH):
            out.append(
                record.model_copy(
                    update={
                        "digests": before.digests,
                        "reason": before.reason,
                        "message": before.message,
                    }
                )
            )
            continue
        request = VerifyDigests(record.job_name, tuple(record.tags), record.digest)
        result = results.get(request.id)
        if result is None:
            requests.append(request)
            out.append(record)
            continue
        digests = dict(result.digests or {tag: None for tag in record.tags})
        update: dict[str, Any] = {"digests": digests}
        if result.reason == Reason.DIGEST_MISMATCH:
            update |= {"reason": result.reason, "message": result.message}
            mismatches.append((result.reason, f"build {record.id}: {result.message}"))
        out.append(record.model_copy(update=update))
    return out, requests, mismatches


__all__ = [
    "PREFLIGHT",
    "RETRY_SECONDS",
    "SETTINGS",
    "SETTINGS_RETRY",
    "VERIFY",
    "PreflightOutcome",
    "RegistryRequest",
    "RegistryResult",
    "SettingsOutcome",
    "created_repositories",
    "digest_checks",
    "image_fingerprint",
    "push_preflight",
    "repository_settings",
    "visibility_condition",
]
