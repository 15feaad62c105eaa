"""A registry with a private CA (HTTPS, self-signed): the operator's checks trust exactly the
CA of spec.image.caSecret, and say clearly when the certificate is not trusted."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from autobuild.api.conditions import Reason
from autobuild.api.models import AutomatedBuild, ImageSpec
from autobuild.registry.client import RegistrySessions
from autobuild.registry.dockerconfig import DecodedSecret
from autobuild.registry.operations import image_ca_bundle, preflight, verify_build
from autobuild.registry.preflight import PushCheck
from autobuild.settings import BuildSettings
from tests.support.crane import Crane
from tests.support.registry import Registry

USERS = {"alice": "alice-pw"}
# No AUTOBUILD_INSECURE_REGISTRIES entry: the registry speaks HTTPS.
SETTINGS = BuildSettings()


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """HTTPS with a self-signed certificate for 127.0.0.1, htpasswd users."""
    with Registry(users=USERS, tls=True, workdir=tmp_path_factory.mktemp("tls")) as registry:
        yield registry


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The CA of another registry: valid PEM, but it did not sign ``tls_registry``'s cert."""
    with Registry(tls=True, workdir=tmp_path_factory.mktemp("other")) as registry:
        return registry.ca_pem


def _image(registry: Registry, **extra: Any) -> ImageSpec:
    return AutomatedBuild.model_validate(
        {
            "apiVersion": "autobuild.dev/v1alpha1",
            "kind": "AutomatedBuild",
            "metadata": {"name": "app", "namespace": "ci"},
            "spec": {
                "source": {"repo": "github.com/alice/app"},
                "image": {
                    "registry": registry.host,
                    "namespace": "alice",
                    "name": "app",
                    "visibility": "Private",
                    "shortDescription": "The app",
                    "pushSecret": "regcred",
                    **extra,
                },
            },
        }
    ).spec.image


def _push_secret(registry: Registry) -> DecodedSecret:
    auth = base64.b64encode(b"alice:alice-pw").decode()
    config = json.dumps({"auths": {registry.host: {"auth": auth}}})
    return DecodedSecret("kubernetes.io/dockerconfigjson", {".dockerconfigjson": config})


def _ca_secrets(pem: bytes) -> dict[str, DecodedSecret | None]:
    return {"registry-ca": DecodedSecret("Opaque", {"ca.crt": pem.decode()})}


def _preflight(image: ImageSpec, registry: Registry, ca: str | None) -> PushCheck:
    async def run() -> PushCheck:
        sessions = RegistrySessions()
        try:
            session = await sessions.get(ca)
            return await preflight(image, _push_secret(registry), SETTINGS, session=session)
        finally:
            await sessions.close()

    return asyncio.run(run())


def test_preflight_passes_with_the_ca_secret(tls_registry: Registry) -> None:
    image = _image(tls_registry, caSecret="registry-ca")
    ca = image_ca_bundle(image, _ca_secrets(tls_registry.ca_pem))
    assert ca == tls_registry.ca_pem.decode()
    assert _preflight(image, tls_registry, ca) == PushCheck(ok=True)
    assert "POST /v2/alice/app/blobs/uploads/" in tls_registry.log_text()


def test_without_the_ca_the_certificate_is_untrusted_and_says_how_to_fix_it(
    tls_registry: Registry,
) -> None:
    image = _image(tls_registry)
    assert image_ca_bundle(image, _ca_secrets(tls_registry.ca_pem)) is None
    result = _preflight(image, tls_registry, None)
    assert (result.ok, result.reason) == (False, Reason.REGISTRY_CERTIFICATE_UNTRUSTED)
    assert f"registry {tls_registry.host} presented a TLS certificate that is not trusted" in (
        result.message
    )
    assert "self-signed certificate" in result.message
    assert "spec.image.caSecret" in result.message
    assert "alice-pw" not in result.message


def test_another_registrys_ca_does_not_vouch_for_this_one(
    tls_registry: Registry, other_ca: bytes
) -> None:
    image = _image(tls_registry, caSecret="registry-ca")
    result = _preflight(image, tls_registry, image_ca_bundle(image, _ca_secrets(other_ca)))
    assert (result.ok, result.reason) == (False, Reason.REGISTRY_CERTIFICATE_UNTRUSTED)


def test_digests_are_verified_with_the_ca_and_unreadable_without(
    tls_registry: Registry, tmp_path: Path
) -> None:
    crane = Crane(tmp_path, {tls_registry.host: ("alice", "alice-pw")})
    digest = crane.push_random_image(f"{tls_registry.host}/alice/app:1.0")
    image = _image(tls_registry, caSecret="registry-ca")
    secret = _push_secret(tls_registry)

    async def verify(ca: str | None) -> Any:
        sessions = RegistrySessions()
        try:
            session = await sessions.get(ca)
            return await verify_build(image, ["1.0"], digest, secret, SETTINGS, session=session)
        finally:
            await sessions.close()

    trusted = asyncio.run(verify(tls_registry.ca_pem.decode()))
    assert trusted.ok
    assert trusted.as_status() == {"1.0": digest}
    untrusted = asyncio.run(verify(None))
    assert (untrusted.ok, untrusted.reason) == (False, Reason.REGISTRY_UNREACHABLE)
    assert "not trusted" in untrusted.message
    assert "spec.image.caSecret" in untrusted.message


def test_sessions_are_shared_per_ca_and_closed(tls_registry: Registry, other_ca: bytes) -> None:
    async def run() -> list[aiohttp.ClientSession]:
        sessions = RegistrySessions(limit=2)
        ca = tls_registry.ca_pem.decode()
        first = await sessions.get(ca)
        assert await sessions.get(ca) is first
        system = await sessions.get(None)
        assert system is not first
        with pytest.raises(ValueError, match="not PEM certificates"):
            await sessions.get("not a certificate")
        await sessions.get(ca)  # used last: the system session is now the oldest
        third = await sessions.get(other_ca.decode())
        assert system.closed  # over the limit: the least recently used is closed
        assert not first.closed
        await sessions.close()
        return [first, third]

    assert all(session.closed for session in asyncio.run(run()))
