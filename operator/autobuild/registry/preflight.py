"""Push preflight: can these credentials push to this repository? Asked before a Kaniko Job.

The check is what go-containerregistry's ``CheckPushPermission`` (Kaniko's "checking push
permissions") does, with a readable answer: run the auth flow for ``push,pull``; when the token
is a JWT whose ``access`` claim leaves out ``push``, refuse at once (Docker Hub issues such
tokens instead of an error); then start a blob upload (``POST /v2/NAME/blobs/uploads/``), which
only a push-authorized client can, and cancel it at once. Nothing is left in the registry.
"""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass

import aiohttp

from autobuild.api.conditions import Reason
from autobuild.registry.client import (
    DEFAULT_TIMEOUT_S,
    Authorization,
    RegistryAuthError,
    RegistryCertificateError,
    RegistryClient,
    RegistryUnreachableError,
    registry_client,
)
from autobuild.registry.dockerconfig import Credentials

PUSH_ACTIONS = ("push", "pull")


@dataclass(frozen=True)
class PushCheck:
    """The preflight's answer: ok, or a reason (``PushUnauthorized``, ``RegistryUnreachable``,
    ``RegistryCertificateUntrusted``)."""

    ok: bool
    reason: str = ""
    message: str = ""


async def check_push(
    registry: str,
    repository: str,
    credentials: Credentials | None,
    *,
    insecure_registries: Iterable[str] = (),
    internal_realm_hosts: Iterable[str] = (),
    session: aiohttp.ClientSession | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> PushCheck:
    """Whether ``credentials`` may push to ``registry``/``repository`` (e.g. ``acme/app``).

    Never raises for registry answers: refusals are ``PushUnauthorized`` (the message names the
    registry, the repository and what was refused, never a credential); a registry that cannot
    be reached is ``RegistryUnreachable`` (transient: retry later, do not fail the build).
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
        target = f"{client.registry}/{repository}"
        try:
            authorization = await client.authorize(PUSH_ACTIONS)
            if authorization.granted is not None and "push" not in authorization.granted:
                granted = ", ".join(sorted(authorization.granted)) or "nothing"
                return PushCheck(
                    False,
                    Reason.PUSH_UNAUTHORIZED,
                    f"the registry's token for {target} grants {granted}, not push: "
                    + (
                        "the push secret's account may not push to this repository"
                        if credentials is not None
                        else "anonymous access cannot push (spec.image has no pushSecret)"
                    ),
                )
            upload = await client.send("POST", client.url("blobs/uploads/"), authorization)
            if upload.status == 202:
                await _cancel_upload(client, authorization, upload.headers.get("Location"))
                return PushCheck(True)
            return PushCheck(
                False,
                Reason.PUSH_UNAUTHORIZED,
                f"registry refused to start an upload to {target}: {upload.error_text()}",
            )
        except RegistryAuthError as error:
            return PushCheck(False, Reason.PUSH_UNAUTHORIZED, f"{error} (pushing to {target})")
        except RegistryCertificateError as error:
            # Not transient: Kaniko would fail on the same certificate, so no Job is started.
            return PushCheck(False, Reason.REGISTRY_CERTIFICATE_UNTRUSTED, str(error))
        except RegistryUnreachableError as error:
            return PushCheck(False, Reason.REGISTRY_UNREACHABLE, str(error))


async def _cancel_upload(
    client: RegistryClient, authorization: Authorization, location: str | None
) -> None:
    """Best effort: an abandoned upload is purged by the registry anyway."""
    if not location:
        return
    url = urllib.parse.urljoin(client.base_url + "/", location)
    if urllib.parse.urlsplit(url).netloc != urllib.parse.urlsplit(client.base_url).netloc:
        return  # never send the credentials to another host
    with contextlib.suppress(RegistryUnreachableError):
        await client.send("DELETE", url, authorization)
