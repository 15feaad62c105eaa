"""The registry side in the operator's terms: an AutomatedBuild's spec, its push Secret, settings.

These three calls are what the controller wires in; each never raises for what a registry or a
Secret says, and returns a result whose ``reason``/``message`` go into a condition, an Event or
the build's status entry. ``push_secret`` is the Secret as the operator keeps it (type and
decoded values: the controller's ``SecretView``, or :func:`decode_secret` of an API object), or
None when it does not exist; its credentials are used only for the registry named in
spec.image.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import aiohttp

from autobuild.api.models import AutomatedBuildSpec, ImageSpec
from autobuild.api.registries import is_docker_hub, normalize_registry
from autobuild.planning.job import REGISTRY_CA_KEY, cache_repo
from autobuild.registry.digests import DigestVerification, verify_digests
from autobuild.registry.dockerconfig import (
    Credentials,
    PushSecretError,
    SecretLike,
    credentials_from_secret,
)
from autobuild.registry.preflight import PushCheck, check_push
from autobuild.registry.repository import (
    DOCKER_HUB_KIND,
    PLAIN_KIND,
    RepositorySettingsResult,
    apply_repository_settings,
)
from autobuild.settings import BuildSettings

CACHE_DESCRIPTION_LIMIT: Final = 100


def image_credentials(image: ImageSpec, push_secret: SecretLike | None) -> Credentials | None:
    """The push Secret's credentials for spec.image's registry; None without a pushSecret.

    Raises :class:`PushSecretError` (reason ``PushSecretInvalid``) when spec.image names a
    pushSecret that is missing, malformed or has no entry for the registry.
    """
    if image.push_secret is None:
        return None
    return credentials_from_secret(push_secret, image.push_secret, image.registry)


def image_ca_bundle(image: ImageSpec, secrets: Mapping[str, SecretLike | None]) -> str | None:
    """The PEM of spec.image.caSecret's ``ca.crt`` (``secrets``: the referenced Secrets by
    name); None without a caSecret, or when the Secret or key is missing (the decision reports
    that as SecretNotFound / SecretKeyMissing)."""
    if image.ca_secret is None:
        return None
    secret = secrets.get(image.ca_secret)
    return None if secret is None else secret.data.get(REGISTRY_CA_KEY)


async def preflight(
    image: ImageSpec,
    push_secret: SecretLike | None,
    settings: BuildSettings,
    *,
    session: aiohttp.ClientSession | None = None,
) -> PushCheck:
    """Before creating a Kaniko Job: may the push Secret push to spec.image's repository?

    ``PushSecretInvalid`` / ``PushUnauthorized``: create no Job (Stalled until the Secret or
    the spec changes). ``RegistryUnreachable``: transient, try again later.
    """
    try:
        credentials = image_credentials(image, push_secret)
    except PushSecretError as error:
        return PushCheck(False, error.reason, error.message)
    return await check_push(
        image.registry,
        f"{image.namespace}/{image.name}",
        credentials,
        insecure_registries=settings.insecure_registries,
        internal_realm_hosts=settings.internal_realm_hosts,
        session=session,
    )


async def verify_build(
    image: ImageSpec,
    tags: Sequence[str],
    kaniko_digest: str,
    push_secret: SecretLike | None,
    settings: BuildSettings,
    *,
    session: aiohttp.ClientSession | None = None,
) -> DigestVerification:
    """After a build succeeded: does every pushed tag carry the digest Kaniko reported?

    ``DigestMismatch`` marks the build and raises an Event; ``as_status()`` is the per-tag
    digests for the build's status entry.
    """
    try:
        credentials = image_credentials(image, push_secret)
    except PushSecretError as error:
        return DigestVerification(kaniko_digest, (), False, error.reason, error.message)
    return await verify_digests(
        image.registry,
        f"{image.namespace}/{image.name}",
        tags,
        kaniko_digest,
        credentials,
        insecure_registries=settings.insecure_registries,
        internal_realm_hosts=settings.internal_realm_hosts,
        session=session,
    )


@dataclass(frozen=True)
class ImageSettingsResult:
    """The image repository's settings and, with buildCache, the cache repository's."""

    image: RepositorySettingsResult
    cache: RepositorySettingsResult | None

    def as_status(self) -> dict[str, object]:
        """``status.repository``: the image's fields plus ``cache`` (its own fields)."""
        status = self.image.as_status()
        if self.cache is not None:
            status["cache"] = self.cache.as_status()
        return status


async def apply_image_settings(
    spec: AutomatedBuildSpec,
    push_secret: SecretLike | None,
    settings: BuildSettings,
    *,
    created: Collection[str] = (),
    manage_existing: bool = False,
    session: aiohttp.ClientSession | None = None,
) -> ImageSettingsResult:
    """Apply spec.image's visibility and short description (on create and on spec changes).

    With ``buildCache`` on any rule, the cache repository gets the image's visibility too
    (created Private before any build pushes to it, so a Private image's layers never land in
    a public repository). Independent of builds and of the push preflight. ``created``: the
    full names status records as created by autobuild; any other existing repository is left
    as it is unless ``manage_existing`` (the push Secret's annotation) says otherwise.
    """
    image = spec.image
    repository = f"{image.namespace}/{image.name}"
    cache = _cache_repository(spec)
    try:
        credentials = image_credentials(image, push_secret)
    except PushSecretError as error:
        kind = DOCKER_HUB_KIND if is_docker_hub(image.registry) else PLAIN_KIND
        failed = RepositorySettingsResult(
            f"{normalize_registry(image.registry)}/{repository}",
            kind,
            ok=False,
            reason=error.reason,
            message=error.message,
        )
        return ImageSettingsResult(failed, None)
    owned = [repository] + ([cache] if cache else [])

    async def apply(name: str, description: str) -> RepositorySettingsResult:
        return await apply_repository_settings(
            image.registry,
            name,
            image.visibility.value,
            description,
            credentials,
            dockerhub_url=settings.dockerhub_url,
            insecure_registries=settings.insecure_registries,
            also_owned=[other for other in owned if other != name],
            created=f"{normalize_registry(image.registry)}/{name}" in created,
            manage_existing=manage_existing,
            session=session,
        )

    image_result = await apply(repository, image.short_description)
    cache_result = None if cache is None else await apply(cache, _cache_description(repository))
    return ImageSettingsResult(image_result, cache_result)


def _cache_repository(spec: AutomatedBuildSpec) -> str | None:
    """The cache repository's path (without the registry) when any rule uses the cache."""
    if not any(rule.build_cache for rule in spec.tags):
        return None
    return cache_repo(spec).split("/", 1)[1]


def _cache_description(repository: str) -> str:
    text = f"Build cache of {repository} (autobuild)"
    if len(text) <= CACHE_DESCRIPTION_LIMIT:
        return text
    return text[: CACHE_DESCRIPTION_LIMIT - 1] + "…"
