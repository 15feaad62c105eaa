"""Docker Hub's trigger bodies and the refs they build."""

from __future__ import annotations

from typing import Any

import pytest

from autobuild.api import checks
from autobuild.api.models import AutomatedBuildSpec, SourceType, Trigger
from autobuild.webhooks.trigger import TriggerScope, TriggerURLRequest, trigger_events

C1 = "1" * 40
C2 = "2" * 40
C3 = "3" * 40
C4 = "4" * 40
HEADS = {
    "refs/heads/main": C1,
    "refs/heads/staging": C2,
    "refs/tags/v1.1": C3,
    "refs/tags/v1.2": C4,
}


def spec(*rules: dict[str, Any]) -> AutomatedBuildSpec:
    return AutomatedBuildSpec.model_validate(
        {
            "source": {"repo": "github.com/acme/app"},
            "image": {
                "namespace": "acme",
                "name": "app",
                "visibility": "Public",
                "shortDescription": "x",
            },
            "tags": list(rules),
        }
    )


RULES = spec(
    {"sourceType": "Branch", "source": "main", "dockerTag": "latest"},
    {"sourceType": "Branch", "source": "staging", "dockerTag": "staging", "autobuild": False},
    {"sourceType": "Tag", "source": "/^v([0-9.]+)$/", "dockerTag": "{\\1},release"},
)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (None, TriggerURLRequest(TriggerScope.ALL)),
        ({}, TriggerURLRequest(TriggerScope.ALL)),
        ({"build": True}, TriggerURLRequest(TriggerScope.ALL)),
        (
            {"source_type": "Branch", "source_name": "staging"},
            TriggerURLRequest(TriggerScope.SOURCE, SourceType.BRANCH, "staging"),
        ),
        (
            {"source_type": "tag", "source_name": "v1.1"},
            TriggerURLRequest(TriggerScope.SOURCE, SourceType.TAG, "v1.1"),
        ),
        ({"docker_tag": "latest"}, TriggerURLRequest(TriggerScope.DOCKER_TAG, docker_tag="latest")),
        (
            {"build": True, "docker_tag": "develop"},
            TriggerURLRequest(TriggerScope.DOCKER_TAG, docker_tag="develop"),
        ),
    ],
)
def test_docker_hub_bodies(body: Any, expected: TriggerURLRequest) -> None:
    assert TriggerURLRequest.parse(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        [],
        "build",
        {"build": False},
        {"build": "yes"},
        {"source_type": "Commit", "source_name": "main"},
        {"source_type": "Branch"},
        {"source_name": "main"},
        {"source_type": "Branch", "source_name": "-rf"},
        {"source_type": "Branch", "source_name": "a..b"},
        {"docker_tag": ""},
        {"docker_tag": "has space"},
        {"docker_tag": 1},
    ],
)
def test_bad_bodies_are_refused_with_a_field(body: Any) -> None:
    with pytest.raises(checks.InputError):
        TriggerURLRequest.parse(body)


def refs(request: TriggerURLRequest, heads: dict[str, str] = HEADS) -> list[tuple[str, str]]:
    plan = trigger_events(RULES, request, heads)
    assert all(event.trigger is Trigger.TRIGGER_URL for event in plan.events)
    return [(event.git_ref, event.commit) for event in plan.events]


def test_build_all_builds_the_exact_name_rules_like_the_trigger_button() -> None:
    assert refs(TriggerURLRequest(TriggerScope.ALL)) == [
        ("refs/heads/main", C1),
        ("refs/heads/staging", C2),
    ]


def test_source_builds_that_ref_at_its_head() -> None:
    request = TriggerURLRequest(TriggerScope.SOURCE, SourceType.TAG, "v1.1")
    assert refs(request) == [("refs/tags/v1.1", C3)]


def test_docker_tag_finds_the_refs_whose_rules_render_it() -> None:
    assert refs(TriggerURLRequest(TriggerScope.DOCKER_TAG, docker_tag="latest")) == [
        ("refs/heads/main", C1)
    ]
    assert refs(TriggerURLRequest(TriggerScope.DOCKER_TAG, docker_tag="1.2")) == [
        ("refs/tags/v1.2", C4)
    ]
    assert sorted(refs(TriggerURLRequest(TriggerScope.DOCKER_TAG, docker_tag="release"))) == [
        ("refs/tags/v1.1", C3),
        ("refs/tags/v1.2", C4),
    ]


def test_missing_refs_and_unknown_tags_build_nothing_and_say_why() -> None:
    gone = TriggerURLRequest(TriggerScope.SOURCE, SourceType.BRANCH, "gone")
    plan = trigger_events(RULES, gone, HEADS)
    assert plan.events == ()
    assert plan.notes == ("refs/heads/gone does not exist in the repository: nothing to build",)
    plan = trigger_events(RULES, TriggerURLRequest(TriggerScope.ALL), {"refs/heads/main": C1})
    assert [e.name for e in plan.events] == ["main"]
    assert plan.notes == ("refs/heads/staging does not exist in the repository: nothing to build",)
    plan = trigger_events(
        RULES, TriggerURLRequest(TriggerScope.DOCKER_TAG, docker_tag="nope"), HEADS
    )
    assert plan.events == ()
    assert "nope" in plan.notes[0]


def test_a_ref_named_by_two_rules_builds_once() -> None:
    twice = spec(
        {"sourceType": "Branch", "source": "main", "dockerTag": "latest"},
        {"sourceType": "Branch", "source": "main", "dockerTag": "edge"},
    )
    plan = trigger_events(twice, TriggerURLRequest(TriggerScope.ALL), HEADS)
    assert [e.git_ref for e in plan.events] == ["refs/heads/main"]
