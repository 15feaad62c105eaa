"""The Docker Registry v2 auth flow and requests against one repository (async, aiohttp).

Flow (distribution's token-auth spec, as docker, crane and Kaniko do it): ``GET /v2/`` without
credentials; ``200`` means an anonymous registry; ``401`` with ``WWW-Authenticate: Bearer
realm=..,service=..`` means a token from ``realm?service=..&scope=repository:NAME:ACTIONS`` asked
with HTTP Basic credentials; ``401`` with ``Basic`` means Basic credentials on every request.
Credentials go only to the registry named in spec.image and to the token realm it names, and to
a plain ``http://`` realm only when the registry itself is listed as insecure. A realm on
another host is resolved first (off the event loop) and refused when any of its addresses is
not public (loopback, private, link-local such as cloud metadata, CGNAT, ...), unless its host
is in ``AUTOBUILD_INTERNAL_REALM_HOSTS``; the token request then goes to the address that was
checked, so a second answer of the DNS cannot point it elsewhere.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import ipaddress
import json
import re
import socket
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from multidict import CIMultiDict

from autobuild.api.registries import api_host, base_url, is_insecure, normalize_registry
from autobuild.registry.dockerconfig import Credentials

DEFAULT_TIMEOUT_S: Final = 20.0
INTERNAL_REALM_HOSTS_SETTING: Final = "AUTOBUILD_INTERNAL_REALM_HOSTS"
# Distinct CA bundles with an open session at once; beyond it the least recently used closes.
MAX_CA_SESSIONS: Final = 64
_CHALLENGE_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


def open_session(ca_bundle: bytes | str | None = None) -> aiohttp.ClientSession:
    """An ``aiohttp.ClientSession`` for the registry calls; ``ca_bundle`` (PEM) adds the CAs of
    registries with self-signed or private certificates to the system's trusted ones.

    Every call here takes ``session=``: pass one opened with the registry's CA bundle.
    """
    if ca_bundle is None:
        return aiohttp.ClientSession()
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(
            cadata=ca_bundle.decode() if isinstance(ca_bundle, bytes) else ca_bundle
        )
    except (ssl.SSLError, ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"the CA bundle is not PEM certificates: {error}") from None
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))


class RegistrySessions:
    """The operator's registry sessions: one per CA bundle, so each connection pool trusts the
    system's CAs plus exactly one AutomatedBuild's CA (a CA given for one registry never
    vouches for another AutomatedBuild's registry). Keyed by the bundle's SHA-256, so every
    AutomatedBuild with the same CA shares one pool."""

    def __init__(self, limit: int = MAX_CA_SESSIONS) -> None:
        self._limit = limit
        self._sessions: dict[str, aiohttp.ClientSession] = {}

    async def get(self, ca_bundle: str | None) -> aiohttp.ClientSession:
        """The session for ``ca_bundle`` (PEM; None: the system's CAs only), opened on first
        use. Raises ``ValueError`` when the bundle is not PEM certificates."""
        key = "" if ca_bundle is None else hashlib.sha256(ca_bundle.encode()).hexdigest()
        session = self._sessions.pop(key, None)
        if session is None or session.closed:
            session = open_session(ca_bundle)
        self._sessions[key] = session  # most recently used last
        while len(self._sessions) > self._limit:
            # Rare (more CAs in use than the limit): a check still using the closed session
            # fails as unreachable once and is asked again.
            await self._sessions.pop(next(iter(self._sessions))).close()
        return session

    async def close(self) -> None:
        """Close every session (at shutdown)."""
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()


class RegistryUnreachableError(Exception):
    """The registry or its token endpoint did not answer (network, timeout, 5xx, not /v2/)."""


class RegistryCertificateError(RegistryUnreachableError):
    """The registry's TLS certificate did not verify (self-signed, unknown CA, wrong host):
    no retry helps until the client trusts the right CA (spec.image.caSecret)."""


class RegistryAuthError(Exception):
    """The registry or its token endpoint refused the credentials (or demands some)."""


@dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: ``Bearer`` or ``Basic`` and its parameters."""

    scheme: str
    params: Mapping[str, str]


@dataclass(frozen=True)
class Response:
    """A registry answer, read whole (manifests and error bodies are small)."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def error_text(self) -> str:
        """The registry's ``errors`` (code: message) or the status, for condition messages."""
        try:
            document = json.loads(self.body)
        except ValueError:
            return f"HTTP {self.status}"
        errors = document.get("errors") if isinstance(document, dict) else None
        if not isinstance(errors, list) or not errors:
            return f"HTTP {self.status}"
        parts = [
            f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
            for error in errors
            if isinstance(error, dict)
        ]
        return f"HTTP {self.status} ({'; '.join(parts)})"


def parse_challenge(header: str) -> Challenge | None:
    """The first challenge of a ``WWW-Authenticate`` header, or None when there is none."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params: dict[str, str] = {}
    position = 0
    while position < len(rest):
        match = _CHALLENGE_PARAM.match(rest, position)
        if match is None or match.end() == position:
            break
        quoted, bare = match.group(2), match.group(3)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare or ""
        params[match.group(1).lower()] = value
        position = match.end()
    return Challenge(scheme=scheme.lower(), params=params)


def token_grants(token: str, repository: str) -> frozenset[str] | None:
    """The actions a registry JWT grants on ``repository``; None for an opaque token.

    Only the claims are read (not verified: the registry verifies); a token from Docker Hub,
    Harbor, GHCR or distribution's token servers lists them as ``access: [{type, name,
    actions}]``.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    access = claims.get("access") if isinstance(claims, dict) else None
    if not isinstance(access, list):
        return None
    actions: set[str] = set()
    for entry in access:
        if (
            isinstance(entry, dict)
            and entry.get("type") == "repository"
            and entry.get("name") == repository
        ):
            actions.update(str(action) for action in entry.get("actions") or [])
    return frozenset(actions)


def is_private_ip_literal(host: str) -> bool:
    """Whether ``host`` is an IP literal (any form the resolver accepts) of a non-public range."""
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
            host.split("%", 1)[0]
        )
    except ValueError:
        try:  # inet_aton forms such as 127.1 or 0x7f.1
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_unspecified
        or address.is_multicast
    )


def is_public_address(text: str) -> bool:
    """Whether an address (as ``getaddrinfo`` gives it) is public: globally routable unicast,
    and no IPv6 form of an IPv4 address that is not (mapped, 6to4, Teredo)."""
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
            text.split("%", 1)[0]
        )
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo or (None, None))[1]
        if embedded is not None and not is_public_address(str(embedded)):
            return False
    return address.is_global and not address.is_multicast


def realm_host_allowed(host: str, internal_realm_hosts: Iterable[str]) -> bool:
    """Whether ``AUTOBUILD_INTERNAL_REALM_HOSTS`` lets a token realm on ``host`` be internal
    (names compared lowercased, without port; ``*``: any)."""
    wanted = host.lower().strip("[]")
    for item in internal_realm_hosts:
        name = item.strip().lower()
        name = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
        if name == "*" or name.strip("[]") == wanted:
            return True
    return False


async def resolve_realm(host: str, port: int) -> list[str]:
    """The addresses of a realm host (``loop.getaddrinfo``: the resolver runs in a thread,
    never on the event loop). Raises :class:`RegistryUnreachableError` when it has none."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (OSError, UnicodeError) as error:
        raise RegistryUnreachableError(
            f"the token realm host {host} does not resolve: {error}"
        ) from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise RegistryUnreachableError(f"the token realm host {host} does not resolve")
    return addresses


@contextlib.asynccontextmanager
async def session_or_own(
    session: aiohttp.ClientSession | None,
) -> AsyncIterator[aiohttp.ClientSession]:
    """``session`` as it is, or (None) a session of its own that is closed on exit."""
    if session is not None:
        yield session
        return
    async with aiohttp.ClientSession() as own:
        yield own


def basic_authorization(credentials: Credentials) -> str:
    """The ``Authorization`` value for HTTP Basic auth with ``credentials``."""
    pair = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(pair).decode()


@dataclass(frozen=True)
class Authorization:
    """How to authorize requests for one scope: the header (None: anonymous) and the grants."""

    header: str | None
    # Actions the bearer token grants on the repository; None when unknown (Basic, opaque).
    granted: frozenset[str] | None


class RegistryClient:
    """Requests against one repository of one registry, with the v2 auth flow."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        registry: str,
        repository: str,
        credentials: Credentials | None,
        *,
        insecure_registries: Iterable[str] = (),
        internal_realm_hosts: Iterable[str] = (),
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.session = session
        self.internal_realm_hosts = tuple(internal_realm_hosts)
        self.registry = normalize_registry(registry)
        self.repository = repository
        self.credentials = credentials
        self.insecure = is_insecure(registry, insecure_registries)
        self.base_url = base_url(registry, insecure_registries)
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._authorizations: dict[tuple[str, ...], Authorization] = {}

    def scope(self, actions: Iterable[str]) -> str:
        """The token scope for ``actions`` on this repository."""
        return f"repository:{self.repository}:{','.join(actions)}"

    async def authorize(self, actions: tuple[str, ...]) -> Authorization:
        """Run the auth flow for ``actions`` on this repository (cached per set of actions)."""
        cached = self._authorizations.get(actions)
        if cached is not None:
            return cached
        ping = await self._send("GET", f"{self.base_url}/v2/", {})
        if ping.status == 200:
            authorization = Authorization(header=None, granted=None)
        elif ping.status == 401:
            challenge = parse_challenge(ping.headers.get("WWW-Authenticate", ""))
            if challenge is not None and challenge.scheme == "bearer":
                authorization = await self._bearer(challenge, actions)
            elif challenge is not None and challenge.scheme == "basic":
                authorization = await self._basic_checked()
            else:
                raise RegistryAuthError(
                    f"registry {self.registry} answered 401 without a Bearer or Basic challenge"
                )
        else:
            raise RegistryUnreachableError(
                f"registry {self.registry} answered HTTP {ping.status} at /v2/ "
                "(not a registry API, or failing)"
            )
        self._authorizations[actions] = authorization
        return authorization

    async def request(
        self,
        method: str,
        path: str,
        *,
        actions: tuple[str, ...],
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """``method`` on ``/v2/<repository>/<path>`` authorized for ``actions``."""
        authorization = await self.authorize(actions)
        return await self.send(method, self.url(path), authorization, headers)

    async def send(
        self,
        method: str,
        url: str,
        authorization: Authorization,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """``method`` on an absolute URL of this registry with ``authorization``."""
        all_headers = dict(headers or {})
        if authorization.header is not None:
            all_headers["Authorization"] = authorization.header
        return await self._send(method, url, all_headers)

    def url(self, path: str) -> str:
        """The absolute URL of ``/v2/<repository>/<path>``."""
        return f"{self.base_url}/v2/{self.repository}/{path}"

    async def _bearer(self, challenge: Challenge, actions: tuple[str, ...]) -> Authorization:
        realm = challenge.params.get("realm", "")
        parsed = urllib.parse.urlsplit(realm)
        if parsed.scheme not in {"http", "https"} or not parsed.netloc:
            raise RegistryAuthError(f"registry {self.registry} named no usable token realm")
        if parsed.scheme == "http" and self.credentials is not None and not self.insecure:
            raise RegistryAuthError(
                f"registry {self.registry} asks for credentials over plain http ({parsed.netloc}); "
                "list the registry in AUTOBUILD_INSECURE_REGISTRIES to allow it"
            )
        query = [("scope", self.scope(actions))]
        if "service" in challenge.params:
            query.insert(0, ("service", challenge.params["service"]))
        separator = "&" if parsed.query else "?"
        url = f"{realm}{separator}{urllib.parse.urlencode(query)}"
        headers = (
            {}
            if self.credentials is None
            else {"Authorization": basic_authorization(self.credentials)}
        )
        pinned: str | None = None
        if parsed.netloc != api_host(self.registry):
            url, pinned = await self._checked_realm(url)
            headers["Host"] = parsed.netloc.rpartition("@")[2]
        answer = await self._send("GET", url, headers, server_hostname=pinned)
        if answer.status in (401, 403):
            raise RegistryAuthError(
                f"the token endpoint of registry {self.registry} refused the credentials "
                f"(HTTP {answer.status})"
            )
        if answer.status != 200:
            raise RegistryUnreachableError(
                f"the token endpoint of registry {self.registry} answered HTTP {answer.status}"
            )
        try:
            document: Any = json.loads(answer.body)
            token = document.get("token") or document.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryUnreachableError(
                f"the token endpoint of registry {self.registry} returned no token"
            )
        return Authorization(header=f"Bearer {token}", granted=token_grants(token, self.repository))

    async def _checked_realm(self, url: str) -> tuple[str, str]:
        """A realm on another host than the registry: resolved, refused unless every address
        is public (or the host is allowed internal), and returned as the URL of the address
        that was checked, with the host name for TLS (SNI and certificate check).

        The answer of a realm is sent back to the registry as a Bearer token, and the request
        carries the push credentials: a registry (which the AutomatedBuild's author chooses)
        must not make the operator ask internal services (cloud metadata, the API server,
        in-cluster services) and forward what they say.
        """
        parsed = urllib.parse.urlsplit(url)
        host = parsed.hostname or ""
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        if is_private_ip_literal(host):
            addresses = [host]  # inet_aton forms (127.1) as the resolver would read them
        else:
            addresses = await resolve_realm(host, port)
        internal = [a for a in addresses if not is_public_address(a)]
        if internal and not realm_host_allowed(host, self.internal_realm_hosts):
            raise RegistryAuthError(
                f"registry {self.registry} names a token realm on a private address "
                f"({parsed.netloc} is {', '.join(internal[:3])}); refusing it. If that token "
                f"service is yours, add {host} to the operator setting "
                f"{INTERNAL_REALM_HOSTS_SETTING}"
            )
        # IPv4 first: a token service on a dual-stack name most often listens there.
        address = sorted(addresses, key=lambda a: ":" in a)[0]
        literal = f"[{address}]" if ":" in address else address
        netloc = f"{literal}:{parsed.port}" if parsed.port else literal
        return urllib.parse.urlunsplit(parsed._replace(netloc=netloc)), host

    async def _basic_checked(self) -> Authorization:
        if self.credentials is None:
            raise RegistryAuthError(f"registry {self.registry} requires credentials")
        authorization = Authorization(header=basic_authorization(self.credentials), granted=None)
        answer = await self.send("GET", f"{self.base_url}/v2/", authorization)
        if answer.status == 401:
            raise RegistryAuthError(f"registry {self.registry} refused the credentials (HTTP 401)")
        if answer.status != 200:
            raise RegistryUnreachableError(
                f"registry {self.registry} answered HTTP {answer.status} at /v2/"
            )
        return authorization

    async def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        *,
        server_hostname: str | None = None,
    ) -> Response:
        https = urllib.parse.urlsplit(url).scheme == "https"
        extra: dict[str, Any] = {"server_hostname": server_hostname} if https else {}
        try:
            async with self.session.request(
                method, url, headers=headers, timeout=self.timeout, allow_redirects=False, **extra
            ) as answer:
                body = await answer.read()
                if answer.status >= 500:
                    raise RegistryUnreachableError(
                        f"registry {self.registry} answered HTTP {answer.status} "
                        f"to {method} {urllib.parse.urlsplit(url).path}"
                    )
                return Response(answer.status, CIMultiDict(answer.headers), body)
        except aiohttp.ClientConnectorCertificateError as error:
            detail = getattr(error.certificate_error, "verify_message", None) or str(
                error.certificate_error
            )
            raise RegistryCertificateError(
                f"registry {self.registry} presented a TLS certificate that is not trusted "
                f"({detail}): put the PEM certificate of the CA that signed it in a Secret's "
                "key ca.crt and name that Secret in spec.image.caSecret"
            ) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise RegistryUnreachableError(
                f"registry {self.registry} is unreachable: {type(error).__name__}: {error}"
            ) from None


@contextlib.asynccontextmanager
async def registry_client(
    registry: str,
    repository: str,
    credentials: Credentials | None,
    *,
    insecure_registries: Iterable[str] = (),
    internal_realm_hosts: Iterable[str] = (),
    session: aiohttp.ClientSession | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> AsyncIterator[RegistryClient]:
    """A :class:`RegistryClient` on ``session``, or on a session of its own closed on exit."""
    async with session_or_own(session) as http:
        yield RegistryClient(
            http,
            registry,
            repository,
            credentials,
            insecure_registries=insecure_registries,
            internal_realm_hosts=internal_realm_hosts,
            timeout=timeout,
        )
