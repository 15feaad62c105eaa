"""The webhook server of the operator on its own event loop in a thread, on 127.0.0.1: what
the HTTP tests post real requests to."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from fakes import MemoryIndex

from autobuild.metrics import Metrics
from autobuild.planning.planner import PushEvent
from autobuild.webhooks.receiver import WebhookServer, create_app, start_server
from autobuild.webhooks.trigger import TriggerURLRequest

SECRET = b"It's a Secret to Everybody"
TOKEN = "5a7e0f0c-3f0b-4d4e-9f3a-6c1d2e3f4a5b"
MAX_BODY = 64 * 1024


class Served:
    """The webhook server running on its own event loop in a thread, and what it submitted."""

    def __init__(self, index: MemoryIndex, body_timeout: float = 10.0, **options: Any) -> None:
        self.pushes: list[tuple[str, str, list[PushEvent]]] = []
        self.triggers: list[tuple[str, str, TriggerURLRequest]] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.metrics = Metrics()
        app = create_app(
            index,
            self._submit,
            self._submit_trigger,
            metrics=self.metrics,
            body_timeout=body_timeout,
            **{"max_body": MAX_BODY, **options},
        )
        self.server: WebhookServer = self._run(start_server(app, "127.0.0.1:0"))
        self.port = self.server.port

    def _run(self, coroutine: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout=30)

    def _submit(self, namespace: str, name: str, events: Sequence[PushEvent]) -> None:
        self.pushes.append((namespace, name, list(events)))

    def _submit_trigger(self, namespace: str, name: str, request: TriggerURLRequest) -> None:
        self.triggers.append((namespace, name, request))

    async def _shutdown(self) -> None:
        await self.server.stop()
        # A connection aiohttp still lingers on (e.g. after a 408) must not outlive the loop.
        leftovers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)

    def close(self) -> None:
        self._run(self._shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        if response.getheader("Content-Type", "").startswith("application/json"):
            return response.status, json.loads(data)
        return response.status, data.decode()
