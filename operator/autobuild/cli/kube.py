"""The CLI's one Kubernetes client: the official (synchronous) client, configured as kubectl
would be. A command is a short sequence of calls, so none of them needs an event loop; the
operator's asynchronous ``controller.kubeapi.KubeApi`` is built for a long-running process.

The official client is heavy to import: only the commands that reach a cluster import this."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from typing import Any, Final

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from autobuild import API_GROUP, API_VERSION, PLURAL
from autobuild.cli.common import CliError
from autobuild.planning.job import LABEL_UID
from autobuild.planning.triggers import ANNOTATION_TRIGGER, TriggerRequest, append_request

Obj = dict[str, Any]
_CONFLICT_RETRIES: Final = 10


class LogReadError(Exception):
    """The API server refused a container's log; the message is its answer."""


def load_kube_config(args: argparse.Namespace) -> None:
    """Client config as kubectl would pick it: ``--kubeconfig`` and ``--context`` when given
    (``kubectl autobuild ... --context NAME``), else in-cluster, KUBECONFIG or ~/.kube/config."""
    kubeconfig, context = args.kubeconfig, args.context
    if kubeconfig is None and context is None:
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config()
        else:
            # Read KUBECONFIG now: the client library captures it once, at import.
            config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
        return
    try:
        config.load_kube_config(
            config_file=kubeconfig or os.environ.get("KUBECONFIG"), context=context
        )
    except (config.ConfigException, OSError) as exc:
        raise CliError(f"kubeconfig: {exc}") from exc


def current_namespace(args: argparse.Namespace) -> str:
    """The namespace of the kubeconfig context in use (``--context``, else the current one)."""
    try:
        contexts, current = config.list_kube_config_contexts(
            config_file=args.kubeconfig or os.environ.get("KUBECONFIG")
        )
    except (config.ConfigException, OSError):
        return "default"
    if args.context is not None:
        current = next((c for c in contexts if c.get("name") == args.context), None)
    return str((current or {}).get("context", {}).get("namespace") or "default")


def automated_build_target(args: argparse.Namespace) -> tuple[str, Obj]:
    """Load client config; return the namespace and the AutomatedBuild named on the command line."""
    load_kube_config(args)
    namespace = args.namespace or current_namespace(args)
    body = get_automated_build(namespace, args.name)
    if body is None:
        raise CliError(f"AutomatedBuild {namespace}/{args.name} not found")
    return namespace, body


def get_automated_build(namespace: str, name: str) -> Obj | None:
    """The AutomatedBuild, or None if it is gone."""
    try:
        found: Obj = client.CustomObjectsApi().get_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, PLURAL, name
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return found


def append_trigger(namespace: str, name: str, request: TriggerRequest) -> None:
    """Append a build request to the trigger annotation. The patch names the resourceVersion
    it read, so a trigger written in between is never overwritten: read again and retry."""
    api = client.CustomObjectsApi()
    for _ in range(_CONFLICT_RETRIES):
        body = get_automated_build(namespace, name)
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
            api.patch_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, PLURAL, name, patch
            )
            return
        except ApiException as exc:
            if exc.status != 409:
                raise
    raise RuntimeError(f"AutomatedBuild {namespace}/{name} kept changing; try again")


def list_jobs(namespace: str, uid: str) -> list[Obj]:
    """The build Jobs of one AutomatedBuild, as plain JSON dicts."""
    response = client.BatchV1Api().list_namespaced_job(
        namespace, label_selector=f"{LABEL_UID}={uid}", _preload_content=False
    )
    items: list[Obj] = json.loads(response.data)["items"]
    return items


def patch_job(namespace: str, name: str, patch: Obj) -> None:
    """Merge-patch a Job (cancel); a Job that is gone needs nothing."""
    try:
        client.BatchV1Api().patch_namespaced_job(name, namespace, patch)
    except ApiException as exc:
        if exc.status != 404:
            raise


def list_pods(namespace: str, job_name: str) -> list[Obj]:
    """The Pods of one Job, as plain JSON dicts."""
    response = client.CoreV1Api().list_namespaced_pod(
        namespace, label_selector=f"job-name={job_name}", _preload_content=False
    )
    items: list[Obj] = json.loads(response.data)["items"]
    return items


def read_log(namespace: str, pod_name: str, container: str, *, follow: bool) -> Iterator[bytes]:
    """A container's log as it arrives (until it ends, with ``follow``); LogReadError when
    the API server refuses it."""
    try:
        response = client.CoreV1Api().read_namespaced_pod_log(
            pod_name, namespace, container=container, follow=follow, _preload_content=False
        )
    except ApiException as exc:
        # e.g. 400 'container "kaniko" in pod ... is waiting to start' while it is Pending.
        detail = json.loads(exc.body).get("message", exc.reason) if exc.body else exc.reason
        raise LogReadError(detail) from exc
    chunks: Iterator[bytes] = response.stream()
    return chunks


def read_secret(namespace: str, name: str) -> Obj | None:
    """A Secret as a plain JSON dict (its values base64-encoded), or None if there is none."""
    try:
        response = client.CoreV1Api().read_namespaced_secret(
            name, namespace, _preload_content=False
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    found: Obj = json.loads(response.data)
    return found
