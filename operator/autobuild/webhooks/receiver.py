"""The webhook server: verified deliveries from GitHub, Bitbucket Cloud and GitLab, and Docker
Hub's build trigger URL, served by aiohttp on the operator's own event loop.

The receiver reads only in-memory state (a :class:`TargetIndex` the operator keeps from its
watches) and hands work to non-blocking callbacks, so an answer never waits on the Kubernetes
API or a git host. Routes (docs/webhooks.md):

- ``POST /hooks/github``, ``POST /hooks/bitbucket``, ``POST /hooks/gitlab``;
- ``POST /hooks/trigger/{namespace}/{name}/{token}`` (a trailing ``/`` is accepted, as Docker
  Hub's trigger URLs had one);
- ``GET /healthz``;
- ``GET /metrics``: the operator's Prometheus metrics (:mod:`autobuild.metrics`); every answer
  of a ``/hooks/`` route is counted by provider and status code.

Answers: 401 for anything not verified: unsigned, wrongly signed, an unknown repository, an
unknown or mismatched ``?automatedbuild=`` (one status and one body for all of them, so the
answer does not tell which repositories are built under which names; nothing happens); 200
``ping``; 202 a verified push (deleted and non-matching refs included: nothing builds for them);
400 malformed body (too deeply nested JSON included); 413 body over :data:`MAX_BODY_BYTES`; 408
body not received within :data:`BODY_TIMEOUT_SECONDS`; 503 (``Retry-After``) when
:data:`BODY_BUDGET_BYTES` of bodies are already in flight or :data:`MAX_CONNECTIONS` are open;
405 wrong method. A trigger URL whose object is unknown, has no trigger secret, or whose token is
wrong answers the same 404, so the URL reveals nothing about which AutomatedBuilds exist.

Hostile input (docs/webhooks.md, issue 17): a hook registered for one AutomatedBuild
(``?automatedbuild=NS/NAME``, as the operator registers them) is checked against that one
object before its body is read, and its signature verified before the body is parsed (GitLab's
token is a header: compared before the body is read). A hand-made hook without it names its
repository only in the body: the body is then parsed, and HMACed once per distinct secret of
that repository (at most :data:`MAX_CANDIDATE_SECRETS`). Parsing and HMACs of more than
:data:`INLINE_WORK_BYTES` run in worker threads, not on the event loop. Connections that do
not finish their headers within :data:`HEADER_TIMEOUT_SECONDS` are closed.

Secrets, signatures and trigger tokens are never logged: the access log redacts the token
segment of trigger URLs and drops query strings; control characters in logged request values
are escaped, so a percent-encoded CR/LF cannot forge a log line.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeAlias, TypeVar, cast

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler, Middleware
from prometheus_client.aiohttp import make_aiohttp_handler

from autobuild.api import checks
from autobuild.api.models import Provider
from autobuild.metrics import Metrics, webhook_source
from autobuild.planning.planner import PushEvent
from autobuild.webhooks.deliveries import Delivery, DeliveryKind, PayloadError, parse_delivery
from autobuild.webhooks.signatures import verify_sha256, verify_token
from autobuild.webhooks.targets import HookTarget, TargetIndex
from autobuild.webhooks.trigger import TriggerURLRequest

__all__ = [
    "BODY_BUDGET_BYTES",
    "BODY_TIMEOUT_SECONDS",
    "DEFAULT_ADDRESS",
    "DELIVERY_MEMORY",
    "HEADER_TIMEOUT_SECONDS",
    "INLINE_WORK_BYTES",
    "MAX_BODY_BYTES",
    "MAX_CANDIDATE_SECRETS",
    "MAX_CONNECTIONS",
    "MAX_TRIGGER_BODY_BYTES",
    "NOT_VERIFIED",
    "Answer",
    "DeliveryLog",
    "Receiver",
    "RunCPU",
    "Screen",
    "SubmitPush",
    "SubmitTrigger",
    "WebhookServer",
    "create_app",
    "delivery_id_of",
    "parse_address",
    "printable",
    "redact_path",
    "start_server",
]

# GitHub caps payloads at 25 MB, but a push is far smaller: the push examples of
# @octokit/webhooks-examples 7.6.1 are 6.7-8.0 KB (0-1 commits), each further commit adds ~0.5 KB
# plus its file paths; Bitbucket Cloud drops payloads over 256 KB. 1 MiB holds a push of
# hundreds of commits or thousands of file paths (jquery's notifier found 1 MiB enough for
# static-site pushes that touch every file), and bounds the worst case: json.loads of 1 MiB
# of adversarial JSON holds the GIL ~50 ms (4 MiB: ~125 ms), parse_qs of 4 MiB took ~0.9 s.
MAX_BODY_BYTES: Final = 1024 * 1024
# Docker Hub's trigger bodies are a few dozen bytes ({"source_type": "Tag", ...}).
MAX_TRIGGER_BODY_BYTES: Final = 4096
# Bytes of request bodies buffered at once across all connections (the chart's limit is 512Mi):
# 32 bodies of the largest size. Beyond it a request is refused with 503 and Retry-After: the
# body itself is acceptable, the server is busy for the moment (413 would say "never send this").
BODY_BUDGET_BYTES: Final = 32 * MAX_BODY_BYTES
# A hand-made hook without ?automatedbuild= is HMACed once per distinct secret of its repository:
# bounded, so that 1,000 AutomatedBuilds of one repository do not cost 1,000 HMACs per request.
# Deliveries for more secrets than this must name their AutomatedBuild (?automatedbuild=NS/NAME).
MAX_CANDIDATE_SECRETS: Final = 16
# A connection must finish its request headers (and an idle keep-alive connection send its next
# request) within this: GitHub gives up on a delivery after 10 s.
HEADER_TIMEOUT_SECONDS: Final = 10.0
# Open connections; beyond, a new one gets 503 and is closed. An Ingress pools up to a few
# hundred upstream connections (ingress-nginx: 320), and make bench's sender up to 512; each
# costs aiohttp a 64 KiB read buffer at most (bodies count against BODY_BUDGET_BYTES).
MAX_CONNECTIONS: Final = 1024
# Work on fewer bytes than this runs inline: a worker-thread hop costs more than parsing or
# hashing a real push (~8 KB), and 64 KiB of adversarial JSON parses in ~3 ms.
INLINE_WORK_BYTES: Final = 64 * 1024
# Worker threads for parsing and HMACs: one lane for deliveries addressed to one AutomatedBuild
# (one HMAC, then a parse only once verified) and one for hand-made hooks (parse first, then
# HMACs), so a flood of the second kind queues behind itself, not in front of signed hooks.
_ADDRESSED_WORKERS: Final = 2
_UNADDRESSED_WORKERS: Final = 1
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


_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str, limit: int = 300) -> str:
    """``text`` cut to ``limit`` characters, control characters escaped (``\\x0d``): request
    values are percent-decoded, and a CR/LF in one must not start a forged log line."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text[:limit])


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


# The one answer for "unknown" and "not verified" on /hooks/*: an unknown repository, an unknown
# or mismatched ?automatedbuild=, a missing or wrong signature all look the same.
NOT_VERIFIED: Final = _error(401, "no AutomatedBuild verifies this delivery")
_NO_TRIGGER: Final = {"error": "no such build trigger"}

_T = TypeVar("_T")


class RunCPU(Protocol):
    """Runs CPU work (parsing, HMACs) and gives its result: the web layer uses a worker thread."""

    def __call__(self, work: Callable[[], _T]) -> Awaitable[_T]:
        """The result of ``work()``."""


@dataclass(frozen=True)
class Screen:
    """What the headers of a delivery allow, before its body is read: the event, and the one
    AutomatedBuild it is addressed to (None: a hand-made hook, matched by repository)."""

    event: str
    target: HookTarget | None = None


class Receiver:
    """Decides what a delivery does: screen the headers, verify, parse, match, dedupe. No I/O
    apart from reading the index; the web layer submits and then calls :meth:`remember`.

    The steps are separate so that the web layer can refuse before reading the body
    (:meth:`screen`) and run the CPU steps (:meth:`verify_addressed`, :meth:`parse`,
    :meth:`verify_candidates`) in a worker thread; :meth:`receive` runs them all in order."""

    def __init__(
        self,
        index: TargetIndex,
        *,
        delivery_memory: int = DELIVERY_MEMORY,
        max_candidate_secrets: int = MAX_CANDIDATE_SECRETS,
    ) -> None:
        self._index = index
        self._log = DeliveryLog(delivery_memory)
        self._max_secrets = max_candidate_secrets

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
        screened = self.screen(provider, headers, addressed)
        if isinstance(screened, Answer):
            return screened
        if not self.verify_addressed(provider, headers, body, screened):
            return NOT_VERIFIED
        parsed = self.parse(provider, headers, body, screened)
        if isinstance(parsed, Answer):
            return parsed
        candidates = self.candidates(provider, parsed, screened)
        if isinstance(candidates, Answer):
            return candidates
        verified = self.verify_candidates(provider, headers, body, screened, candidates)
        return self.conclude(provider, headers, parsed, verified)

    def screen(
        self, provider: Provider, headers: Mapping[str, str], addressed: tuple[str, str] | None
    ) -> Screen | Answer:
        """Step 1, on the headers alone (before the body is read): the event header, and for an
        addressed hook that object, its provider and its secret (GitLab: the token itself)."""
        scheme = _SCHEMES[provider]
        event = headers.get(scheme.event_header, "").strip()
        if not event:
            return _error(400, f"missing {scheme.event_header} header")
        if addressed is None:
            return Screen(event)
        target = self._index.target(*addressed)
        proof = headers.get(scheme.signature_header)
        if (
            target is None
            or not target.secret
            or target.provider not in (provider, Provider.GIT)
            or not proof
            or (not scheme.signs_body and not verify_token(target.secret, proof))
        ):
            return NOT_VERIFIED
        return Screen(event, target)

    @staticmethod
    def verify_addressed(
        provider: Provider, headers: Mapping[str, str], body: bytes, screen: Screen
    ) -> bool:
        """Step 2 (CPU, any thread): the signature of an addressed delivery, before its body
        is parsed. True for a hand-made hook (verified later, per candidate)."""
        scheme = _SCHEMES[provider]
        if screen.target is None or not scheme.signs_body:
            return True  # GitLab's token was compared by screen()
        return verify_sha256(screen.target.secret, body, headers.get(scheme.signature_header))

    @staticmethod
    def parse(
        provider: Provider, headers: Mapping[str, str], body: bytes, screen: Screen
    ) -> Delivery | Answer:
        """Step 3 (CPU, any thread): the body as a delivery, or the 400 that refuses it."""
        try:
            return parse_delivery(provider, screen.event, body, headers.get("Content-Type", ""))
        except PayloadError as exc:
            return _error(400, str(exc))

    def candidates(
        self, provider: Provider, delivery: Delivery, screen: Screen
    ) -> list[HookTarget] | Answer:
        """Step 4 (reads the index: on the event loop): the AutomatedBuilds the delivery may
        build; the addressed one only if it builds the delivery's repository."""
        if not delivery.repo_keys:
            # An organisation hook's ping or another event without a repository: nothing to
            # verify it against, and nothing happens.
            if delivery.kind is DeliveryKind.PING:
                return Answer(200, {"status": "pong"})
            return Answer(202, {"status": "ignored", "event": delivery.event[:100]})
        targets = self._targets(provider, delivery.repo_keys)
        if screen.target is not None:
            wanted = (screen.target.namespace, screen.target.name)
            targets = [t for t in targets if (t.namespace, t.name) == wanted]
        return targets if targets else NOT_VERIFIED

    def verify_candidates(
        self,
        provider: Provider,
        headers: Mapping[str, str],
        body: bytes,
        screen: Screen,
        targets: Sequence[HookTarget],
    ) -> list[HookTarget]:
        """Step 5 (CPU, any thread): the candidates whose secret verifies the delivery. One
        HMAC per distinct secret, at most ``max_candidate_secrets`` of them (in namespace/name
        order); an addressed delivery was verified in step 2."""
        if screen.target is not None:
            return list(targets)
        scheme = _SCHEMES[provider]
        proof = headers.get(scheme.signature_header)
        if not proof:
            return []
        by_secret: dict[bytes, list[HookTarget]] = {}
        for target in targets:
            if target.secret:
                by_secret.setdefault(target.secret, []).append(target)
        if len(by_secret) > self._max_secrets:
            log.warning(
                "%s delivery: %d distinct webhook secrets for one repository, trying the first"
                " %d; add ?automatedbuild=NS/NAME to the hook URL",
                provider.value,
                len(by_secret),
                self._max_secrets,
            )
        verified: list[HookTarget] = []
        for secret in list(by_secret)[: self._max_secrets]:
            if (
                verify_sha256(secret, body, proof)
                if scheme.signs_body
                else verify_token(secret, proof)
            ):
                verified.extend(by_secret[secret])
        return sorted(verified, key=lambda t: (t.namespace, t.name))

    def conclude(
        self,
        provider: Provider,
        headers: Mapping[str, str],
        delivery: Delivery,
        verified: Sequence[HookTarget],
    ) -> Answer:
        """Step 6 (on the event loop: the delivery log): the answer to a verified delivery."""
        if not verified:
            return NOT_VERIFIED
        event = delivery.event
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

    async def receive_async(
        self,
        provider: Provider,
        headers: Mapping[str, str],
        body: bytes,
        screen: Screen,
        run: RunCPU,
    ) -> Answer:
        """:meth:`receive` after :meth:`screen`, with the CPU steps over more than
        :data:`INLINE_WORK_BYTES` handed to ``run`` (smaller ones cost less than the hop)."""

        async def cpu(cost: int, work: Callable[[], _T]) -> _T:
            return work() if cost <= INLINE_WORK_BYTES else await run(work)

        size = len(body)
        if not await cpu(size, lambda: self.verify_addressed(provider, headers, body, screen)):
            return NOT_VERIFIED
        parsed = await cpu(size, lambda: self.parse(provider, headers, body, screen))
        if isinstance(parsed, Answer):
            return parsed
        candidates = self.candidates(provider, parsed, screen)
        if isinstance(candidates, Answer):
            return candidates
        if screen.target is None:
            secrets = min(len({t.secret for t in candidates if t.secret}), self._max_secrets)
            verified = await cpu(
                size * secrets,
                lambda: self.verify_candidates(provider, headers, body, screen, candidates),
            )
        else:
            verified = candidates
        return self.conclude(provider, headers, parsed, verified)

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
        time); 404 for anything else: a wrong token, an object without a trigger URL (unknown,
        no ``triggerSecret``, or its Secret or key missing). One answer, so the URL does not
        tell which AutomatedBuilds exist or have a trigger."""
        expected = self._index.trigger_token(namespace, name)
        given = token.encode("utf-8", "replace")
        if not expected:
            # Compare anyway: the time of the answer does not tell either.
            hmac.compare_digest(given, given)
            return 404
        return 200 if hmac.compare_digest(expected, given) else 404


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
    """One line per request, without query strings or trigger tokens, control characters
    escaped."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %d %.1fms",
            printable(request.method, 20),
            printable(redact_path(request.path)),
            response.status,
            time * 1000,
        )


class BodyBudget:
    """The bytes of request bodies the server buffers at once, across all connections."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_flight = 0

    def reserve(self, size: int) -> bool:
        """Take ``size`` bytes of the budget; False (nothing taken) when they are not left."""
        if self.in_flight + size > self.capacity:
            return False
        self.in_flight += size
        return True

    def release(self, size: int) -> None:
        """Give back what :meth:`reserve` took."""
        self.in_flight = max(0, self.in_flight - size)


# The body bytes a request took from the BodyBudget.
_RESERVED: Final = web.RequestKey("autobuild.reserved", int)


def _busy(message: str) -> web.Response:
    return web.json_response({"error": message}, status=503, headers={"Retry-After": "10"})


async def _read_body(request: web.Request, limit: int, timeout: float) -> bytes | web.Response:
    """The whole body, or the answer that refuses it: 413 too large, 408 too slow (a client
    that sends headers and then trickles or withholds the body must not hold a handler), 400
    broken framing."""
    if request.content_length is not None and request.content_length > limit:
        return web.json_response({"error": f"body larger than {limit} bytes"}, status=413)
    try:
        async with asyncio.timeout(timeout):
            body = await request.content.read(limit + 1)
            while len(body) <= limit and not request.content.at_eof():
                more = await request.content.read(limit + 1 - len(body))
                if not more:
                    break
                body += more
    except TimeoutError:
        return web.json_response({"error": f"body not received within {timeout:g}s"}, status=408)
    except (HttpProcessingError, ConnectionError):
        return web.json_response({"error": "malformed or interrupted body"}, status=400)
    if len(body) > limit:
        return web.json_response({"error": f"body larger than {limit} bytes"}, status=413)
    return body


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


class _Lane:
    """Worker threads for CPU work off the event loop. hashlib releases the GIL while it
    hashes; json.loads does not, which the body cap bounds (~50 ms for 1 MiB)."""

    def __init__(self, workers: int, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)

    def __call__(self, work: Callable[[], _T]) -> Awaitable[_T]:
        return asyncio.get_running_loop().run_in_executor(self._pool, work)

    def close(self) -> None:
        """Stop the threads; queued work is dropped (its requests are gone with the server)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def create_app(
    index: TargetIndex,
    submit: SubmitPush,
    submit_trigger: SubmitTrigger,
    *,
    metrics: Metrics | None = None,
    max_body: int = MAX_BODY_BYTES,
    delivery_memory: int = DELIVERY_MEMORY,
    body_timeout: float = BODY_TIMEOUT_SECONDS,
    body_budget: int = BODY_BUDGET_BYTES,
    max_candidate_secrets: int = MAX_CANDIDATE_SECRETS,
) -> web.Application:
    """The aiohttp application of the webhook server (routes in the module docstring);
    ``metrics`` are the operator's (a fresh set when None, so /metrics always answers)."""
    receiver = Receiver(
        index, delivery_memory=delivery_memory, max_candidate_secrets=max_candidate_secrets
    )
    metrics = metrics if metrics is not None else Metrics()
    budget = BodyBudget(body_budget)
    addressed_lane = _Lane(_ADDRESSED_WORKERS, "autobuild-hooks")
    unaddressed_lane = _Lane(_UNADDRESSED_WORKERS, "autobuild-hooks-bulk")
    app = web.Application(client_max_size=max_body, middlewares=[_counting(metrics)])

    async def close_lanes(app: web.Application) -> None:
        addressed_lane.close()
        unaddressed_lane.close()

    app.on_cleanup.append(close_lanes)

    async def budgeted_body(request: web.Request, limit: int) -> bytes | web.Response:
        """The body within the budget of bytes in flight; the bytes are given back when the
        request's answer is prepared (the handler holds the body until then)."""
        size = min(request.content_length if request.content_length is not None else limit, limit)
        if not budget.reserve(size):
            return _busy("too many request bodies in flight, retry later")
        request[_RESERVED] = size
        return await _read_body(request, limit, body_timeout)

    @web.middleware
    async def give_back(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        finally:
            budget.release(request.get(_RESERVED, 0))
        if request.body_exists and not request.content.at_eof():
            # Refused before its body was read (or read whole): close the connection rather
            # than let aiohttp read and discard the rest, for up to 10 s, on the event loop.
            response.force_close()
        return response

    app.middlewares.append(give_back)

    def hook(provider: Provider) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.StreamResponse:
            raw = request.query.get("automatedbuild")
            addressed = addressed_to(raw)
            screened: Screen | Answer = (
                NOT_VERIFIED
                if raw is not None and addressed is None
                else receiver.screen(provider, request.headers, addressed)
            )
            if isinstance(screened, Answer):
                answer = screened  # refused before the body is read
            else:
                body = await budgeted_body(request, max_body)
                if isinstance(body, web.Response):
                    return body
                lane = addressed_lane if screened.target is not None else unaddressed_lane
                answer = await receiver.receive_async(
                    provider, request.headers, body, screened, lane
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
                printable(delivery_id_of(provider, request.headers) or "-"),
                answer.status,
                printable(str(answer.body.get("status") or answer.body.get("error"))),
            )
            return web.json_response(dict(answer.body), status=answer.status)

        return handle

    async def trigger(request: web.Request) -> web.StreamResponse:
        namespace = request.match_info["namespace"]
        name = request.match_info["name"]
        where = f"{printable(namespace, 100)}/{printable(name, 100)}"
        verdict = receiver.authorize_trigger(namespace, name, request.match_info["token"])
        if verdict != 200:
            log.info("trigger URL: %d for %s", verdict, where)
            return web.json_response(_NO_TRIGGER, status=404)
        body = await budgeted_body(request, MAX_TRIGGER_BODY_BYTES)
        if isinstance(body, web.Response):
            return body
        try:
            payload = json.loads(body) if body.strip() else None
            trigger_request = TriggerURLRequest.parse(payload)
        except RecursionError:
            return web.json_response({"error": "JSON nested too deeply"}, status=400)
        except (UnicodeDecodeError, ValueError) as exc:  # InputError is a ValueError
            message = str(exc) if isinstance(exc, checks.InputError) else f"not JSON: {exc}"
            return web.json_response({"error": message}, status=400)
        try:
            submit_trigger(namespace, name, trigger_request)
        except Exception:
            log.exception("trigger URL for %s: could not queue the build", where)
            return web.json_response({"error": "could not queue the build"}, status=500)
        log.info("trigger URL: %s, %s", where, trigger_request.scope.value)
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


_BUSY_CONNECTION: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 10\r\nContent-Length: 0\r\n"
    b"Connection: close\r\n\r\n"
)


class _Refuse(asyncio.Protocol):
    """A connection beyond :data:`MAX_CONNECTIONS`: answered 503 and closed at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)
        stream.write(_BUSY_CONNECTION)
        stream.close()


class _LimitedSite(web.TCPSite):
    """A TCPSite that refuses connections beyond ``max_connections`` (aiohttp has no limit)."""

    def __init__(
        self, runner: web.AppRunner, host: str, port: int, *, max_connections: int
    ) -> None:
        super().__init__(runner, host, port, backlog=min(128, max_connections))
        self._max_connections = max_connections

    async def start(self) -> None:
        """Listen, as TCPSite does, through a factory that counts the open connections."""
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        limit = self._max_connections

        def protocol() -> asyncio.BaseProtocol:
            if len(server.connections) >= limit:
                return _Refuse()
            return server()

        self._server = await asyncio.get_running_loop().create_server(
            protocol, self._host, self._port, backlog=self._backlog, reuse_address=True
        )


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


async def start_server(
    app: web.Application,
    address: str = DEFAULT_ADDRESS,
    *,
    header_timeout: float = HEADER_TIMEOUT_SECONDS,
    max_connections: int = MAX_CONNECTIONS,
) -> WebhookServer:
    """Serve ``app`` on ``address`` (``HOST:PORT``) on the running event loop. A connection
    that does not finish its headers (or stays idle between requests) for ``header_timeout``
    is closed; beyond ``max_connections`` open ones a new one gets 503."""
    host, port = parse_address(address)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log_class=_AccessLogger,
        access_log=access_log,
        logger=server_log,
        # aiohttp closes a connection whose handler waits for a request this long: from the
        # connection's start (headers never finished) and between keep-alive requests.
        keepalive_timeout=header_timeout,
    )
    await runner.setup()
    try:
        await _LimitedSite(runner, host, port, max_connections=max_connections).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = int(runner.addresses[0][1])
    log.info("webhook server listening on %s:%d", host, bound_port)
    return WebhookServer(runner, host, bound_port)
