"""Kubernetes effects, through the official (synchronous) client, always off the event loop."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from autobuild import API_GROUP, API_VERSION, PLURAL
from autobuild.planning.job import LABEL_UID

T = TypeVar("T")
Obj = dict[str, Any]


def load_config() -> None:
    """Use the in-cluster service account, else KUBECONFIG / ~/.kube/config."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
    else:
        # Read KUBECONFIG now: the client library captures it once, at import.
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))


async def _call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(function, *args, **kwargs)


async def _owned_by(list_call: Callable[..., Any], namespace: str, uid: str) -> list[Obj]:
    """Objects labelled with an AutomatedBuild's uid, as plain JSON dicts (no client models)."""
    response = await _call(
        list_call, namespace, label_selector=f"{LABEL_UID}={uid}", _preload_content=False
    )
    items: list[Obj] = json.loads(response.data)["items"]
    return items


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


async def patch_status(namespace: str, name: str, resource_version: str, status: Obj) -> str:
    """Replace status fields, only if the object is unchanged since it was read (else 409);
    return the new resourceVersion."""
    body = {"metadata": {"resourceVersion": resource_version}, "status": status}
    written: Obj = await _call(
        client.CustomObjectsApi().patch_namespaced_custom_object_status,
        API_GROUP,
        API_VERSION,
        namespace,
        PLURAL,
        name,
        body,
    )
    return str(written["metadata"]["resourceVersion"])


async def patch_annotations(
    namespace: str, name: str, annotations: Mapping[str, str | None]
) -> None:
    """Set (or, with None, remove) annotations on an AutomatedBuild (``autobuild trigger``)."""
    await _call(
        client.CustomObjectsApi().patch_namespaced_custom_object,
        API_GROUP,
        API_VERSION,
        namespace,
        PLURAL,
        name,
        {"metadata": {"annotations": dict(annotations)}},
    )


async def list_jobs(namespace: str, uid: str) -> list[Obj]:
    """The build Jobs of one AutomatedBuild."""
    return await _owned_by(client.BatchV1Api().list_namespaced_job, namespace, uid)


async def list_pods(namespace: str, uid: str) -> list[Obj]:
    """The build Pods of one AutomatedBuild."""
    return await _owned_by(client.CoreV1Api().list_namespaced_pod, namespace, uid)


async def create_job(namespace: str, job: Obj) -> bool:
    """Create a Job; False when it already exists (409), which means the build is already there."""
    try:
        await _call(client.BatchV1Api().create_namespaced_job, namespace, job)
    except ApiException as exc:
        if exc.status == 409:
            return False
        raise
    return True


async def patch_job(namespace: str, name: str, patch: Obj) -> None:
    """Merge-patch a Job (release from the queue, or cancel)."""
    try:
        await _call(client.BatchV1Api().patch_namespaced_job, name, namespace, patch)
    except ApiException as exc:
        if exc.status != 404:
            raise


async def delete_job(namespace: str, name: str) -> None:
    """Delete a Job and its Pods (history pruning)."""
    try:
        await _call(
            client.BatchV1Api().delete_namespaced_job,
            name,
            namespace,
            propagation_policy="Background",
        )
    except ApiException as exc:
        if exc.status != 404:
            raise


async def read_secret(namespace: str, name: str) -> Obj | None:
    """A Secret's data keys (values stay base64 and are only used by the caller), or None."""
    try:
        secret = await _call(client.CoreV1Api().read_namespaced_secret, name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return dict(secret.data or {})
