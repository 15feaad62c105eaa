"""An in-memory TargetIndex for tests: what the operator's store offers the receiver."""

from __future__ import annotations

from collections.abc import Sequence

from autobuild.api.models import Provider
from autobuild.webhooks.repokey import repo_key
from autobuild.webhooks.targets import HookTarget


class MemoryIndex:
    """AutomatedBuilds by repository key, and trigger tokens by (namespace, name)."""

    def __init__(self) -> None:
        self.by_key: dict[str, list[HookTarget]] = {}
        self.tokens: dict[tuple[str, str], bytes] = {}

    def add(
        self,
        name: str,
        repo: str,
        secret: bytes | None,
        *,
        namespace: str = "ci",
        provider: Provider = Provider.GITHUB,
        trigger_token: bytes | None = None,
    ) -> HookTarget:
        target = HookTarget(namespace, name, provider, secret)
        self.by_key.setdefault(repo_key(repo), []).append(target)
        if trigger_token is not None:
            self.tokens[(namespace, name)] = trigger_token
        return target

    def targets(self, repo_key: str) -> Sequence[HookTarget]:
        return self.by_key.get(repo_key, [])

    def target(self, namespace: str, name: str) -> HookTarget | None:
        for targets in self.by_key.values():
            for target in targets:
                if (target.namespace, target.name) == (namespace, name):
                    return target
        return None

    def trigger_token(self, namespace: str, name: str) -> bytes | None:
        return self.tokens.get((namespace, name))
