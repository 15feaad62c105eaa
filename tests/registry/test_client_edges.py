"""The registry client against registries that answer oddly (a small aiohttp app on loopback).

The real registry covers the normal flows; these are the answers it never gives: no digest
header, no challenge, failing or empty token endpoints, refusals with error bodies.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from autobuild.api.conditions import Reason
from autobuild.registry.client import is_public_address, open_session
from autobuild.registry.digests import TagDigest, read_tag_digests
from autobuild.registry.dockerconfig import Credentials
from autobuild.registry.preflight import PushCheck, check_push
from tests.support.certificates import self_signed_certificate

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MANIFEST = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'


async def _serve(
    routes: dict[tuple[str, str], Handler], run: Callable[[str], Awaitable[object]]
) -> object:
    app = web.Application()
    for (method, path), handler in routes.items():
        app.router.add_route(method, path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        return await run(f"127.0.0.1:{port}")
    finally:
        await runner.cleanup()


def _push(
    routes: dict[tuple[str, str], Handler],
    credentials: Credentials | None = None,
    internal_realm_hosts: tuple[str, ...] = ("localhost",),
) -> PushCheck:
    # The token endpoints here listen on loopback: allowed as AUTOBUILD_INTERNAL_REALM_HOSTS
    # would allow them, except in the tests of that check.
    async def run(host: str) -> PushCheck:
        return await check_push(
            host,
            "team/app",
            credentials,
            insecure_registries=[host],
            internal_realm_hosts=internal_realm_hosts,
        )

    result = asyncio.run(_serve(routes, run))
    assert isinstance(result, PushCheck)
    return result


async def _ok(request: web.Request) -> web.Response:
    return web.Response(status=200)


def test_a_manifest_head_without_digest_falls_back_to_hashing_the_body() -> None:
    async def head(request: web.Request) -> web.Response:
        return web.Response(status=200, content_type="application/vnd.oci.image.manifest.v1+json")

    async def get(request: web.Request) -> web.Response:
        assert "application/vnd.oci.image.index.v1+json" in request.headers["Accept"]
        return web.Response(
            body=MANIFEST, content_type="application/vnd.oci.image.manifest.v1+json"
        )

    routes: dict[tuple[str, str], Handler] = {
        ("GET", "/v2/"): _ok,
        ("HEAD", "/v2/team/app/manifests/v1"): head,
        ("GET", "/v2/team/app/manifests/v1"): get,
    }

    async def run(host: str) -> object:
        return await read_tag_digests(host, "team/app", ["v1"], None, insecure_registries=[host])

    found = asyncio.run(_serve(routes, run))
    assert found == (TagDigest("v1", "sha256:" + hashlib.sha256(MANIFEST).hexdigest()),)


def test_a_401_without_challenge_is_unauthorized() -> None:
    async def v2(request: web.Request) -> web.Response:
        return web.Response(status=401)

    result = _push({("GET", "/v2/"): v2}, Credentials("a", "b"))
    assert (result.ok, result.reason) == (False, Reason.PUSH_UNAUTHORIZED)
    assert "without a Bearer or Basic challenge" in result.message


def _bearer(
    token_handler: Handler, realm_host: str = "localhost"
) -> dict[tuple[str, str], Handler]:
    async def v2(request: web.Request) -> web.Response:
        realm = f"http://{realm_host}:{request.url.port}/token"
        return web.Response(
            status=401, headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="test"'}
        )

    return {("GET", "/v2/"): v2, ("GET", "/token"): token_handler}


def test_a_failing_token_endpoint_is_unreachable_not_unauthorized() -> None:
    async def token(request: web.Request) -> web.Response:
        return web.Response(status=503)

    result = _push(_bearer(token), Credentials("a", "b"))
    assert (result.ok, result.reason) == (False, Reason.REGISTRY_UNREACHABLE)


def test_a_token_endpoint_without_token_is_unreachable() -> None:
    async def token(request: web.Request) -> web.Response:
        return web.json_response({"expires_in": 60})

    result = _push(_bearer(token), Credentials("a", "b"))
    assert (result.ok, result.reason) == (False, Reason.REGISTRY_UNREACHABLE)
    assert "returned no token" in result.message


def test_an_upload_refused_with_an_opaque_token_reports_the_registry_error() -> None:
    async def token(request: web.Request) -> web.Response:
        assert "Authorization" not in request.headers
        assert request.query["scope"] == "repository:team/app:push,pull"
        assert request.query["service"] == "test"
        return web.json_response({"token": "opaque"})

    async def upload(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == "Bearer opaque"
        body = {
            "errors": [{"code": "DENIED", "message": "requested access to the resource is denied"}]
        }
        return web.Response(status=401, text=json.dumps(body))

    routes = _bearer(token)
    routes[("POST", "/v2/team/app/blobs/uploads/")] = upload
    result = _push(routes)
    assert (result.ok, result.reason) == (False, Reason.PUSH_UNAUTHORIZED)
    assert "DENIED: requested access to the resource is denied" in result.message


def test_no_registry_api_at_v2_is_unreachable() -> None:
    async def v2(request: web.Request) -> web.Response:
        return web.Response(status=404, text="<html>not here</html>")

    result = _push({("GET", "/v2/"): v2})
    assert (result.ok, result.reason) == (False, Reason.REGISTRY_UNREACHABLE)
    assert "not a registry API" in result.message


def test_an_anonymous_pull_only_token_says_there_is_no_push_secret() -> None:
    claims = {"access": [{"type": "repository", "name": "team/app", "actions": ["pull"]}]}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()

    async def token(request: web.Request) -> web.Response:
        return web.json_response({"access_token": f"e30.{payload}.c2ln"})

    result = _push(_bearer(token))
    assert (result.ok, result.reason) == (False, Reason.PUSH_UNAUTHORIZED)
    assert "grants pull, not push" in result.message
    assert "spec.image has no pushSecret" in result.message


def _counting_token() -> tuple[Handler, list[web.Request]]:
    asked: list[web.Request] = []

    async def token(request: web.Request) -> web.Response:
        asked.append(request)
        return web.json_response({"token": "opaque"})

    return token, asked


def test_a_token_realm_whose_name_resolves_to_loopback_is_refused() -> None:
    # The IP literal was refused already; a name that resolves to the same address was not,
    # and the realm's answer went back to the registry as a Bearer token.
    token, asked = _counting_token()
    result = _push(_bearer(token), Credentials("a", "b"), internal_realm_hosts=())
    assert (result.ok, result.reason) == (False, Reason.PUSH_UNAUTHORIZED)
    assert "private address" in result.message
    assert "127.0.0.1" in result.message
    assert "AUTOBUILD_INTERNAL_REALM_HOSTS" in result.message
    assert asked == []  # nothing was sent to it, least of all the credentials


class _FakeDNS:
    """getaddrinfo for made-up names (every answer a loopback address: no traffic leaves the
    host); lookups of other names go through. Answers are used up in order, the last stays."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []
        real = asyncio.base_events.BaseEventLoop.getaddrinfo
        fake = self

        async def getaddrinfo(
            loop: asyncio.AbstractEventLoop, host: object, port: object, **kwargs: object
        ) -> object:
            name = host.decode() if isinstance(host, bytes) else str(host)
            if name not in fake.table:
                return await real(loop, host, port, **kwargs)  # type: ignore[arg-type]
            fake.asked.append(name)
            answers = fake.table[name]
            address = answers.pop(0) if len(answers) > 1 else answers[0]
            if not address[0].isdigit():
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(str(port))))]

        monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize("name", ["registry-auth.internal", "token.svc.cluster.local"])
def test_a_token_realm_on_an_internal_dns_name_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    _FakeDNS(monkeypatch, {name: ["127.0.0.1"]})
    token, asked = _counting_token()
    result = _push(_bearer(token, name), Credentials("a", "b"), internal_realm_hosts=())
    assert (result.ok, result.reason) == (False, Reason.PUSH_UNAUTHORIZED)
    assert f"{name}:" in result.message
    assert asked == []
    # The admin's allowance, by name, is what lets an in-cluster token service answer.
    allowed = _push(_bearer(token, name), Credentials("a", "b"), internal_realm_hosts=(name,))
    assert "private address" not in allowed.message
    assert len(asked) == 1  # the realm was asked (the fake registry then refuses the upload)


def test_the_token_request_goes_to_the_address_that_was_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A second lookup could answer another address (DNS rebinding): there is none.
    dns = _FakeDNS(monkeypatch, {"tokens.test": ["127.0.0.1", "no more answers"]})
    token, asked = _counting_token()
    _push(_bearer(token, "tokens.test"), Credentials("a", "b"), internal_realm_hosts=("*",))
    assert len(asked) == 1
    assert asked[0].headers["Host"].startswith("tokens.test:")
    assert dns.asked == ["tokens.test"]


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("140.82.112.3", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("10.0.0.7", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT, used inside some clouds
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1%eth0", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
        ("not an address", False),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public_address(address) is public


def _tls_context(name: str, tmp_path: Path) -> tuple[ssl.SSLContext, bytes]:
    """A server context with a self-signed certificate for ``name``, and its PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = self_signed_certificate(key, name, [x509.DNSName(name)])
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "tls.crt").write_bytes(pem)
    (tmp_path / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    return context, pem


@pytest.mark.parametrize(("certified", "trusted"), [("tokens.test", True), ("other.test", False)])
def test_an_https_realm_reached_at_its_checked_address_still_verifies_its_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, certified: str, trusted: bool
) -> None:
    # Docker Hub's case (auth.docker.io is another host than the registry), on loopback: the
    # token request goes to the address that was checked, TLS checks the realm's name.
    _FakeDNS(monkeypatch, {"tokens.test": ["127.0.0.1"]})
    context, pem = _tls_context(certified, tmp_path)
    token, asked = _counting_token()

    async def run() -> PushCheck:
        tokens = web.Application()
        tokens.router.add_route("GET", "/token", token)
        token_runner = web.AppRunner(tokens)
        await token_runner.setup()
        await web.TCPSite(token_runner, "127.0.0.1", 0, ssl_context=context).start()
        token_port = token_runner.addresses[0][1]

        async def v2(request: web.Request) -> web.Response:
            realm = f"https://tokens.test:{token_port}/token"
            return web.Response(status=401, headers={"WWW-Authenticate": f'Bearer realm="{realm}"'})

        async def upload(request: web.Request) -> web.Response:
            assert request.headers["Authorization"] == "Bearer opaque"
            return web.Response(status=202)

        routes: dict[tuple[str, str], Handler] = {
            ("GET", "/v2/"): v2,
            ("POST", "/v2/team/app/blobs/uploads/"): upload,
        }
        try:

            async def check(host: str) -> PushCheck:
                async with open_session(pem) as session:
                    return await check_push(
                        host,
                        "team/app",
                        Credentials("a", "b"),
                        insecure_registries=[host],
                        internal_realm_hosts=["tokens.test"],
                        session=session,
                    )

            result = await _serve(routes, check)
            assert isinstance(result, PushCheck)
            return result
        finally:
            await token_runner.cleanup()

    result = asyncio.run(run())
    if trusted:
        assert result == PushCheck(ok=True)
        assert asked[0].headers["Host"] == f"tokens.test:{asked[0].url.port}"
    else:
        assert (result.ok, result.reason) == (False, Reason.REGISTRY_CERTIFICATE_UNTRUSTED)
        assert asked == []
