"""Manual triggers: the ``autobuild.dev/trigger`` annotation as an ordered list of requests.

Docker Hub's "Trigger" button is a write by a person. Kubernetes gives us one annotation slot, so
two quick triggers must not overwrite each other: ``autobuild trigger`` appends a request to a
JSON list in the annotation (with optimistic concurrency), and the operator handles every request
after the last one it recorded in ``status.lastTrigger``, in order. A plain value (``kubectl
annotate ... autobuild.dev/trigger=anything``) is one request to build every rule at its head.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

ANNOTATION_TRIGGER: Final = "autobuild.dev/trigger"
# Requests kept in the annotation: older ones have long been handled.
KEEP_REQUESTS: Final = 20
# The id of the build a new AutomatedBuild gets (Docker Hub's "Save and build").
CREATE_ID: Final = "create"


@dataclass(frozen=True)
class TriggerRequest:
    """One press of the trigger button: build ``ref`` (every rule's ref if None) at ``commit``
    (the ref's head if None)."""

    id: str
    ref: str | None = None
    commit: str | None = None

    def to_json(self) -> dict[str, str]:
        """The request as it is stored in the annotation."""
        found = {"id": self.id, "ref": self.ref, "commit": self.commit}
        return {key: value for key, value in found.items() if value}


def parse_requests(value: str | None) -> list[TriggerRequest]:
    """The requests in an annotation value: a JSON list from ``autobuild trigger``, or any other
    non-empty text as one request whose id is that text."""
    if not value or not value.strip():
        return []
    try:
        loaded = json.loads(value)
    except ValueError:
        return [TriggerRequest(id=value.strip())]
    if not isinstance(loaded, list):
        return [TriggerRequest(id=value.strip())]
    requests = []
    for item in loaded:
        if isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"]:
            ref, commit = item.get("ref"), item.get("commit")
            requests.append(
                TriggerRequest(
                    id=item["id"],
                    ref=ref if isinstance(ref, str) and ref else None,
                    commit=commit if isinstance(commit, str) and commit else None,
                )
            )
    return requests


def pending_requests(
    requests: Sequence[TriggerRequest], last_handled: str | None
) -> list[TriggerRequest]:
    """The requests after the last handled one, in order. If the last handled id is no longer
    in the list (trimmed, or replaced by hand), ids that sort after it are new: the CLI's ids
    are UTC timestamps."""
    ids = [request.id for request in requests]
    if last_handled is None or last_handled == CREATE_ID:
        return list(requests)  # every request came after the creation build
    if last_handled in ids:
        return list(requests[ids.index(last_handled) + 1 :])
    if len(requests) == 1:  # a plain value: any new value is a new request
        return list(requests)
    return [request for request in requests if request.id > last_handled]


def request_id(now: datetime, nonce: str) -> str:
    """A new request id that sorts after every earlier one: a UTC timestamp, then a nonce."""
    return f"{now.strftime('%Y%m%dT%H%M%S.%fZ')}-{nonce}"


def append_request(value: str | None, request: TriggerRequest) -> str:
    """The annotation value with ``request`` appended, keeping the newest requests only."""
    requests = [r for r in parse_requests(value) if r.id != request.id] + [request]
    kept = requests[-KEEP_REQUESTS:]
    return json.dumps([r.to_json() for r in kept], separators=(",", ":"))
