"""The GitHub side of decide: webhook registration, the finalizer, commit statuses.

The world is plain data; a small simulated act applies each decision (status, finalizers, the
hook Secret) and a scripted GitHub answers the calls, so whole lifecycles can be followed."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from factories import COMMIT, document, registry_answers

from autobuild.api.conditions import ConditionType, Reason
from autobuild.api.models import WebhookResponse, WebhookStatus
from autobuild.planning import hooks
from autobuild.planning.decide import decide
from autobuild.planning.github import CommitState, hook_url
from autobuild.planning.snapshot import Decision, HeadsResult, SecretView, Snapshot
from autobuild.settings import BuildSettings, GitHubSettings

NOW = datetime(2026, 11, 29, 8, 0, 0, tzinfo=UTC)
TOKEN = "ghp_linkedaccounttoken42"
HOOK_SECRET = "0f" * 32
PUBLIC = "https://autobuild.example.com"
GITHUB = GitHubSettings(public_url=PUBLIC)
LINK = SecretView("Opaque", {"autobuild.dev/git-hosts": "github.com"}, {"token": TOKEN}, "11")
GENERATED = "cavityflow-github-hook"
URL = hook_url(PUBLIC, "ci", "cavityflow")
REPO = "acme/dockertext-cavityflow"
_versions = itertools.count(500)


def linked_body(**source: Any) -> dict[str, Any]:
    doc = document(
        source={"repo": f"github.com/{REPO}", "credentialsSecret": "github-link", **source}
    )
    doc["metadata"].update(generation=1, resourceVersion=str(next(_versions)))
    # Created long ago: its creation build is handled, so only GitHub is at work here.
    doc["status"] = {
        "lastTrigger": {"id": "create", "reason": "NothingToBuild"},
        "observedSource": f"github.com/{REPO}|github|github-link",
    }
    return doc


Answer = Callable[[hooks.GitHubRequest], hooks.GitHubResult]


def ok_hook(request: hooks.GitHubRequest, hook_id: int = 7) -> hooks.GitHubResult:
    hook = WebhookStatus(
        repository=request.repository,
        url=request.url,
        id=hook_id,
        active=True,
        last_response=WebhookResponse(status="unused"),
    )
    return hooks.GitHubResult(NOW, True, hook=hook)


@dataclass
class World:
    """A simulated API server plus a scripted GitHub, for whole lifecycles."""

    snapshot: Snapshot
    github: GitHubSettings = GITHUB
    answer: dict[str, Answer] = field(default_factory=dict)
    calls: list[hooks.GitHubRequest] = field(default_factory=list)
    events: list[tuple[str, str]] = field(default_factory=list)

    def step(self, later: timedelta = timedelta(seconds=1)) -> Decision:
        """Decide, act on the decision, and let GitHub answer the calls."""
        decision = decide(self.snapshot, BuildSettings(), self.github)
        body = copy.deepcopy(dict(self.snapshot.body))
        secrets = dict(self.snapshot.secrets)
        if decision.hook_secret is not None:
            # As the operator creates it: owned by the AutomatedBuild (hook_secret_manifest).
            uid = str(body["metadata"].get("uid") or "")
            made = SecretView("Opaque", {}, {"secret": HOOK_SECRET}, "3", owners=(uid,))
            secrets[decision.hook_secret] = made
        if decision.finalizers is not None:
            body["metadata"]["finalizers"] = list(decision.finalizers)
        if decision.status is not None:
            status = {**body.get("status", {}), **decision.status}
            body["status"] = {k: v for k, v in status.items() if v is not None}
        self.events += [(e.reason, e.message) for e in decision.events]
        results = dict(self.snapshot.github)
        for request_id in decision.github_forget:
            results.pop(request_id, None)
        for call in decision.github:
            self.calls.append(call)
            result = self.answer[call.kind](call)
            before = results.get(call.id)
            if before is not None and not before.ok and not result.ok:
                result = replace(result, attempts=before.attempts + 1)
            results[call.id] = replace(result, at=self.snapshot.now)
        self.snapshot = replace(
            self.snapshot, body=body, secrets=secrets, github=results, now=self.snapshot.now + later
        )
        return decision

    def settle(self, steps: int = 6) -> None:
        for _ in range(steps):
            self.step()

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.snapshot.body.get("status") or {})

    def condition(self, kind: str) -> dict[str, Any] | None:
        return next((c for c in self.status.get("conditions", []) if c["type"] == kind), None)

    @property
    def finalizers(self) -> list[str]:
        return list(self.snapshot.body["metadata"].get("finalizers") or [])


def linked_world(**source: Any) -> World:
    b = linked_body(**source)
    snapshot = Snapshot(
        body=b,
        jobs=(),
        pods=(),
        secrets={"github-link": LINK},
        now=NOW,
        registry=registry_answers(b, version=""),
    )
    unchanged: Answer = lambda _: hooks.GitHubResult(NOW, True)  # noqa: E731 (a 304)
    return World(snapshot, answer={hooks.HOOK: ok_hook, hooks.REFRESH: unchanged})


def test_without_a_public_url_nothing_is_registered_and_nothing_changes() -> None:
    world = linked_world()
    world.github = GitHubSettings()
    world.settle()
    before = world.status
    decision = world.step()
    assert world.calls == []
    assert world.finalizers == []
    assert world.condition(ConditionType.WEBHOOK_READY) is None
    assert decision.status is None
    assert decision.hook_secret is None
    assert "webhook" not in before


def test_registration_makes_the_secret_then_the_finalizer_then_the_hook() -> None:
    world = linked_world()
    first = world.step()
    assert first.hook_secret == GENERATED
    assert first.github == ()
    assert world.condition(ConditionType.WEBHOOK_READY)["status"] == "Unknown"
    second = world.step()
    assert second.finalizers == (hooks.FINALIZER,)
    assert second.github == ()  # the hook only once the finalizer is on the object
    world.settle()
    (call,) = [c for c in world.calls if c.kind == hooks.HOOK]
    assert (call.repository, call.url, call.secret, call.token) == (REPO, URL, HOOK_SECRET, TOKEN)
    assert world.status["webhook"]["id"] == 7
    assert world.status["webhook"]["lastResponse"] == {"status": "unused"}
    ready = world.condition(ConditionType.WEBHOOK_READY)
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("True", Reason.REGISTERED)
    assert [r for r, _ in world.events].count(Reason.WEBHOOK_REGISTERED) == 1
    # Settled: deciding again writes nothing and registers nothing.
    again = world.step()
    assert again.status is None
    assert again.finalizers is None
    assert [c.kind for c in again.github if c.kind != hooks.REFRESH] == []
    assert HOOK_SECRET not in repr(world.status)


def test_a_named_webhook_secret_signs_the_hook_and_no_secret_is_created() -> None:
    world = linked_world(webhookSecret="my-hook")
    mine = SecretView("Opaque", {}, {"secret": "my-own-secret-value"}, "5")
    world.snapshot = replace(world.snapshot, secrets={**world.snapshot.secrets, "my-hook": mine})
    world.settle()
    (call,) = [c for c in world.calls if c.kind == hooks.HOOK]
    assert call.secret == "my-own-secret-value"
    assert GENERATED not in world.snapshot.secrets


def test_a_token_not_allowed_for_the_host_registers_nothing() -> None:
    world = linked_world()
    refused = SecretView("Opaque", {}, {"token": TOKEN}, "11")
    world.snapshot = replace(world.snapshot, secrets={"github-link": refused})
    world.settle()
    assert world.calls == []
    assert world.finalizers == []
    assert TOKEN not in repr(world.status)


@pytest.mark.parametrize(
    ("repo", "api"),
    [
        ("gitlab.com/acme/app", "https://api.github.com"),  # another provider
        ("github.com/acme/app", "https://ghe.example.com/api/v3"),  # not this API's host
    ],
)
def test_a_repository_the_github_api_does_not_serve_gets_no_hook(repo: str, api: str) -> None:
    world = linked_world(repo=repo, provider="github")
    world.github = GitHubSettings(public_url=PUBLIC, github_url=api)
    world.snapshot = replace(
        world.snapshot,
        secrets={"github-link": replace(LINK, annotations={"autobuild.dev/git-hosts": "*"})},
    )
    world.settle()
    assert world.calls == []


def test_github_enterprise_repositories_get_hooks_from_its_api() -> None:
    world = linked_world(repo="https://ghe.example.com/acme/app.git", provider="github")
    world.github = GitHubSettings(public_url=PUBLIC, github_url="https://ghe.example.com/api/v3")
    world.snapshot = replace(
        world.snapshot,
        secrets={"github-link": replace(LINK, annotations={"autobuild.dev/git-hosts": "*"})},
    )
    world.settle()
    assert [c.repository for c in world.calls if c.kind == hooks.HOOK] == ["acme/app"]


def refused(reason: str, retryable: bool) -> Answer:
    return lambda _: hooks.GitHubResult(NOW, False, reason, f"cannot: {reason}", retryable)


def test_a_refused_registration_says_why_and_drops_the_finalizer() -> None:
    world = linked_world()
    world.answer[hooks.HOOK] = refused("WebhookForbidden", retryable=False)
    world.settle()
    ready = world.condition(ConditionType.WEBHOOK_READY)
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", "WebhookForbidden")
    assert world.finalizers == []  # no hook, none coming
    assert world.status["webhook"].get("id") is None
    tries = len(world.calls)
    world.settle()
    assert len(world.calls) == tries  # not asked again every pass
    # Rights can be granted without any change the operator sees: tried again after a while.
    world.answer[hooks.HOOK] = ok_hook
    world.snapshot = replace(world.snapshot, now=world.snapshot.now + timedelta(minutes=11))
    world.settle()
    assert world.status["webhook"]["id"] == 7
    assert world.finalizers == [hooks.FINALIZER]


def test_an_unreachable_github_is_retried_with_backoff_and_keeps_the_finalizer() -> None:
    world = linked_world()
    world.answer[hooks.HOOK] = refused("Unreachable", retryable=True)
    world.settle()
    assert world.finalizers == [hooks.FINALIZER]  # the POST may have landed
    decision = world.step()
    assert decision.requeue_after is not None
    assert 0 < decision.requeue_after <= 30
    world.snapshot = replace(world.snapshot, now=world.snapshot.now + timedelta(seconds=31))
    world.step()
    assert len([c for c in world.calls if c.kind == hooks.HOOK]) == 2
    later = world.step()
    assert later.requeue_after is not None
    assert 30 < later.requeue_after <= 60  # the second failure waits twice as long


def registered() -> World:
    world = linked_world()
    world.settle()
    assert world.status["webhook"]["id"] == 7
    return world


def deleting(world: World, since: timedelta = timedelta(0)) -> None:
    body = copy.deepcopy(dict(world.snapshot.body))
    moment = world.snapshot.now - since
    body["metadata"]["deletionTimestamp"] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    world.snapshot = replace(world.snapshot, body=body)


def test_deletion_removes_exactly_the_hook_then_the_finalizer() -> None:
    world = registered()
    world.answer[hooks.UNHOOK] = lambda _: hooks.GitHubResult(NOW, True, deleted=True)
    deleting(world)
    world.settle(3)
    (call,) = [c for c in world.calls if c.kind == hooks.UNHOOK]
    assert (call.hook_id, call.url, call.repository) == (7, URL, REPO)
    assert world.finalizers == []
    assert Reason.WEBHOOK_REMOVED in [r for r, _ in world.events]


def test_an_unreachable_github_delays_deletion_a_bounded_time() -> None:
    world = registered()
    world.answer[hooks.UNHOOK] = refused("Unreachable", retryable=True)
    deleting(world)
    world.settle(3)
    assert world.finalizers == [hooks.FINALIZER]
    deleting(world, since=timedelta(seconds=GITHUB.unhook_timeout + 1))
    world.settle(2)
    assert world.finalizers == []
    (message,) = [m for r, m in world.events if r == Reason.WEBHOOK_NOT_REMOVED]
    assert "webhook 7" in message
    assert "Unreachable" in message


def test_deletion_without_the_token_releases_at_once_and_says_so() -> None:
    world = registered()
    deleting(world)
    world.snapshot = replace(world.snapshot, secrets={"github-link": None})
    world.step()
    assert world.finalizers == []
    assert Reason.WEBHOOK_NOT_REMOVED in [r for r, _ in world.events]


def test_a_crash_before_the_id_was_recorded_removes_the_hook_by_url() -> None:
    world = linked_world()
    world.answer[hooks.HOOK] = refused("Unreachable", retryable=True)
    world.settle(3)
    world.answer[hooks.UNHOOK] = lambda _: hooks.GitHubResult(NOW, True, deleted=True)
    deleting(world)
    world.settle(2)
    (call,) = [c for c in world.calls if c.kind == hooks.UNHOOK]
    assert (call.hook_id, call.url) == (None, URL)
    assert world.finalizers == []


def move_repository(world: World, repo: str, secrets: dict[str, SecretView] | None = None) -> None:
    """Edit spec.source.repo (generation 2, whose heads the git host has answered); GitHub
    removes hooks on request."""
    world.answer[hooks.UNHOOK] = lambda _: hooks.GitHubResult(NOW, True, deleted=True)
    body = copy.deepcopy(dict(world.snapshot.body))
    body["spec"]["source"]["repo"] = repo
    body["metadata"]["generation"] = 2
    secrets = secrets or dict(world.snapshot.secrets)
    version = next((v.version for v in secrets.values() if v is not None), "")
    answered = HeadsResult(2, "", NOW, heads={}, credentials_version=version)
    world.snapshot = replace(world.snapshot, body=body, heads=answered, secrets=secrets)


def test_a_new_repository_removes_the_old_hook_and_registers_a_new_one() -> None:
    world = registered()
    move_repository(world, "github.com/acme/other")
    world.settle()
    kinds = [(c.kind, c.repository) for c in world.calls if c.kind != hooks.REFRESH]
    assert kinds[-2:] == [(hooks.UNHOOK, REPO), (hooks.HOOK, "acme/other")]
    assert world.status["webhook"]["repository"] == "acme/other"
    assert world.finalizers == [hooks.FINALIZER]


def test_turning_registration_off_removes_the_hook_and_the_finalizer() -> None:
    world = registered()
    world.answer[hooks.UNHOOK] = lambda _: hooks.GitHubResult(NOW, True, deleted=True)
    world.github = GitHubSettings()  # the operator no longer has a public URL
    world.settle(3)
    assert [c.kind for c in world.calls][-1] == hooks.UNHOOK
    assert "webhook" not in world.status
    assert world.condition(ConditionType.WEBHOOK_READY) is None
    assert world.finalizers == []


def test_a_token_for_another_host_never_goes_to_github() -> None:
    world = registered()
    gitlab = SecretView("Opaque", {"autobuild.dev/git-hosts": "gitlab.com"}, {"token": "glpat-x"})
    move_repository(world, "gitlab.com/acme/app", {"github-link": gitlab})
    world.settle()
    assert [c for c in world.calls if c.token == "glpat-x"] == []
    assert "webhook" not in world.status
    assert world.finalizers == []
    (message,) = [m for r, m in world.events if r == Reason.WEBHOOK_NOT_REMOVED]
    assert "webhook 7" in message


@pytest.mark.parametrize("trouble", ["missing push Secret", "invalid spec", "token refused"])
def test_while_the_world_is_unclear_the_hook_and_finalizer_stay(trouble: str) -> None:
    world = registered()
    before = world.status["webhook"]
    body = copy.deepcopy(dict(world.snapshot.body))
    secrets = dict(world.snapshot.secrets)
    if trouble == "missing push Secret":
        body["spec"]["image"]["pushSecret"] = "not-yet"
    elif trouble == "invalid spec":
        body["spec"]["image"]["name"] = "Not Valid"
    else:
        secrets["github-link"] = replace(LINK, annotations={})
    world.snapshot = replace(world.snapshot, body=body, secrets=secrets)
    world.settle()
    assert world.status["webhook"] == before
    assert world.finalizers == [hooks.FINALIZER]
    assert Reason.WEBHOOK_NOT_REMOVED not in [r for r, _ in world.events]
    assert [c.kind for c in world.calls if c.kind in (hooks.UNHOOK, hooks.HOOK)] == [hooks.HOOK]


def test_a_deletion_waits_at_most_the_timeout_even_for_a_call_that_never_answers() -> None:
    world = registered()
    deleting(world)
    world.answer[hooks.UNHOOK] = lambda r: None  # type: ignore[arg-type,return-value]
    decision = decide(world.snapshot, BuildSettings(), world.github)
    assert [c.kind for c in decision.github] == [hooks.UNHOOK]
    assert decision.requeue_after == pytest.approx(GITHUB.unhook_timeout)
    # The call is still in flight (no answer) when the time is up.
    deleting(world, since=timedelta(seconds=GITHUB.unhook_timeout))
    late = decide(world.snapshot, BuildSettings(), world.github)
    assert late.finalizers == ()
    assert "did not answer within" in late.events[0].message


def test_a_removal_that_succeeded_counts_even_if_the_token_went_since() -> None:
    world = registered()
    world.answer[hooks.UNHOOK] = lambda _: hooks.GitHubResult(NOW, True, deleted=True)
    deleting(world)
    world.step()  # the call goes out and is answered
    world.snapshot = replace(world.snapshot, secrets={"github-link": None})
    world.step()
    assert world.finalizers == []
    assert [r for r, _ in world.events if r.startswith("Webhook")][-1] == Reason.WEBHOOK_REMOVED


def test_a_refused_registration_is_retried_quietly() -> None:
    world = linked_world()
    world.answer[hooks.HOOK] = refused("WebhookForbidden", retryable=False)
    world.settle()
    writes = 0
    for _ in range(6):  # an hour
        world.snapshot = replace(world.snapshot, now=world.snapshot.now + timedelta(minutes=10))
        for _ in range(3):
            decision = world.step()
            writes += (decision.finalizers is not None) + (decision.status is not None)
    assert len([c for c in world.calls if c.kind == hooks.HOOK]) == 7
    assert writes == 0  # no finalizer back and forth, no condition flapping
    ready = world.condition(ConditionType.WEBHOOK_READY)
    assert ready is not None
    assert ready["reason"] == "WebhookForbidden"
    world.answer[hooks.HOOK] = ok_hook  # rights granted
    world.snapshot = replace(world.snapshot, now=world.snapshot.now + timedelta(minutes=10))
    world.settle()
    assert world.finalizers == [hooks.FINALIZER]
    assert world.status["webhook"]["id"] == 7


def test_a_refused_kubernetes_write_shows_in_webhook_ready() -> None:
    world = linked_world()
    denied = hooks.GitHubResult(NOW, False, Reason.FORBIDDEN, "cannot create Secret: 403")
    world.snapshot = replace(world.snapshot, github={hooks.WRITE_SECRET: denied})
    decision = world.step()
    assert decision.hook_secret is None
    ready = world.condition(ConditionType.WEBHOOK_READY)
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", Reason.FORBIDDEN)
    assert decision.requeue_after is not None
    assert decision.requeue_after <= 600


def test_a_hook_secret_without_a_value_says_so() -> None:
    world = linked_world(webhookSecret="my-hook")
    empty = SecretView("Opaque", {}, {"secret": "  "}, "5")
    world.snapshot = replace(world.snapshot, secrets={**world.snapshot.secrets, "my-hook": empty})
    world.settle()
    ready = world.condition(ConditionType.WEBHOOK_READY)
    assert ready is not None
    assert ready["reason"] == Reason.SECRET_KEY_MISSING
    assert world.calls == []
    assert GENERATED not in world.snapshot.secrets


def refresh_moment(world: World) -> datetime:
    """The next moment at which the registered hook is read again."""
    world.step()
    decision = decide(world.snapshot, BuildSettings(), world.github)
    assert decision.requeue_after is not None
    return world.snapshot.now + timedelta(seconds=decision.requeue_after)


def test_the_hook_is_read_again_with_its_etag_and_a_deleted_one_comes_back() -> None:
    world = registered()
    seen: list[str | None] = []

    def unchanged(request: hooks.GitHubRequest) -> hooks.GitHubResult:
        seen.append(request.etag)
        return hooks.GitHubResult(NOW, True, etag='W/"abc"')

    world.answer[hooks.REFRESH] = unchanged
    for _ in range(2):
        world.snapshot = replace(world.snapshot, now=refresh_moment(world))
        world.step()
    assert seen[-2:] == [seen[-2], 'W/"abc"']
    # Hook 7 was deleted on GitHub; the new one stays.
    world.answer[hooks.REFRESH] = lambda r: hooks.GitHubResult(NOW, True, gone=r.hook_id == 7)
    world.answer[hooks.HOOK] = lambda r: ok_hook(r, hook_id=8)
    world.snapshot = replace(world.snapshot, now=refresh_moment(world))
    world.settle()
    assert world.status["webhook"]["id"] == 8
    assert Reason.WEBHOOK_GONE in [r for r, _ in world.events]


def test_a_hook_that_comes_back_with_the_same_id_is_registered_once() -> None:
    world = registered()
    reads: list[int | None] = []

    def gone_once(request: hooks.GitHubRequest) -> hooks.GitHubResult:
        reads.append(request.hook_id)
        return hooks.GitHubResult(NOW, True, gone=len(reads) == 1)  # a transient 404

    world.answer[hooks.REFRESH] = gone_once
    world.snapshot = replace(world.snapshot, now=refresh_moment(world))
    world.settle(30)
    assert world.status["webhook"]["id"] == 7  # GitHub's edit kept the id
    assert len([c for c in world.calls if c.kind == hooks.HOOK]) == 2
    assert [r for r, _ in world.events].count(Reason.WEBHOOK_GONE) == 1


def test_failing_deliveries_show_in_webhook_ready() -> None:
    world = registered()
    failing = WebhookStatus(
        repository=REPO,
        url=URL,
        id=7,
        active=True,
        last_response=WebhookResponse(code=401, status="failed", message="Unauthorized"),
    )
    world.answer[hooks.REFRESH] = lambda _: hooks.GitHubResult(NOW, True, hook=failing)
    world.snapshot = replace(world.snapshot, now=refresh_moment(world))
    world.step()
    world.step()
    ready = world.condition(ConditionType.WEBHOOK_READY)
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", Reason.WEBHOOK_DELIVERY_FAILED)
    assert "401" in ready["message"]


# -- commit statuses ------------------------------------------------------------------------


def building_world(github: GitHubSettings | None = None) -> World:
    """A linked object that has just been told to build its main branch."""
    world = linked_world()
    world.github = github or GitHubSettings()
    body = copy.deepcopy(dict(world.snapshot.body))
    body["spec"]["tags"] = [{"sourceType": "Branch", "source": "main", "dockerTag": "latest"}]
    del body["status"]["lastTrigger"]
    world.snapshot = replace(
        world.snapshot,
        body=body,
        heads=HeadsResult(
            1, "create", NOW, heads={"refs/heads/main": COMMIT}, credentials_version="11"
        ),
    )
    world.answer[hooks.STATUS] = lambda _: hooks.GitHubResult(NOW, True)
    return world


def with_jobs(world: World, decision: Decision, succeed: bool = False) -> None:
    jobs = [copy.deepcopy(j) for j in [*world.snapshot.jobs, *decision.create]]
    for job in jobs:
        job["metadata"].setdefault("uid", "job-uid")
        job["metadata"].setdefault("creationTimestamp", "2026-11-29T08:00:00Z")
        job["spec"]["suspend"] = False
        if succeed:
            job["status"] = {
                "startTime": "2026-11-29T08:00:00Z",
                "completionTime": "2026-11-29T08:02:05Z",
                "conditions": [{"type": "Complete", "status": "True"}],
            }
    world.snapshot = replace(world.snapshot, jobs=tuple(jobs))


def test_each_build_posts_pending_then_its_outcome_once() -> None:
    world = building_world(GitHubSettings(build_url_template="https://dash/{name}/{build}"))
    decision = world.step()
    (pending,) = [c for c in decision.github if c.kind == hooks.STATUS]
    assert pending.sha == COMMIT
    assert pending.token == TOKEN
    assert pending.status is not None
    assert pending.status.state is CommitState.PENDING
    assert pending.status.context == "autobuild/acme/dockertext-cavityflow:latest"
    assert pending.status.target_url is not None
    assert pending.status.target_url.startswith("https://dash/cavityflow/")
    with_jobs(world, decision)
    world.settle(3)
    assert world.status["builds"][0]["commitStatus"] == "pending"
    with_jobs(world, Decision(), succeed=True)
    world.settle(4)
    posted = [c.status for c in world.calls if c.kind == hooks.STATUS]
    assert [s.state for s in posted if s] == [CommitState.PENDING, CommitState.SUCCESS]
    assert posted[-1] is not None
    assert posted[-1].description == "Build succeeded in 2m 5s"
    assert world.status["builds"][0]["commitStatus"] == "success"
    assert world.step().status is None


def test_a_status_that_cannot_be_posted_is_retried_then_reported_never_failing_the_build() -> None:
    world = building_world()
    world.answer[hooks.STATUS] = refused("Unreachable", retryable=True)
    decision = world.step()
    with_jobs(world, decision)
    for _ in range(8):
        world.snapshot = replace(world.snapshot, now=world.snapshot.now + timedelta(minutes=5))
        world.step()
    tries = [c for c in world.calls if c.kind == hooks.STATUS]
    assert len(tries) == hooks.STATUS_ATTEMPTS
    (message,) = [m for r, m in world.events if r == Reason.COMMIT_STATUS_FAILED]
    assert "Unreachable" in message
    assert world.status["builds"][0]["phase"] in ("Pending", "Running")


def test_builds_recorded_before_statuses_were_posted_get_none() -> None:
    # An operator that posted no statuses (here: another GitHub's API) recorded the build.
    world = building_world(GitHubSettings(github_url="https://ghe.example.com/api/v3"))
    decision = world.step()
    with_jobs(world, decision)
    world.settle(2)
    world.github = GitHubSettings()
    world.settle(2)
    assert [c for c in world.calls if c.kind == hooks.STATUS] == []


def test_no_linked_token_posts_no_status() -> None:
    world = building_world()
    body = copy.deepcopy(dict(world.snapshot.body))
    del body["spec"]["source"]["credentialsSecret"]
    world.snapshot = replace(world.snapshot, body=body, secrets={})
    decision = world.step()
    assert [c for c in decision.github if c.kind == hooks.STATUS] == []


def test_a_planted_generated_hook_secret_is_never_adopted() -> None:
    # Someone created "<name>-github-hook" before the operator did, with a value they know.
    world = linked_world()
    planted = SecretView("Opaque", {}, {"secret": "known-to-the-planter"}, "9")
    world.snapshot = replace(world.snapshot, secrets={**world.snapshot.secrets, GENERATED: planted})
    world.settle()
    assert world.calls == []  # no hook registered with their secret
    assert world.snapshot.secrets[GENERATED] is planted  # and the operator does not replace it
    ready = world.condition(ConditionType.WEBHOOK_READY)
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", "WebhookSecretNotOwned")
    assert GENERATED in ready["message"]
    assert "known-to-the-planter" not in str(world.status)
    # Owned by another AutomatedBuild: not this one's either.
    other = replace(planted, owners=("another-uid",))
    world.snapshot = replace(world.snapshot, secrets={**world.snapshot.secrets, GENERATED: other})
    world.settle()
    assert world.calls == []


def test_a_webhook_secret_the_author_names_is_used_as_it_is() -> None:
    world = linked_world(webhookSecret="my-hook")
    mine = SecretView("Opaque", {}, {"secret": "my-own-secret-value"}, "5")
    world.snapshot = replace(world.snapshot, secrets={**world.snapshot.secrets, "my-hook": mine})
    world.settle()
    assert [call.secret for call in world.calls if call.kind == hooks.HOOK] == [
        "my-own-secret-value"
    ]
