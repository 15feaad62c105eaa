"""kopf registrations: every watch event funnels into the one level-based reconcile.

Only event handlers and an index are used (no kopf timers, daemons or change handlers): none
of them makes kopf add finalizers or store state in the objects, so an idle restart writes
nothing, and the operator writes only status. Retries of not-Ready objects run in memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, cast

import kopf

from autobuild import API_GROUP, API_VERSION, PLURAL
from autobuild.controller import kube
from autobuild.controller.probes import Probes
from autobuild.controller.reconcile import (
    Reporter,
    reconcile,
    retry_not_ready,
)
from autobuild.planning.job import LABEL_UID
from autobuild.settings import BuildSettings

SETTINGS = BuildSettings.from_env()


class KopfReporter(Reporter):
    """Posts Events through kopf's event poster."""

    def event(self, body: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        """Post an Event about ``body``."""
        super().event(body, kind, reason, message)
        # kopf.event only reads apiVersion, kind and metadata of the body it is given.
        kopf.event(cast(kopf.Body, body), type=kind, reason=reason, message=message[:1024])


REPORTER = KopfReporter()
PROBES = Probes()
_background: set[asyncio.Task[None]] = set()


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Client config, and kopf settings that keep its own bookkeeping out of our objects."""
    kube.load_config()
    for work in (PROBES.heartbeat(), retry_not_ready(SETTINGS, REPORTER)):
        _background.add(asyncio.create_task(work))  # the loop keeps only weak references
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.networking.error_backoffs = [1, 2, 5, 10]
    settings.persistence.finalizer = "autobuild.dev/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="autobuild.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="autobuild.dev", key="last-handled-configuration"
    )


@kopf.index(API_GROUP, API_VERSION, PLURAL)
def by_uid(uid: str, namespace: str | None, name: str, **_: Any) -> dict[str, tuple[str, str]]:
    """AutomatedBuilds by uid, so Job and Pod events find their owner without an API call."""
    return {uid: (namespace or "", name)}


@kopf.on.event(API_GROUP, API_VERSION, PLURAL)
async def automated_build_event(type: str, namespace: str | None, name: str, **_: Any) -> None:
    """Any change of an AutomatedBuild (and the initial listing after a restart)."""
    if type == "DELETED" or namespace is None:
        return
    await reconcile(namespace, name, SETTINGS, REPORTER)


async def _owner_changed(labels: Mapping[str, str], indexes: Mapping[str, Any]) -> None:
    owners: kopf.Index[str, tuple[str, str]] = indexes["by_uid"]
    for namespace, name in owners.get(labels.get(LABEL_UID, ""), []):
        await reconcile(namespace, name, SETTINGS, REPORTER)


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_UID: kopf.PRESENT})
async def job_event(labels: Mapping[str, str], **kwargs: Any) -> None:
    """A build Job moved: update its AutomatedBuild's status and queue."""
    await _owner_changed(labels, kwargs)


@kopf.on.event("", "v1", "pods", labels={LABEL_UID: kopf.PRESENT})
async def pod_event(labels: Mapping[str, str], **kwargs: Any) -> None:
    """A build Pod moved (started, image pull errors, finished)."""
    await _owner_changed(labels, kwargs)
