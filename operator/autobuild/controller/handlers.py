"""What kopf does here: it runs the process. ``autobuild run`` calls ``kopf.run``, whose start-up
activity (:func:`start`) starts the controller, whose cleanup activity (:func:`stop`) stops it
on SIGTERM/SIGINT, and whose logging configuration (``--verbose``, ``--log-format``) every
logger uses. The probes are the operator's own (:mod:`autobuild.controller.probes`), not kopf's.

kopf's per-object machinery is not used for resources: its ``@kopf.index`` readiness barrier is
quadratic in the number of objects at start-up, and its handlers never retry ``on.event`` work.
The controller lists and watches AutomatedBuilds, their Jobs and Pods and the Secrets they
reference into one in-memory store, and reconciles from there (``reconcile.py``). Nothing here
writes to objects, so an idle restart writes nothing; the one finalizer (``autobuild.dev/github-
hook``) is added by the reconcile, only to objects whose GitHub webhook it registers.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import kopf

from autobuild.controller.kubeapi import KubeApi
from autobuild.controller.leader import ElectionConfig
from autobuild.controller.probes import Probes
from autobuild.controller.reconcile import Controller
from autobuild.settings import BuildSettings, GitHubSettings

PROBES = Probes()
_READINESS_SECONDS = 1.0
log = logging.getLogger("autobuild.handlers")


@dataclass
class Runtime:
    """What ``autobuild run`` configures before kopf starts, and what start-up creates."""

    namespaces: list[str] = field(default_factory=list)
    webhook_address: str | None = None
    # None: no leader election (this replica always leads).
    election: ElectionConfig | None = None
    controller: Controller | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


RUNTIME = Runtime()


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Start the controller and the heartbeat; readiness follows the controller's first sync."""
    settings.posting.level = logging.WARNING
    # No kopf handler watches a resource, so kopf's watch of CustomResourceDefinitions (to find
    # new resources for them) has nothing to serve: without it the operator needs no RBAC on
    # CRDs. Start-up activities finish before kopf's observers start, so this takes effect.
    settings.scanning.disabled = True
    controller = Controller(
        KubeApi(),
        BuildSettings.from_env(),
        RUNTIME.namespaces,
        webhook_address=RUNTIME.webhook_address,
        github=GitHubSettings.from_env(),
        election=RUNTIME.election,
    )
    RUNTIME.controller = controller

    async def follow_readiness() -> None:
        while True:
            if controller.ready():
                PROBES.ready.set()
            else:
                PROBES.ready.clear()
            await asyncio.sleep(_READINESS_SECONDS)

    for work in (controller.run(), PROBES.heartbeat(), follow_readiness()):
        RUNTIME.tasks.append(asyncio.create_task(work))


@kopf.on.cleanup()
async def stop(**_: Any) -> None:
    """Stop the controller's tasks (a leader stops reconciling, then releases its Lease) and
    close its API client."""
    for task in RUNTIME.tasks:
        task.cancel()
    await asyncio.gather(*RUNTIME.tasks, return_exceptions=True)
    RUNTIME.tasks.clear()
    if RUNTIME.controller is not None:
        await RUNTIME.controller.api.close()
