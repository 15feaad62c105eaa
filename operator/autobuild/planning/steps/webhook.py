"""Webhook lifecycle: the push webhook the operator registers through the linked account
(with a generated secret it keeps in a Secret it owns), refreshes, re-creates when deleted,
and removes — behind a finalizer — when the object goes or stops asking for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from autobuild.api.conditions import ConditionType
from autobuild.planning import hooks
from autobuild.planning import status as tracking
from autobuild.planning.github import HOOK_SECRET_KEY
from autobuild.planning.providers import HostingProvider
from autobuild.planning.snapshot import EventNote
from autobuild.planning.steps.access import Access
from autobuild.planning.steps.base import Contribution, World, credentials_version

OWNS: Final = frozenset({"webhook", ConditionType.WEBHOOK_READY.value})


@dataclass(kw_only=True)
class Webhook(Contribution):
    """What the provider's hook decision said (no decision: nothing to do for the object)."""

    outcome: hooks.HookOutcome = field(default_factory=lambda: hooks.HookOutcome(None))


def run(world: World, access: Access, provider: HostingProvider, token: str | None) -> Webhook:
    """Decide the object's hook; ``token``: the linked token when it may go to the provider's
    API for this repository, else None."""
    meta = world.snapshot.body["metadata"]
    if not provider.involved(world.previous.webhook, meta.get("finalizers")):
        return Webhook()
    outcome = provider.webhook(_hook_world(world, access, provider, token))
    return Webhook(
        outcome=outcome,
        events=tuple(EventNote(n.type, n.reason, n.message) for n in outcome.notes),
        requeue_after=outcome.requeue_after,
    )


def _hook_world(
    world: World, access: Access, provider: HostingProvider, token: str | None
) -> hooks.HookWorld:
    """What the webhook decision reads, from the snapshot."""
    snapshot = world.snapshot
    automated_build = access.automated_build
    meta = snapshot.body["metadata"]
    secret_name: str | None = None
    if automated_build is not None:
        secret_name = automated_build.spec.source.webhook_secret or (
            provider.generated_secret_name(automated_build)
        )
    view = snapshot.secrets.get(secret_name) if secret_name else None
    # Byte for byte as the receiver verifies with it; only an empty value is refused.
    value = (view.data.get(HOOK_SECRET_KEY) or "") if view is not None else ""
    invalid = None
    if view is not None and not value.strip():
        invalid = f"Secret {secret_name!r} has no value under the key {HOOK_SECRET_KEY!r}"
    not_owned = None
    if automated_build is not None and not provider.hook_secret_owned(automated_build, view):
        # Someone made the generated Secret's name before the operator did: its value is
        # theirs, so a hook signed with it would accept their deliveries. Never adopt it.
        value, not_owned = (
            "",
            (
                f"Secret {secret_name!r} exists but was not created by autobuild for this "
                "AutomatedBuild (no controller ownerReference to it): its value is not used. "
                "Delete it to let the operator create its own, or name a Secret of yours in "
                "spec.source.webhookSecret"
            ),
        )
    return hooks.HookWorld(
        automated_build=automated_build,
        previous=world.previous,
        finalizers=tuple(meta.get("finalizers") or ()),
        deleting_since=tracking.parse_time(meta.get("deletionTimestamp")),
        token=token,
        token_version=credentials_version(automated_build, snapshot) if automated_build else "",
        secret=value or None,
        secret_version=view.version if view is not None else "",
        results=snapshot.github,
        now=snapshot.now,
        known=access.credentials_known,
        secret_invalid=invalid,
        secret_not_owned=not_owned,
    )


__all__ = ["OWNS", "Webhook", "run"]
