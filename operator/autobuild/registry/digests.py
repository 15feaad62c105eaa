"""Digest verification: each pushed tag's manifest digest, read from the registry, against Kaniko's.

``HEAD /v2/NAME/manifests/TAG`` with the ``Accept`` of every manifest kind a build can push (OCI
index and manifest, Docker v2 manifest list and manifest) answers ``Docker-Content-Digest``;
a registry that leaves that header out gets a ``GET`` and the sha256 of the bytes it returns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import aiohttp

from autobuild.api.conditions import Reason
from autobuild.registry.client import (
    DEFAULT_TIMEOUT_S,
    RegistryAuthError,
    RegistryClient,
    RegistryUnreachableError,
    registry_client,
)
from autobuild.registry.dockerconfig import Credentials

MANIFEST_ACCEPT: Final = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


@dataclass(frozen=True)
class TagDigest:
    """One tag as found in the registry: its digest (None: the tag does not exist)."""

    tag: str
    digest: str | None


@dataclass(frozen=True)
class DigestVerification:
    """Per-tag digests compared with Kaniko's; ``reason`` is ``DigestMismatch`` when any differs."""

    expected: str
    tags: tuple[TagDigest, ...]
    ok: bool
    reason: str = ""
    message: str = ""

    def as_status(self) -> dict[str, str | None]:
        """Tag → digest found, for the build's status entry."""
        return {entry.tag: entry.digest for entry in self.tags}


def compare_digests(expected: str, found: Sequence[TagDigest]) -> DigestVerification:
    """Pure: every tag must carry exactly the digest Kaniko reported."""
    wrong = [entry for entry in found if entry.digest != expected]
    if not wrong:
        return DigestVerification(expected, tuple(found), ok=True)
    details = "; ".join(
        f"{entry.tag}: {'not found' if entry.digest is None else entry.digest}" for entry in wrong
    )
    return DigestVerification(
        expected,
        tuple(found),
        ok=False,
        reason=Reason.DIGEST_MISMATCH,
        message=f"Kaniko reported {expected}, the registry has {details}",
    )


async def read_tag_digests(
    registry: str,
    repository: str,
    tags: Iterable[str],
    credentials: Credentials | None,
    *,
    insecure_registries: Iterable[str] = (),
    internal_realm_hosts: Iterable[str] = (),
    session: aiohttp.ClientSession | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> tuple[TagDigest, ...]:
    """The manifest digest of each tag of ``registry``/``repository`` (pull access).

    Raises :class:`RegistryUnreachableError` or :class:`RegistryAuthError` when the registry
    cannot be asked at all.
    """
    async with registry_client(
        registry,
        repository,
        credentials,
        insecure_registries=insecure_registries,
        internal_realm_hosts=internal_realm_hosts,
        session=session,
        timeout=timeout,
    ) as client:
        return tuple([TagDigest(tag, await _digest(client, tag)) for tag in tags])


async def verify_digests(
    registry: str,
    repository: str,
    tags: Sequence[str],
    expected: str,
    credentials: Credentials | None,
    *,
    insecure_registries: Iterable[str] = (),
    internal_realm_hosts: Iterable[str] = (),
    session: aiohttp.ClientSession | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> DigestVerification:
    """Read the digests of ``tags`` and compare them with Kaniko's ``expected`` digest.

    Kaniko pushes one image under every ``--destination``, so every tag must carry
    ``expected``. An unreachable registry or a refused pull gives ``ok=False`` with reason
    ``RegistryUnreachable`` / ``PushUnauthorized`` and no tags: verify again later.
    """
    try:
        found = await read_tag_digests(
            registry,
            repository,
            tags,
            credentials,
            insecure_registries=insecure_registries,
            internal_realm_hosts=internal_realm_hosts,
            session=session,
            timeout=timeout,
        )
    except RegistryUnreachableError as error:
        return DigestVerification(expected, (), False, Reason.REGISTRY_UNREACHABLE, str(error))
    except RegistryAuthError as error:
        return DigestVerification(expected, (), False, Reason.PUSH_UNAUTHORIZED, str(error))
    return compare_digests(expected, found)


async def _digest(client: RegistryClient, tag: str) -> str | None:
    headers = {"Accept": MANIFEST_ACCEPT}
    head = await client.request("HEAD", f"manifests/{tag}", actions=("pull",), headers=headers)
    if head.status == 404:
        return None
    if head.status == 200 and head.headers.get("Docker-Content-Digest"):
        return head.headers["Docker-Content-Digest"]
    if head.status in (401, 403):
        raise RegistryAuthError(
            f"registry {client.registry} refused to read {client.repository}:{tag} "
            f"(HTTP {head.status})"
        )
    got = await client.request("GET", f"manifests/{tag}", actions=("pull",), headers=headers)
    if got.status == 404:
        return None
    if got.status != 200:
        raise RegistryUnreachableError(
            f"registry {client.registry} answered {got.error_text()} for {client.repository}:{tag}"
        )
    return "sha256:" + hashlib.sha256(got.body).hexdigest()
