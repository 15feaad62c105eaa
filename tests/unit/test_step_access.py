"""The access step alone: spec validation, the Secrets it names, the credential host policy."""

from __future__ import annotations

from dataclasses import replace

from factories import ANSWERED_AT, document, step_world

from autobuild.api.conditions import Reason
from autobuild.planning.snapshot import SecretView, Snapshot
from autobuild.planning.steps import access

TOKEN = "ghp_linkedtoken0123"


def snapshot(spec: dict[str, object], secrets: dict[str, SecretView | None]) -> Snapshot:
    b = document(**spec)
    b["metadata"]["generation"] = 3
    return Snapshot(body=b, jobs=(), pods=(), secrets=secrets, now=ANSWERED_AT)


def linked(annotations: dict[str, str] | None = None) -> SecretView:
    return SecretView("Opaque", annotations or {}, {"token": TOKEN}, version="7")


def test_an_invalid_spec_is_the_problem_and_keeps_what_status_said() -> None:
    s = snapshot({"tags": "not a list"}, {})
    s = replace(s, body={**s.body, "status": {"image": "old/image"}})
    out = access.run(step_world(s))
    assert out.automated_build is None
    assert out.problem is not None
    assert out.problem.reason == Reason.INVALID_SPEC
    assert out.problem.stalled
    assert (out.generation, out.image) == (3, "old/image")
    assert not out.credentials_known


def test_a_missing_secret_is_named_and_no_token_is_handed_on() -> None:
    spec = {"source": {"repo": "github.com/acme/x", "credentialsSecret": "gh"}}
    out = access.run(step_world(snapshot(spec, {"gh": None})))
    assert out.problem is not None
    assert out.problem.reason == Reason.SECRET_NOT_FOUND
    assert "spec.source.credentialsSecret" in out.problem.message
    assert out.password is None
    assert not out.credentials_known


def test_a_linked_token_goes_only_to_the_hosts_its_secret_allows() -> None:
    spec = {"source": {"repo": "github.com/acme/x", "credentialsSecret": "gh"}}
    host = linked({"autobuild.dev/git-hosts": "github.com"})
    allowed = access.run(step_world(snapshot(spec, {"gh": host})))
    assert allowed.problem is None
    assert allowed.password == TOKEN
    assert allowed.credentials_known
    bound = linked({"autobuild.dev/git-hosts": "gitlab.example.com"})
    refused = access.run(step_world(snapshot(spec, {"gh": bound})))
    assert refused.problem is not None
    assert refused.problem.reason == Reason.CREDENTIALS_NOT_ALLOWED
    assert refused.password is None
    assert refused.username == ""


def test_a_push_secret_bound_to_other_images_is_refused_and_said() -> None:
    image = {
        "namespace": "acme",
        "name": "x",
        "visibility": "Public",
        "shortDescription": "x",
        "pushSecret": "push",
    }
    view = SecretView(
        "kubernetes.io/dockerconfigjson",
        {"autobuild.dev/image-repos": "docker.io/other/*"},
        {".dockerconfigjson": "{}"},
    )
    out = access.run(step_world(snapshot({"image": image}, {"push": view})))
    assert out.push_refused is not None
    assert out.problem == out.push_refused
    assert out.credentials_known  # the git side is fine
    assert out.webhook_path == "/hooks/github"
