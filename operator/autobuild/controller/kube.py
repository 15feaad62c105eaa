"""Kubernetes calls of the CLI (``autobuild trigger|cancel|logs``), through the official
(synchronous) client, off the event loop. The operator itself uses ``kubeapi.KubeApi``."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from typing import Any, Final, TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from autobuild import API_GROUP, API_VERSION, PLURAL
from autobuild.planning.job import LABEL_UID
from autobuild.planning.triggers import ANNOTATION_TRIGGER, TriggerRequest, append_request

T = TypeVar("T")
Obj = dict[str, Any]
_CONFLICT_RETRIES: Final = 10


def load_config() -> None:
    """Use the in-cluster service account, else KUBECONFIG / ~/.kube/config."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
    else:
        # Read KUBECONFIG now: the client library captures it once, at import.
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))


async def _call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(function, *args, **kwargs)


async def get_automated_build(namespace: str, name: str) -> Obj | None:
    """The AutomatedBuild, or None if it is gone."""
    try:
        found: Obj = await _call(
            client.CustomObjectsApi().get_namespaced_custom_object,
            API_GROUP,
            API_VERSION,
            namespace,
            PLURAL,
            name,
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return found


async def append_trigger(namespace: str, name: str, request: TriggerRequest) -> None:
    """Append a build request to the trigger annotation. The patch names the resourceVersion
    it read, so a trigger written in between is never overwritten: read again and retry."""
    api = client.CustomObjectsApi()
    for _ in range(_CONFLICT_RETRIES):
        body = await get_automated_build(namespace, name)
        if body is None:
            raise LookupError(f"AutomatedBuild {namespace}/{name} not found")
        meta = body["metadata"]
        value = (meta.get("annotations") or {}).get(ANNOTATION_TRIGGER)
        patch = {
            "metadata": {
                "resourceVersion": meta["resourceVersion"],
                "annotations": {ANNOTATION_TRIGGER: append_request(value, request)},
            }
        }
        try:
            await _call(
                api.patch_namespaced_custom_object,
                API_GROUP,
                API_VERSION,
                namespace,
                PLURAL,
                name,
                patch,
            )
            return
        except ApiException as exc:
            if exc.status != 409:
                raise
    raise RuntimeError(f"AutomatedBuild {namespace}/{name} kept changing; try again")


async def list_jobs(namespace: str, uid: str) -> list[Obj]:
    """The build Jobs of one AutomatedBuild, as plain JSON dicts."""
    response = await _call(
        client.BatchV1Api().list_namespaced_job,
        namespace,
        label_selector=f"{LABEL_UID}={uid}",
        _preload_content=False,
    )
    items: list[Obj] = json.loads(response.data)["items"]
    return items


async def patch_job(namespace: str, name: str, patch: Obj) -> None:
    """Merge-patch a Job (cancel); a Job that is gone needs nothing."""
    try:
        await _call(client.BatchV1Api().patch_namespaced_job, name, namespace, patch)
    except ApiException as exc:
        if exc.status != 404:
            raise
