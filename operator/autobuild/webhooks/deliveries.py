"""Provider deliveries -> push events. Pure: JSON in, :class:`Delivery` out; no I/O, no secrets.

Each parser reads only the fields it needs from the provider's documented payload and accepts
anything else in it. A payload without the fields a push needs raises :class:`PayloadError`
(HTTP 400). A ref that cannot build (deleted, not a branch or tag, an unsafe name) becomes a
note in :attr:`Delivery.skipped`, not an error: the sender did nothing wrong.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Final
from urllib.parse import parse_qs

from autobuild.api import checks
from autobuild.api.models import Provider, Trigger
from autobuild.planning.planner import PushEvent, delivery_key
from autobuild.webhooks.repokey import repo_key

__all__ = [
    "MAX_AUTHOR_CHARS",
    "MAX_FORM_FIELDS",
    "MAX_MESSAGE_CHARS",
    "Delivery",
    "DeliveryKind",
    "PayloadError",
    "decode_body",
    "parse_bitbucket",
    "parse_delivery",
    "parse_github",
    "parse_gitlab",
]

# COMMIT_MSG becomes a build arg in the Job manifest: keep it the size of one.
MAX_MESSAGE_CHARS: Final = 4096
MAX_AUTHOR_CHARS: Final = 256
# GitHub's form-encoded deliveries have one field, ``payload``: a body with more is not one,
# and splitting a 1 MiB body into ~250,000 fields is what made a form body cost seconds.
MAX_FORM_FIELDS: Final = 8
_ZERO_COMMIT: Final = re.compile(r"^0+$")
_BRANCH_PREFIX: Final = "refs/heads/"
_TAG_PREFIX: Final = "refs/tags/"


class PayloadError(ValueError):
    """The body is not a delivery this receiver can read (HTTP 400). Safe to show the sender."""


class DeliveryKind(Enum):
    """What a verified delivery asks for."""

    PING = "ping"
    PUSH = "push"
    IGNORED = "ignored"


@dataclass(frozen=True)
class Delivery:
    """A parsed delivery: which repository, and the refs it moved.

    ``repo_keys`` holds every key the payload names the repository by (html and clone URLs);
    it is empty only for events without a repository (a GitHub organisation hook's ping).
    """

    kind: DeliveryKind
    event: str
    repo_keys: frozenset[str]
    pushes: tuple[PushEvent, ...] = ()
    skipped: tuple[str, ...] = ()

    def with_delivery_id(self, delivery_id: str) -> Delivery:
        """This delivery with the provider's delivery id (a header) on each of its pushes,
        so that a redelivery builds nothing after a restart too."""
        pushes = tuple(
            replace(push, delivery=delivery_key(push.delivery.partition(":")[0], delivery_id))
            for push in self.pushes
        )
        return replace(self, pushes=pushes)


def decode_body(body: bytes, content_type: str) -> Any:
    """Decode a JSON body; GitHub's ``application/x-www-form-urlencoded`` form carries it in
    the ``payload`` field. Raises PayloadError for anything that is not a JSON object."""
    if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
        try:
            fields = parse_qs(
                body.decode("utf-8"), strict_parsing=True, max_num_fields=MAX_FORM_FIELDS
            )
        except (UnicodeDecodeError, ValueError) as exc:
            raise PayloadError("form body is not valid application/x-www-form-urlencoded") from exc
        if len(fields.get("payload", ())) != 1:
            raise PayloadError("form body needs exactly one 'payload' field")
        text: str | bytes = fields["payload"][0]
    else:
        text = body
    try:
        payload = json.loads(text)
    except RecursionError as exc:  # not a 500 with a traceback per request
        raise PayloadError("body is JSON nested too deeply") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise PayloadError("body must be a JSON object")
    return payload


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise PayloadError(f"{where} must be a JSON object")
    return value


def _optional_object(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise PayloadError(f"{where} must be a non-empty string")
    return value


def _text(value: Any, limit: int) -> str:
    """A free-text field (message, author), or '' when absent; cut to ``limit`` characters."""
    return value[:limit] if isinstance(value, str) else ""


def _person(name: Any, email: Any) -> str:
    name_text, email_text = _text(name, MAX_AUTHOR_CHARS), _text(email, MAX_AUTHOR_CHARS)
    # GitLab sends "[REDACTED]" for private emails: keep only what says something.
    if email_text and not email_text.startswith("["):
        return f"{name_text} <{email_text}>"[:MAX_AUTHOR_CHARS].strip()
    return name_text


def _keys(*urls: Any) -> frozenset[str]:
    keys: set[str] = set()
    for url in urls:
        if isinstance(url, str) and url:
            try:
                keys.add(repo_key(url))
            except ValueError:
                continue  # an ssh or API URL: another field names the repository
    return frozenset(keys)


def _timestamp(value: Any) -> datetime | None:
    """A commit's ISO 8601 time from a payload (UTC when it names no offset); None when
    absent or unreadable: then the push is checked against the repository's heads."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _event(
    provider: Provider,
    ref: str,
    commit: str,
    message: Any,
    author: str,
    skipped: list[str],
    commit_time: Any = None,
) -> PushEvent | None:
    """A push event for one moved ref, or None (with a note) when it cannot build. It names
    the provider as its delivery (the receiver adds the id) and carries the commit's time."""
    if _ZERO_COMMIT.match(commit):
        skipped.append(f"{ref} was deleted: nothing to build")
        return None
    if not ref.startswith((_BRANCH_PREFIX, _TAG_PREFIX)):
        skipped.append(f"{ref[:200]} is not a branch or tag: nothing to build")
        return None
    try:
        return PushEvent.parse(
            ref,
            commit,
            _text(message, MAX_MESSAGE_CHARS),
            Trigger.PUSH,
            author=author,
            delivery=delivery_key(provider.value, ""),
            commit_time=_timestamp(commit_time),
        )
    except checks.InputError as exc:
        skipped.append(f"{ref[:200]} cannot build: {exc}")
        return None


def parse_github(event: str, payload: Mapping[str, Any]) -> Delivery:
    """A GitHub (or Gitea/Forgejo, which send the same events) delivery: ``push`` or ``ping``.

    For an annotated tag ``after`` is the tag object; ``head_commit.id`` is the commit it
    points to, which is what builds.
    """
    repository = _optional_object(payload.get("repository"))
    keys = _keys(repository.get("html_url"), repository.get("clone_url"))
    if not keys and isinstance(repository.get("full_name"), str):
        keys = _keys("github.com/" + repository["full_name"])
    if event == "ping":
        return Delivery(DeliveryKind.PING, event, keys)
    if event != "push":
        return Delivery(DeliveryKind.IGNORED, event, keys)
    if not keys:
        raise PayloadError("push payload names no repository (repository.html_url)")
    ref = _string(payload.get("ref"), "ref")
    after = _string(payload.get("after"), "after")
    skipped: list[str] = []
    if payload.get("deleted") is True:
        skipped.append(f"{ref[:200]} was deleted: nothing to build")
        return Delivery(DeliveryKind.PUSH, event, keys, (), tuple(skipped))
    head = _optional_object(payload.get("head_commit"))
    head_id = head.get("id")
    commit = head_id if isinstance(head_id, str) else after
    author = _optional_object(head.get("author"))
    found = _event(
        Provider.GITHUB,
        ref,
        commit,
        head.get("message"),
        _person(author.get("name"), author.get("email")),
        skipped,
        head.get("timestamp"),
    )
    return Delivery(DeliveryKind.PUSH, event, keys, (found,) if found else (), tuple(skipped))


_BITBUCKET_REF_PREFIX: Final = {"branch": _BRANCH_PREFIX, "tag": _TAG_PREFIX}


def parse_bitbucket(event: str, payload: Mapping[str, Any]) -> Delivery:
    """A Bitbucket Cloud delivery: ``repo:push`` with one entry per moved ref in
    ``push.changes[]`` (``new`` is null when the ref was deleted)."""
    repository = _optional_object(payload.get("repository"))
    links = _optional_object(_optional_object(repository.get("links")).get("html"))
    keys = _keys(links.get("href"))
    if not keys and isinstance(repository.get("full_name"), str):
        keys = _keys("bitbucket.org/" + repository["full_name"])
    if event != "repo:push":
        return Delivery(DeliveryKind.IGNORED, event, keys)
    if not keys:
        raise PayloadError("repo:push payload names no repository (repository.links.html.href)")
    changes = _object(payload.get("push"), "push").get("changes")
    if not isinstance(changes, list):
        raise PayloadError("push.changes must be a JSON array")
    pushes: list[PushEvent] = []
    skipped: list[str] = []
    for index, raw_change in enumerate(changes):
        change = _object(raw_change, f"push.changes[{index}]")
        new = change.get("new")
        if new is None:
            old = _optional_object(change.get("old"))
            skipped.append(f"{old.get('type', 'ref')} {old.get('name', '?')!s:.200} was deleted")
            continue
        new = _object(new, f"push.changes[{index}].new")
        name = _string(new.get("name"), f"push.changes[{index}].new.name")
        prefix = _BITBUCKET_REF_PREFIX.get(str(new.get("type")))
        if prefix is None:
            skipped.append(f"{new.get('type')!s:.50} {name:.200} is not a branch or tag")
            continue
        target = _object(new.get("target"), f"push.changes[{index}].new.target")
        commit = _string(target.get("hash"), f"push.changes[{index}].new.target.hash")
        author = _optional_object(target.get("author"))
        found = _event(
            Provider.BITBUCKET,
            prefix + name,
            commit,
            target.get("message"),
            _text(author.get("raw"), MAX_AUTHOR_CHARS),
            skipped,
            target.get("date"),
        )
        if found is not None:
            pushes.append(found)
    return Delivery(DeliveryKind.PUSH, event, keys, tuple(pushes), tuple(skipped))


_GITLAB_PUSH_EVENTS: Final = frozenset({"Push Hook", "Tag Push Hook"})


def parse_gitlab(event: str, payload: Mapping[str, Any]) -> Delivery:
    """A GitLab delivery: ``Push Hook`` or ``Tag Push Hook``.

    ``checkout_sha`` is the commit (for an annotated tag ``after`` is the tag object) and is
    null when the ref was deleted. Tag pushes carry no commits; their ``message`` is the tag's.
    """
    project = _optional_object(payload.get("project"))
    repository = _optional_object(payload.get("repository"))
    keys = _keys(
        project.get("git_http_url"),
        project.get("web_url"),
        repository.get("git_http_url"),
        repository.get("homepage"),
    )
    if event not in _GITLAB_PUSH_EVENTS:
        return Delivery(DeliveryKind.IGNORED, event, keys)
    if not keys:
        raise PayloadError(f"{event} payload names no repository (project.git_http_url)")
    ref = _string(payload.get("ref"), "ref")
    after = _string(payload.get("after"), "after")
    checkout = payload.get("checkout_sha")
    skipped: list[str] = []
    if checkout is None or _ZERO_COMMIT.match(after):
        skipped.append(f"{ref[:200]} was deleted: nothing to build")
        return Delivery(DeliveryKind.PUSH, event, keys, (), tuple(skipped))
    commit = _string(checkout, "checkout_sha")
    commits = payload.get("commits")
    head: Mapping[str, Any] = next(
        (
            item
            for item in (commits if isinstance(commits, list) else [])
            if isinstance(item, dict) and item.get("id") == commit
        ),
        {},
    )
    if head:
        author = _optional_object(head.get("author"))
        who = _person(author.get("name"), author.get("email"))
        message = head.get("message")
    else:
        who = _person(payload.get("user_name"), payload.get("user_email"))
        message = payload.get("message")
    found = _event(Provider.GITLAB, ref, commit, message, who, skipped, head.get("timestamp"))
    return Delivery(DeliveryKind.PUSH, event, keys, (found,) if found else (), tuple(skipped))


PARSERS: Final[Mapping[Provider, Callable[[str, Mapping[str, Any]], Delivery]]] = {
    Provider.GITHUB: parse_github,
    Provider.BITBUCKET: parse_bitbucket,
    Provider.GITLAB: parse_gitlab,
}


def parse_delivery(provider: Provider, event: str, body: bytes, content_type: str) -> Delivery:
    """Decode and parse one delivery of ``provider``; raises PayloadError (HTTP 400)."""
    parser = PARSERS.get(provider)
    if parser is None:
        raise ValueError(f"no webhook parser for provider {provider.value}")
    return parser(event, decode_body(body, content_type))
