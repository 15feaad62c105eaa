"""Trigger-URL calls for one object share their ls-remotes (issue 17, item 12): N calls cost
at most one resolution in flight and one follow-up, never one git process per call."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from factories import COMMIT, OTHER_COMMIT, document

from autobuild.api.models import SourceType
from autobuild.controller import reconcile
from autobuild.controller.reconcile import Controller
from autobuild.planning.planner import PushEvent
from autobuild.settings import BuildSettings
from autobuild.webhooks.trigger import TriggerScope, TriggerURLRequest

KEY = ("ci", "cavityflow")
HEADS = {"refs/heads/main": COMMIT, "refs/heads/dev": OTHER_COMMIT}


class NoApi:
    """The API server: these tests make no request that matters; Events are counted."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        if path.endswith("/events"):
            self.events.append(kwargs.get("body") or {})
        return {}


class SlowGit:
    """``ls_remote`` that counts its calls and answers once released."""

    def __init__(self) -> None:
        self.calls = 0
        self.running = 0
        self.most_at_once = 0
        self.release = asyncio.Event()

    async def __call__(self, url: str, **kwargs: Any) -> dict[str, str]:
        self.calls += 1
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await self.release.wait()
            return dict(HEADS)
        finally:
            self.running -= 1


def controller_with(git: SlowGit, api: NoApi) -> tuple[Controller, list[Sequence[PushEvent]]]:
    controller = Controller(api, BuildSettings())  # type: ignore[arg-type]
    doc = document(tags=[{"source": "main"}, {"source": "dev", "dockerTag": "dev"}])
    doc["metadata"]["resourceVersion"] = "1"
    controller.store.apply_automated_build("ADDED", doc)
    submitted: list[Sequence[PushEvent]] = []

    def submit(namespace: str, name: str, events: Sequence[PushEvent]) -> bool:
        submitted.append(events)
        return True

    controller.submit_push = submit  # type: ignore[method-assign]
    return controller, submitted


async def settle(controller: Controller) -> None:
    for _ in range(1000):
        if not controller._tasks:
            return
        await asyncio.sleep(0.001)
    raise AssertionError("trigger tasks did not finish")


def test_200_calls_for_one_object_cost_at_most_two_ls_remotes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    git, api = SlowGit(), NoApi()
    monkeypatch.setattr(reconcile, "ls_remote", git)

    async def scenario() -> list[Sequence[PushEvent]]:
        controller, submitted = controller_with(git, api)
        everything = TriggerURLRequest.parse(None)
        controller.submit_trigger(*KEY, everything)
        await asyncio.sleep(0.01)  # the first resolution is under way
        for _ in range(199):
            controller.submit_trigger(*KEY, everything)
        dev = TriggerURLRequest(TriggerScope.SOURCE, SourceType.BRANCH, "dev")
        controller.submit_trigger(*KEY, dev)  # a different request shares the follow-up
        await asyncio.sleep(0.01)
        assert git.calls == 1
        git.release.set()
        await settle(controller)
        assert controller._triggers == {}  # nothing kept once answered
        return submitted

    submitted = asyncio.run(scenario())
    assert git.calls == 2
    assert git.most_at_once == 1
    assert [sorted(e.git_ref for e in events) for events in submitted] == [
        ["refs/heads/dev", "refs/heads/main"],  # the first call: every exact rule
        ["refs/heads/dev", "refs/heads/main"],  # all 200 others at once, overlaps merged
    ]


def test_calls_after_the_answer_start_a_new_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    git, api = SlowGit(), NoApi()
    git.release.set()
    monkeypatch.setattr(reconcile, "ls_remote", git)

    async def scenario() -> int:
        controller, submitted = controller_with(git, api)
        for _ in range(3):
            controller.submit_trigger(*KEY, TriggerURLRequest.parse(None))
            await settle(controller)
        return len(submitted)

    assert asyncio.run(scenario()) == 3
    assert git.calls == 3  # none coalesced: each came after the previous answer


def test_too_many_different_waiting_requests_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    git, api = SlowGit(), NoApi()
    monkeypatch.setattr(reconcile, "ls_remote", git)

    async def scenario() -> None:
        controller, _ = controller_with(git, api)
        controller.submit_trigger(*KEY, TriggerURLRequest.parse(None))
        await asyncio.sleep(0.01)
        for n in range(100):
            name = f"feature-{n}"
            controller.submit_trigger(
                *KEY, TriggerURLRequest(TriggerScope.SOURCE, SourceType.BRANCH, name)
            )
        assert len(controller._triggers[KEY]) == reconcile._MAX_WAITING_TRIGGERS
        git.release.set()
        await settle(controller)

    asyncio.run(scenario())
    assert git.calls == 2
    # The branches do not exist: one Warning Event for the round, not one per request.
    assert len(api.events) == 1
