"""The webhook server: verified deliveries from GitHub, Bitbucket Cloud and GitLab, and Docker
Hub's build trigger URL, served by aiohttp on the operator's own event loop.

The receiver reads only in-memory state (a :class:`TargetIndex` the operator keeps from its
watches) and hands work to non-blocking callbacks, so an answer never waits on the Kubernetes
API or a git host. Routes (DESIGN.md §3):

- ``POST /hooks/github``, ``POST /hooks/bitbucket``, ``POST /hooks/gitlab``;
- ``POST /hooks/trigger/{namespace}/{name}/{token}`` (a trailing ``/`` is accepted, as Docker
  Hub's trigger URLs had one);
- ``GET /healthz``;
- ``GET /metrics``: the operator's Prometheus metrics (:mod:`autobuild.metrics`); every answer
  of a ``/hooks/`` route is counted by provider and status code.

Answers: 401 unsigned or wrongly signed (nothing happens); 200 ``ping``; 202 a verified push
(deleted and non-matching refs included: nothing builds for them); 404 unknown repository;
400 malformed body; 413 body over :data:`MAX_BODY_BYTES`; 408 body not received within
:data:`BODY_TIMEOUT_SECONDS`; 405 wrong method. A trigger URL
whose object is unknown, has no trigger secret, or whose token is wrong answers the same 404,
so the URL reveals nothing about which AutomatedBuilds exist.

Secrets, signatures and trigger tokens are never logged: the access log redacts the token
segment of trigger URLs and drops query strings.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeAlias

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler, Middleware
from prometheus_client.aiohttp import make_aiohttp_handler

from autobuild.api import checks
from autobuild.api.models import Provider
from autobuild.metrics import Metrics, webhook_source
from autobuild.planning.planner import PushEvent
from autobuild.webhooks.deliveries import DeliveryKind, PayloadError, parse_delivery
from autobuild.webhooks.signatures import verify_sha256, verify_token
from autobuild.webhooks.trigger import TriggerURLRequest

__all__ = [
    "BODY_TIMEOUT_SECONDS",
    "DEFAULT_ADDRESS",
    "DELIVERY_MEMORY",
    "MAX_BODY_BYTES",
    "Answer",
    "DeliveryLog",
    "HookTarget",
    "Receiver",
    "SubmitPush",
    "SubmitTrigger",
    "TargetIndex",
    "WebhookServer",
    "create_app",
    "delivery_id_of",
    "parse_address",
    "redact_path",
    "start_server",
]

# GitHub caps payloads at 25 MB, but a push (at most 20 commits with their file lists) is far
# smaller; 4 MiB bounds the memory one request may take.
MAX_BODY_BYTES: Final = 4 * 1024 * 1024
# GitHub gives up on a delivery after 10 s; a body that takes longer is not a delivery.
BODY_TIMEOUT_SECONDS: Final = 10.0
# Delivery ids remembered for redeliveries: about 100 bytes each, so ~1 MB. Providers redeliver
# within hours; 10,000 deliveries cover that at ~1 delivery/s. Older ones still build once
# thanks to the deterministic build identity.
DELIVERY_MEMORY: Final = 10_000
# A Pod serves its Service on every address.
DEFAULT_ADDRESS: Final = "0.0.0.0:8080"
_MAX_DELIVERY_ID: Final = 200

log = logging.getLogger("autobuild.webhooks")
access_log = logging.getLogger("autobuild.webhooks.access")
# aiohttp's own messages (its default logger is aiohttp.server), filtered by _RequestBytesFilter.
server_log = logging.getLogger("autobuild.webhooks.server")


class _RequestBytesFilter(logging.Filter):
    """aiohttp logs the bytes of a request it cannot parse, and those may hold a token (GitLab's
    is a header): keep only the kind of error, as a warning rather than a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            record.msg, record.args = (
                "malformed HTTP request refused: %s %s",
                (
                    error.code,
                    type(error).__name__,
                ),
            )
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


server_log.addFilter(_RequestBytesFilter())


@dataclass(frozen=True)
class HookTarget:
    """An AutomatedBuild a delivery for its repository may build.

    ``secret`` is the ``secret`` key of ``spec.source.webhookSecret``; None when the object
    names no webhook secret or the Secret or key is missing (then nothing verifies for it).
    """

    namespace: str
    name: str
    provider: Provider
    secret: bytes | None = field(default=None, repr=False)


class TargetIndex(Protocol):
    """What the receiver reads: the operator's in-memory store. Lookups must not block."""

    def targets(self, repo_key: str) -> Sequence[HookTarget]:
        """The AutomatedBuilds whose ``spec.source.repo`` has this :func:`repo_key`."""

    def trigger_token(self, namespace: str, name: str) -> bytes | None:
        """The ``trigger-token`` of ``spec.triggerSecret``, or None (unknown object, no field,
        missing Secret or key)."""


# Both callbacks run on the event loop and must return at once (queue the work); what they
# return is ignored.
SubmitPush: TypeAlias = Callable[[str, str, Sequence[PushEvent]], object]
SubmitTrigger: TypeAlias = Callable[[str, str, TriggerURLRequest], object]


class DeliveryLog:
    """The ids of recently accepted deliveries: a least-recently-used set of bounded size."""

    def __init__(self, capacity: int = DELIVERY_MEMORY) -> None:
        if capacity < 1:
            raise ValueError("delivery memory must hold at least one id")
        self._capacity = capacity
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    def __contains__(self, key: tuple[str, str]) -> bool:
        if key in self._seen:
            self._seen.move_to_end(key)
            return True
        return False

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, key: tuple[str, str]) -> None:
        """Remember ``key``; forget the least recently seen id beyond the capacity."""
        self._seen[key] = None
        self._seen.move_to_end(key)
        while len(self._seen) > self._capacity:
            self._seen.popitem(last=False)


@dataclass(frozen=True)
class _Scheme:
    """How one provider names its event, its delivery id and its proof of origin."""

    event_header: str
    delivery_header: str
    signature_header: str
    signs_body: bool  # HMAC over the body (GitHub, Bitbucket) or the secret itself (GitLab)


_SCHEMES: Final = {
    Provider.GITHUB: _Scheme("X-GitHub-Event", "X-GitHub-Delivery", "X-Hub-Signature-256", True),
    Provider.BITBUCKET: _Scheme("X-Event-Key", "X-Request-UUID", "X-Hub-Signature", True),
    Provider.GITLAB: _Scheme("X-Gitlab-Event", "X-Gitlab-Event-UUID", "X-Gitlab-Token", False),
}


@dataclass(frozen=True)
class Answer:
    """The receiver's decision: the HTTP answer and the pushes to submit per AutomatedBuild.

    ``delivery`` is the (provider, delivery id) to remember once the pushes are submitted.
    """

    status: int
    body: Mapping[str, Any]
    submissions: tuple[tuple[HookTarget, tuple[PushEvent, ...]], ...] = ()
    delivery: tuple[str, str] | None = None


def delivery_id_of(provider: Provider, headers: Mapping[str, str]) -> str:
    """The provider's delivery id (the same on a redelivery), or ''."""
    return headers.get(_SCHEMES[provider].delivery_header, "").strip()[:_MAX_DELIVERY_ID]


def _error(status: int, message: str) -> Answer:
    return Answer(status, {"error": message})


class Receiver:
    """Decides what a delivery does: parse, match, verify, dedupe. No I/O apart from reading the
    index; the web layer submits and then calls :meth:`remember`."""

    def __init__(self, index: TargetIndex, *, delivery_memory: int = DELIVERY_MEMORY) -> None:
        self._index = index
        self._log = DeliveryLog(delivery_memory)

    def receive(
        self,
        provider: Provider,
        headers: Mapping[str, str],
        body: bytes,
        addressed: tuple[str, str] | None = None,
    ) -> Answer:
        """Decide about one delivery to ``/hooks/<provider>``; ``headers`` is case-insensitive.
        ``addressed``: the one AutomatedBuild (namespace, name) the hook was registered for
        (``?automatedbuild=NS/NAME``); without it, every one of the repository is a candidate."""
        scheme = _SCHEMES[provider]
        event = headers.get(scheme.event_header, "").strip()
        if not event:
            return _error(400, f"missing {scheme.event_header} header")
        try:
            delivery = parse_delivery(provider, event, body, headers.get("Content-Type", ""))
        except PayloadError as exc:
            return _error(400, str(exc))
        if not delivery.repo_keys:
            # An organisation hook's ping or another event without a repository: nothing to
            # verify it against, and nothing happens.
            if delivery.kind is DeliveryKind.PING:
                return Answer(200, {"status": "pong"})
            return Answer(202, {"status": "ignored", "event": event[:100]})
        targets = self._targets(provider, delivery.repo_keys)
        if addressed is not None:
            targets = [t for t in targets if (t.namespace, t.name) == addressed]
        if not targets:
            return _error(404, "no AutomatedBuild builds this repository")
        proof = headers.get(scheme.signature_header)
        verified = [
            target
            for target in targets
            if (
                verify_sha256(target.secret, body, proof)
                if scheme.signs_body
                else verify_token(target.secret, proof)
            )
        ]
        if not verified:
            return _error(401, f"{scheme.signature_header} does not verify")
        if delivery.kind is DeliveryKind.PING:
            return Answer(200, {"status": "pong"})
        if delivery.kind is DeliveryKind.IGNORED:
            return Answer(202, {"status": "ignored", "event": event[:100]})
        delivery_id = delivery_id_of(provider, headers)
        key = (provider.value, delivery_id) if delivery_id else None
        delivery = delivery.with_delivery_id(delivery_id)  # kept in status: planning/replay.py
        if key is not None and key in self._log:
            return Answer(202, {"status": "duplicate", "delivery": delivery_id})
        body_out: dict[str, Any] = {
            "status": "accepted",
            "automatedBuilds": [f"{t.namespace}/{t.name}" for t in verified],
            "refs": [push.git_ref for push in delivery.pushes],
        }
        if delivery.skipped:
            body_out["skipped"] = list(delivery.skipped)
        submissions = tuple((t, delivery.pushes) for t in verified) if delivery.pushes else ()
        return Answer(202, body_out, submissions, key)

    def remember(self, delivery: tuple[str, str]) -> None:
        """Record an accepted delivery so that its redelivery builds nothing more."""
        self._log.add(delivery)

    def _targets(self, provider: Provider, keys: frozenset[str]) -> list[HookTarget]:
        """Candidates for a delivery: same repository, and a provider that sends this format
        (plain ``git`` hosts such as Gitea or GitHub Enterprise may send any of them)."""
        found: dict[tuple[str, str], HookTarget] = {}
        for key in sorted(keys):
            for target in self._index.targets(key):
                if target.provider in (provider, Provider.GIT):
                    found.setdefault((target.namespace, target.name), target)
        return list(found.values())

    def authorize_trigger(self, namespace: str, name: str, token: str) -> int:
        """200 if ``token`` is the trigger token of that AutomatedBuild (compared in constant
        time), 401 for a wrong token, 404 for an object without a trigger URL (unknown, no
        ``triggerSecret``, or its Secret or key missing), as Docker Hub answered."""
        expected = self._index.trigger_token(namespace, name)
        given = token.encode("utf-8", "replace")
        if not expected:
            return 404
        return 200 if hmac.compare_digest(expected, given) else 401


def addressed_to(value: str | None) -> tuple[str, str] | None:
    """``NS/NAME`` of a hook URL's ``?automatedbuild=`` as (namespace, name); None if absent or
    not of that form (then the delivery is matched by repository alone)."""
    namespace, _, name = (value or "").partition("/")
    return (namespace, name) if namespace and name and "/" not in name else None


_TRIGGER_PATH: Final = re.compile(r"^(/hooks/trigger/[^/]*/[^/]*/)[^/]*")


def redact_path(path: str) -> str:
    """A request path safe to log: the token of a trigger URL becomes ``***``."""
    return _TRIGGER_PATH.sub(r"\1***", path)


class _AccessLogger(AbstractAccessLogger):
    """One line per request, without query strings or trigger tokens."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %d %.1fms",
            request.method,
            redact_path(request.path),
            response.status,
            time * 1000,
        )


async def _read_body(request: web.Request, limit: int, timeout: float) -> bytes | web.Response:
    """The whole body, or the answer that refuses it: 413 too large, 408 too slow (a client
    that sends headers and then trickles or withholds the body must not hold a handler), 400
    broken framing."""
    if request.content_length is not None and request.content_length > limit:
        return web.json_response({"error": f"body larger than {limit} bytes"}, status=413)
    try:
        async with asyncio.timeout(timeout):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        return web.json_response({"error": f"body larger than {limit} bytes"}, status=413)
    except TimeoutError:
        return web.json_response({"error": f"body not received within {timeout:g}s"}, status=408)
    except (HttpProcessingError, ConnectionError):
        return web.json_response({"error": "malformed or interrupted body"}, status=400)


def _counting(metrics: Metrics) -> Middleware:
    """Middleware counting every answer of a webhook route, refusals (401, 404, 405, 413...)
    included, by provider and status code."""

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        source = webhook_source(request.path)
        if source is None:
            return await handler(request)
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # e.g. 405 from the router
            metrics.record_delivery(source, exc.status)
            raise
        except Exception:
            metrics.record_delivery(source, 500)  # what aiohttp answers for it
            raise
        metrics.record_delivery(source, response.status)
        return response

    return count


def create_app(
    index: TargetIndex,
    submit: SubmitPush,
    submit_trigger: SubmitTrigger,
    *,
    metrics: Metrics | None = None,
    max_body: int = MAX_BODY_BYTES,
    delivery_memory: int = DELIVERY_MEMORY,
    body_timeout: float = BODY_TIMEOUT_SECONDS,
) -> web.Application:
    """The aiohttp application of the webhook server (routes in the module docstring);
    ``metrics`` are the operator's (a fresh set when None, so /metrics always answers)."""
    receiver = Receiver(index, delivery_memory=delivery_memory)
    metrics = metrics if metrics is not None else Metrics()
    app = web.Application(client_max_size=max_body, middlewares=[_counting(metrics)])

    def hook(provider: Provider) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.StreamResponse:
            body = await _read_body(request, max_body, body_timeout)
            if isinstance(body, web.Response):
                return body
            answer = receiver.receive(
                provider, request.headers, body, addressed_to(request.query.get("automatedbuild"))
            )
            try:
                for target, pushes in answer.submissions:
                    submit(target.namespace, target.name, pushes)
            except Exception:
                log.exception("%s delivery: could not queue the build", provider.value)
                return web.json_response({"error": "could not queue the build"}, status=500)
            if answer.delivery is not None:
                receiver.remember(answer.delivery)
            log.info(
                "%s delivery %s: %d %s",
                provider.value,
                delivery_id_of(provider, request.headers) or "-",
                answer.status,
                answer.body.get("status") or answer.body.get("error"),
            )
            return web.json_response(dict(answer.body), status=answer.status)

        return handle

    async def trigger(request: web.Request) -> web.StreamResponse:
        namespace = request.match_info["namespace"]
        name = request.match_info["name"]
        verdict = receiver.authorize_trigger(namespace, name, request.match_info["token"])
        if verdict != 200:
            log.info("trigger URL: %d for %.100s/%.100s", verdict, namespace, name)
            error = "wrong trigger token" if verdict == 401 else "no such build trigger"
            return web.json_response({"error": error}, status=verdict)
        body = await _read_body(request, max_body, body_timeout)
        if isinstance(body, web.Response):
            return body
        try:
            payload = json.loads(body) if body.strip() else None
            trigger_request = TriggerURLRequest.parse(payload)
        except (UnicodeDecodeError, ValueError) as exc:  # InputError is a ValueError
            message = str(exc) if isinstance(exc, checks.InputError) else f"not JSON: {exc}"
            return web.json_response({"error": message}, status=400)
        try:
            submit_trigger(namespace, name, trigger_request)
        except Exception:
            log.exception("trigger URL for %s/%s: could not queue the build", namespace, name)
            return web.json_response({"error": "could not queue the build"}, status=500)
        log.info("trigger URL: %s/%s, %s", namespace, name, trigger_request.scope.value)
        return web.json_response(
            {"status": "accepted", "automatedBuild": f"{namespace}/{name}"}, status=202
        )

    async def healthz(request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok\n")

    for provider in _SCHEMES:
        app.router.add_post(f"/hooks/{provider.value}", hook(provider))
    app.router.add_post("/hooks/trigger/{namespace}/{name}/{token}", trigger)
    app.router.add_post("/hooks/trigger/{namespace}/{name}/{token}/", trigger)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", make_aiohttp_handler(metrics.registry))
    return app


def parse_address(address: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::]:8080`` for IPv6; ``:8080`` means every address)."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {address!r}")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104
    return host, int(port)


@dataclass
class WebhookServer:
    """A started webhook server; ``port`` is the bound port (useful when asked for port 0)."""

    runner: web.AppRunner
    host: str
    port: int

    async def stop(self) -> None:
        """Stop listening and finish the requests in flight."""
        await self.runner.cleanup()


async def start_server(app: web.Application, address: str = DEFAULT_ADDRESS) -> WebhookServer:
    """Serve ``app`` on ``address`` (``HOST:PORT``) on the running event loop."""
    host, port = parse_address(address)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log_class=_AccessLogger,
        access_log=access_log,
        logger=server_log,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = int(runner.addresses[0][1])
    log.info("webhook server listening on %s:%d", host, bound_port)
    return WebhookServer(runner, host, bound_port)
