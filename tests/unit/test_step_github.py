"""The steps that speak to the linked account's provider (GitHub today), alone: commit
statuses and the webhook's lifecycle."""

from __future__ import annotations

from factories import ANSWERED_AT, build_record, document, step_world

from autobuild.api.models import BuildPhase, BuildRecord
from autobuild.planning.snapshot import SecretView, Snapshot
from autobuild.planning.steps import access, commit_statuses, webhook
from autobuild.settings import GitHubSettings

TOKEN = "ghp_linkedaccounttoken42"
LINK = SecretView("Opaque", {"autobuild.dev/git-hosts": "github.com"}, {"token": TOKEN}, "11")
PUBLIC = GitHubSettings(public_url="https://autobuild.example.com")


def queued() -> BuildRecord:
    return build_record(BuildPhase.QUEUED)


def snapshot(repo: str = "github.com/acme/x", link: bool = True) -> Snapshot:
    source = {"repo": repo, **({"credentialsSecret": "github-link"} if link else {})}
    b = document(source=source)
    b["metadata"]["generation"] = 1
    secrets = {"github-link": LINK} if link else {}
    return Snapshot(body=b, jobs=(), pods=(), secrets=secrets, now=ANSWERED_AT)


def test_a_new_build_gets_its_commit_status_through_the_linked_token() -> None:
    w = step_world(snapshot())
    out = commit_statuses.run(w, access.run(w), w.provider, [queued()])
    (request,) = out.requests
    assert request.id == "status:b1:pending"
    assert (request.repository, request.token, out.token) == ("acme/x", TOKEN, TOKEN)


def test_no_status_without_a_token_or_off_github() -> None:
    for s in (snapshot(link=False), snapshot(repo="gitlab.com/acme/x")):
        w = step_world(s)
        out = commit_statuses.run(w, access.run(w), w.provider, [queued()])
        assert out.requests == ()
        assert out.token is None
        assert out.records == (queued(),)


def test_without_a_public_url_or_a_hook_the_webhook_is_not_decided() -> None:
    w = step_world(snapshot())
    out = webhook.run(w, access.run(w), w.provider, TOKEN)
    assert out.outcome.webhook is None
    assert out.outcome.requests == []
    assert out.outcome.condition is None


def test_registration_starts_with_the_secret_it_is_signed_with() -> None:
    w = step_world(snapshot(), PUBLIC)
    out = webhook.run(w, access.run(w), w.provider, TOKEN)
    assert out.outcome.create_secret == "cavityflow-github-hook"
    assert out.outcome.requests == []  # the hook comes once the Secret exists
