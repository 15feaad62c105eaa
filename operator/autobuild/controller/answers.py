"""The answer memory: what the operator was told of the effects it ran for each AutomatedBuild
(the heads ``git ls-remote`` read, registry checks, failed builds' logs, GitHub calls and the
Kubernetes writes of the webhook path that were refused), by effect id. Decisions read it in the
snapshot; a new answer enqueues its object. The failures of a GitHub call are counted here, as
its tries, for the decision's retry limits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Final

from autobuild.planning.effects import GitHubResult, RegistryResult
from autobuild.planning.snapshot import HeadsResult

Key = tuple[str, str]
# Registry, log and GitHub answers kept per object (the newest ones).
MAX_ANSWERS: Final = 64


class Answers:
    """Answers per object. ``known`` says whether an object exists (an answer that comes
    after its object is gone is dropped); ``enqueue`` is called with every object answered."""

    def __init__(self, enqueue: Callable[[Key], None], known: Callable[[Key], bool]) -> None:
        self._enqueue = enqueue
        self._known = known
        self._heads: dict[Key, HeadsResult] = {}
        self._registry: dict[Key, dict[str, RegistryResult]] = {}
        self._logs: dict[Key, dict[str, tuple[str, str] | None]] = {}
        self._github: dict[Key, dict[str, GitHubResult]] = {}

    def forget(self, key: Key) -> None:
        """The object is gone: drop everything answered for it."""
        for memory in (self._heads, self._registry, self._logs, self._github):
            memory.pop(key, None)

    def set_heads(self, key: Key, result: HeadsResult) -> None:
        """The answer of ``git ls-remote`` for an AutomatedBuild."""
        if self._known(key):
            self._heads[key] = result
            self._enqueue(key)

    def set_registry(self, key: Key, request_id: str, result: RegistryResult) -> None:
        """The answer of a registry check (settings, preflight, digests) for an object."""
        if not self._known(key):
            return
        answers = self._registry.setdefault(key, {})
        answers[request_id] = result
        if len(answers) > MAX_ANSWERS:  # digest checks of long-gone builds
            oldest = min(answers, key=lambda found: answers[found].at)
            del answers[oldest]
        self._enqueue(key)

    def set_github(self, key: Key, request_id: str, result: GitHubResult) -> None:
        """The answer of a GitHub call (or a refused write) for an object; a failure again
        counts one more try."""
        if not self._known(key):
            return
        answers = self._github.setdefault(key, {})
        before = answers.pop(request_id, None)
        if before is not None and not before.ok and not result.ok:
            result = replace(result, attempts=before.attempts + 1)
        answers[request_id] = result
        if len(answers) > MAX_ANSWERS:  # statuses of long-gone builds
            del answers[next(iter(answers))]  # the oldest
        self._enqueue(key)

    def forget_github(self, key: Key, request_ids: Sequence[str]) -> None:
        """Drop GitHub answers that no longer hold (a hook deleted on GitHub)."""
        answers = self._github.get(key, {})
        for request_id in request_ids:
            answers.pop(request_id, None)

    def set_log_reason(self, key: Key, job_name: str, found: tuple[str, str] | None) -> None:
        """What the head of a failed build's log said (None: nothing known)."""
        if self._known(key):
            answers = self._logs.setdefault(key, {})
            answers[job_name] = found
            if len(answers) > MAX_ANSWERS:
                del answers[next(iter(answers))]  # the oldest
            self._enqueue(key)

    def heads(self, key: Key) -> HeadsResult | None:
        """The heads last read for an object."""
        return self._heads.get(key)

    def registry(self, key: Key) -> dict[str, RegistryResult]:
        """A copy of an object's registry answers by request id."""
        return dict(self._registry.get(key, {}))

    def logs(self, key: Key) -> dict[str, tuple[str, str] | None]:
        """A copy of what the logs of an object's failed builds said, by Job name."""
        return dict(self._logs.get(key, {}))

    def github(self, key: Key) -> dict[str, GitHubResult]:
        """A copy of an object's GitHub answers (refused writes included) by request id."""
        return dict(self._github.get(key, {}))


__all__ = ["MAX_ANSWERS", "Answers"]
