"""The controller's edges without a cluster: which API paths its reads and writes reach, and
what the Secrets informer asks the API server for (a real HTTP server on loopback)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from aiohttp import web
from factories import document
from kubernetes import client

from autobuild.controller.kubeapi import METADATA_LIST, METADATA_WATCH, ApiError, KubeApi
from autobuild.controller.reconcile import Controller
from autobuild.planning.job import LABEL_UID
from autobuild.planning.snapshot import Decision, JobWrite
from autobuild.settings import BuildSettings

UID = "6f1c2d4e-aaaa-bbbb-cccc-1234567890ab"
KEY = ("ci", "cavityflow")


class FakeApi:
    """Records every call; answers 404 to GETs, echoes writes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def request(self, method: str, path: str, **_: Any) -> dict[str, Any]:
        self.calls.append((method, path))
        if method == "GET":
            raise ApiError(404, "NotFound", path)
        return {}


def automated_build(**source: str) -> dict[str, Any]:
    doc = document(source={"repo": "github.com/acme/app", **source})
    doc["metadata"]["resourceVersion"] = "5"
    return doc


def build_job(name: str, uid: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ci",
            "uid": uid,
            "resourceVersion": "7",
            "labels": {LABEL_UID: UID},
            "annotations": {},
            "ownerReferences": [
                {
                    "apiVersion": "autobuild.dev/v1alpha1",
                    "kind": "AutomatedBuild",
                    "name": "cavityflow",
                    "uid": UID,
                    "controller": True,
                }
            ],
        },
        "status": {"conditions": [{"type": "Complete", "status": "True"}]},
    }


def test_a_secret_name_from_the_spec_never_reaches_another_namespace() -> None:
    """The store takes specs as watched (an object stored before the CRD had its pattern, or a
    CRD without one): a reference like ``../../kube-system/secrets/x`` must not become a GET of
    another namespace's Secret (yarl folds the dots: the request went to kube-system)."""
    api = FakeApi()

    async def scenario() -> None:
        controller = Controller(api, BuildSettings())  # type: ignore[arg-type]
        store = controller.store
        hostile = automated_build(credentialsSecret="../../kube-system/secrets/x")
        hostile["spec"]["source"]["webhookSecret"] = "a%2F..%2Fb"
        store.replace_automated_builds([])
        store.replace_secrets([])
        store.apply_automated_build("ADDED", hostile)  # created after the Secrets were listed
        assert sorted(store.unknown_secrets(KEY)) == ["../../kube-system/secrets/x", "a%2F..%2Fb"]
        await controller._read_unknown_secrets(KEY)
        # Known not to exist now, and nothing was asked for.
        assert store.unknown_secrets(KEY) == []
        fine = automated_build(credentialsSecret="github-link")
        fine["metadata"]["resourceVersion"] = "6"
        store.apply_automated_build("MODIFIED", fine)
        await controller._read_unknown_secrets(KEY)

    asyncio.run(scenario())
    assert api.calls == [("GET", "/api/v1/namespaces/ci/secrets/github-link")]


def test_act_patches_and_deletes_only_the_jobs_the_object_owns() -> None:
    """The history limit (and releases, cancels) may only touch Jobs the ownership chain files
    under the object, whatever a decision names."""
    api = FakeApi()

    async def scenario() -> None:
        controller = Controller(api, BuildSettings())  # type: ignore[arg-type]
        store = controller.store
        store.replace_automated_builds([automated_build()])
        store.replace_jobs([build_job("mine", "uid-mine")])
        decision = Decision(
            release=(JobWrite("victim", "uid-victim", "1"),),
            cancel=(JobWrite("mine", "uid-other", "1"),),  # a new Job under the old name
            delete=(JobWrite("victim", "uid-victim", "1"), JobWrite("mine", "uid-mine", "7")),
        )
        body = store.automated_builds[KEY]
        await controller._act(KEY, body, decision)

    asyncio.run(scenario())
    assert api.calls == [("DELETE", "/apis/batch/v1/namespaces/ci/jobs/mine")]


# The Secrets informer against an API server on loopback ------------------------------------
class SecretsServer:
    """Serves /api/v1/secrets: three LIST pages (one referenced Secret among others) and a
    watch with one event of that Secret; records what each request asked for."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.watched = asyncio.Event()
        self.stop = asyncio.Event()

    async def secrets(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.requests.append((request.headers.get("Accept", ""), query))
        if query.get("watch"):
            answer = web.StreamResponse()
            await answer.prepare(request)
            if query.get("resourceVersion") == "100":
                event = {"type": "MODIFIED", "object": _meta("ci", "link", 101)}
                await answer.write(json.dumps(event).encode() + b"\n")
                self.watched.set()
            await self.stop.wait()  # until the test ends it
            return answer
        page = int(query.get("continue") or 0)
        items = [_meta("other", f"s{page}-{i}", 10 + i) for i in range(3)]
        if page == 1:
            items.append(_meta("ci", "link", 50))
        body: dict[str, Any] = {
            "kind": "PartialObjectMetadataList",
            "metadata": {"resourceVersion": "100"},
            "items": items,
        }
        if page < 2:
            body["metadata"]["continue"] = str(page + 1)
        return web.json_response(body)


def _meta(namespace: str, name: str, version: int) -> dict[str, Any]:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": str(version)},
    }


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    running = asyncio.new_event_loop()
    yield running
    running.close()


def test_the_secrets_informer_asks_for_metadata_and_keeps_only_referenced_ones(
    loop: asyncio.AbstractEventLoop,
) -> None:
    server = SecretsServer()
    kept: list[list[Mapping[str, Any]]] = []

    async def scenario() -> None:
        app = web.Application()
        app.router.add_get("/api/v1/secrets", server.secrets)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        configuration = client.Configuration(host=f"http://127.0.0.1:{port}")
        api = KubeApi(configuration)
        try:
            controller = Controller(api, BuildSettings())
            store = controller.store
            store.replace_automated_builds([automated_build(credentialsSecret="link")])
            (informer,) = controller._informers[1]
            assert informer.name == "secrets"
            replace = store.replace_secrets

            def spy(items: Any) -> None:
                kept.append(list(items))
                replace(kept[-1])

            informer._replace = spy
            task = asyncio.ensure_future(informer.run())
            await asyncio.wait_for(informer.synced.wait(), 10)
            assert store.unknown_secrets(KEY) == ["link"]  # listed: its values are to be read
            store.put_secret("ci", "link", {**_meta("ci", "link", 50), "type": "Opaque"})
            assert store.unknown_secrets(KEY) == []
            await asyncio.wait_for(server.watched.wait(), 10)
            await asyncio.sleep(0.1)  # the event is applied after it was written
            assert store.unknown_secrets(KEY) == ["link"]  # a change: read again
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        finally:
            server.stop.set()
            await api.close()
            await runner.cleanup()

    loop.run_until_complete(scenario())
    lists = [(accept, query) for accept, query in server.requests if "watch" not in query]
    watches = [(accept, query) for accept, query in server.requests if "watch" in query]
    assert [accept for accept, _ in lists] == [METADATA_LIST] * 3
    assert {query["limit"] for _, query in lists} == {"100"}
    assert watches
    assert {accept for accept, _ in watches} == {METADATA_WATCH}
    # Only the referenced Secret was kept of the nine listed.
    assert [[item["metadata"]["name"] for item in items] for items in kept] == [["link"]]


def test_the_referenced_secrets_are_read_before_the_receiver_starts() -> None:
    """The list brought metadata only: the values a delivery is verified with are read at
    start, for every object, not only once each object's first reconcile comes."""

    class Secrets(FakeApi):
        async def request(self, method: str, path: str, **_: Any) -> dict[str, Any]:
            self.calls.append((method, path))
            name = path.rsplit("/", 1)[1]
            if name == "broken":
                raise ApiError(500, "InternalError", "etcd is down")
            data = {"secret": "c2VjcmV0"}  # "secret"
            meta = {"name": name, "namespace": "ci", "resourceVersion": "3"}
            return {"type": "Opaque", "metadata": meta, "data": data}

    api = Secrets()

    async def scenario() -> None:
        controller = Controller(api, BuildSettings())  # type: ignore[arg-type]
        store = controller.store
        first = automated_build(webhookSecret="hook")
        second = automated_build(webhookSecret="hook", credentialsSecret="broken")
        second["metadata"].update(name="second", uid="second-uid")
        store.replace_automated_builds([first, second])
        store.replace_secrets([_meta("ci", "hook", 3), _meta("ci", "broken", 4)])
        await controller._read_referenced_secrets()
        (target,) = [t for t in store.targets("github.com/acme/app") if t.name == "cavityflow"]
        assert target.secret == b"secret"
        assert store.unknown_secrets(("ci", "second")) == ["broken"]  # the reconcile retries

    asyncio.run(scenario())
    # One GET of the shared Secret, one (failed) of the other.
    assert sorted(api.calls) == [
        ("GET", "/api/v1/namespaces/ci/secrets/broken"),
        ("GET", "/api/v1/namespaces/ci/secrets/hook"),
    ]
