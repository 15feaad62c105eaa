"""The build planner: pushes and triggers -> builds, with Docker Hub's semantics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from factories import COMMIT, automated_build

from autobuild.api import checks
from autobuild.api.models import AutomatedBuild, SourceType, Trigger
from autobuild.planning.planner import (
    PushEvent,
    buildable_ref,
    exact_rule_ref,
    full_ref,
    parse_ref,
    plan_builds,
    split_ref,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

RULES: list[dict[str, Any]] = [
    {"source": "main", "dockerTag": "latest"},
    {"sourceType": "Tag", "source": "/^v([0-9.]+)$/", "dockerTag": "{\\1},stable"},
    {"source": "/^release-/", "dockerTag": "{sourceref}", "autobuild": False},
    {"source": "/[0-9.]+$/", "dockerTag": "version-{sourceref}"},
]


def planned(
    ref: str, trigger: Trigger = Trigger.PUSH, commit: str = COMMIT, **spec: Any
) -> list[tuple[int, tuple[str, ...]]]:
    spec.setdefault("tags", RULES)
    plan = plan_builds(automated_build(**spec).spec, PushEvent.parse(ref, commit, "msg", trigger))
    return [(build.rule_index, build.tags) for build in plan.builds]


@pytest.mark.parametrize(
    ("ref", "trigger", "expected"),
    [
        ("refs/heads/main", Trigger.PUSH, [(0, ("latest",))]),
        ("main", Trigger.PUSH, [(0, ("latest",))]),
        ("refs/tags/v1.2.3", Trigger.PUSH, [(1, ("1.2.3", "stable"))]),
        # a tag named like a branch rule does not build the branch rule
        ("refs/tags/main", Trigger.PUSH, []),
        ("refs/heads/v1.2.3", Trigger.PUSH, [(3, ("version-v1.2.3",))]),
        # autobuild: false skips pushes and polls, but not manual or API triggers
        ("refs/heads/release-2.0", Trigger.PUSH, [(3, ("version-release-2.0",))]),
        ("refs/heads/release-2.0", Trigger.POLL, [(3, ("version-release-2.0",))]),
        (
            "refs/heads/release-2.0",
            Trigger.MANUAL,
            [(2, ("release-2.0",)), (3, ("version-release-2.0",))],
        ),
        (
            "refs/heads/release-2.0",
            Trigger.TRIGGER_URL,
            [(2, ("release-2.0",)), (3, ("version-release-2.0",))],
        ),
        ("refs/heads/feature/x", Trigger.PUSH, []),
    ],
)
def test_rules_that_build(
    ref: str, trigger: Trigger, expected: list[tuple[int, tuple[str, ...]]]
) -> None:
    assert planned(ref, trigger) == expected


def test_several_matching_rules_each_build() -> None:
    rules = [
        {"source": "main", "dockerTag": "latest"},
        {"source": "/^ma/", "dockerTag": "{sourceref}-edge"},
        {"source": "main", "dockerTag": "stable", "dockerfile": "Dockerfile.prod"},
    ]
    assert planned("main", tags=rules) == [(0, ("latest",)), (1, ("main-edge",)), (2, ("stable",))]


def test_master_switch_off_stops_pushes_and_polls_only() -> None:
    assert planned("main", Trigger.PUSH, autoBuildOnPush=False) == []
    assert planned("main", Trigger.POLL, autoBuildOnPush=False) == []
    assert planned("main", Trigger.MANUAL, autoBuildOnPush=False) == [(0, ("latest",))]


@pytest.mark.parametrize("commit", ["0" * 40, "0" * 64])
def test_deleted_ref_builds_nothing(commit: str) -> None:
    plan = plan_builds(automated_build(tags=RULES).spec, PushEvent.parse("main", commit))
    assert plan.builds == ()
    assert "deleted" in plan.notes[0]
    assert planned("main", Trigger.MANUAL, commit=commit) == []


def test_default_rule_is_main_to_latest() -> None:
    spec = automated_build().spec
    assert [(r.source_type, r.source, r.docker_tag) for r in spec.tags] == [
        (SourceType.BRANCH, "main", "latest")
    ]
    assert planned("main", tags=[{"source": "main", "dockerTag": "latest"}]) == [(0, ("latest",))]


def test_notes_explain_what_did_not_build() -> None:
    spec = automated_build(tags=RULES).spec
    notes = plan_builds(spec, PushEvent.parse("refs/heads/release-1", COMMIT)).notes
    assert any("autobuild is false" in note for note in notes)
    notes = plan_builds(spec, PushEvent.parse("refs/heads/nope", COMMIT)).notes
    assert notes == ("no build rule matches Branch 'nope'",)
    empty = automated_build(
        tags=[{"sourceType": "Tag", "source": "/^v([0-9]+)(-x)?$/", "dockerTag": "{\\2}"}]
    )
    notes = plan_builds(empty.spec, PushEvent.parse("refs/tags/v1", COMMIT)).notes
    assert notes == ("rule 0 (/^v([0-9]+)(-x)?$/) matches but its dockerTag renders empty",)


@pytest.mark.parametrize(
    ("ref", "commit", "field"),
    [
        ("refs/heads/main#evil", COMMIT, "ref"),
        ("refs/heads/ma in", COMMIT, "ref"),
        ("refs/heads/-x", COMMIT, "ref"),
        ("--upload-pack=evil", COMMIT, "ref"),
        ("refs/heads/a\nb", COMMIT, "ref"),
        ("refs/heads/a..b", COMMIT, "ref"),
        ("refs/heads/", COMMIT, "ref"),
        ("refs/pull/1/head", COMMIT, "ref"),
        ("main", "abc123", "commit"),
        ("main", COMMIT.upper(), "commit"),
        ("main", COMMIT + " --evil", "commit"),
    ],
)
def test_unsafe_refs_and_commits_are_refused(ref: str, commit: str, field: str) -> None:
    with pytest.raises(checks.InputError) as caught:
        PushEvent.parse(ref, commit)
    assert caught.value.field == field


def test_event_keeps_full_ref() -> None:
    event = PushEvent.parse("refs/tags/v1.0", COMMIT)
    assert (event.source_type, event.name, event.git_ref) == (
        SourceType.TAG,
        "v1.0",
        "refs/tags/v1.0",
    )
    assert PushEvent.parse("feature/x", COMMIT).git_ref == "refs/heads/feature/x"


@pytest.mark.parametrize(
    ("ref", "tags"),
    [
        ("refs/tags/v1.4.2", [("1.4.2", "1.4", "1")]),
        ("refs/tags/v2.0.0-rc.1", [("2.0.0-rc.1",)]),
        ("refs/heads/release-1.2", [("version-release-1.2",)]),
    ],
)
def test_the_semver_example_pushes_what_its_comment_says(
    ref: str, tags: list[tuple[str, ...]]
) -> None:
    text = (EXAMPLES / "semver-tags.yaml").read_text()
    ab = AutomatedBuild.model_validate(yaml.safe_load(text))
    plan = plan_builds(ab.spec, PushEvent.parse(ref, COMMIT))
    assert [build.tags for build in plan.builds] == tags
    for build_tags in tags:
        # The comment at the top names every tag the example pushes.
        assert all(tag in text.split("apiVersion")[0] for tag in build_tags)


@pytest.mark.parametrize(
    ("ref", "source_type", "name"),
    [
        ("refs/heads/main", SourceType.BRANCH, "main"),
        ("refs/heads/feature/x", SourceType.BRANCH, "feature/x"),
        ("refs/tags/v1.0", SourceType.TAG, "v1.0"),
        ("main", SourceType.BRANCH, "main"),
        # a branch literally named like a tag ref stays a branch
        ("refs/heads/refs/tags/x", SourceType.BRANCH, "refs/tags/x"),
    ],
)
def test_full_ref_and_split_ref_are_inverse(ref: str, source_type: SourceType, name: str) -> None:
    assert split_ref(ref) == (source_type, name)
    assert full_ref(source_type, name) == (ref if ref.startswith("refs/") else f"refs/heads/{ref}")
    assert split_ref(full_ref(source_type, name)) == (source_type, name)


def test_split_ref_refuses_other_refs_but_does_not_check_names() -> None:
    with pytest.raises(checks.InputError, match="only refs/heads"):
        split_ref("refs/pull/1/head")
    assert split_ref("refs/heads/a..b") == (SourceType.BRANCH, "a..b")
    with pytest.raises(checks.InputError, match=r"'\.\.'"):
        parse_ref("refs/heads/a..b")


def test_exact_rule_ref() -> None:
    rules = automated_build(
        tags=[
            {"source": "main"},
            {"sourceType": "Tag", "source": "v1.0"},
            {"source": "/^release-/"},
        ]
    ).spec.tags
    assert [exact_rule_ref(rule) for rule in rules] == ["refs/heads/main", "refs/tags/v1.0", None]


@pytest.mark.parametrize(
    ("ref", "kept"),
    [
        ("refs/heads/main", True),
        ("refs/tags/v1.2", True),
        ("refs/heads/release-7", True),  # autobuild false: still built by a trigger
        ("refs/heads/feature-1.0", True),
        ("refs/heads/feature", False),
        ("refs/tags/main", False),  # a tag named like a branch rule
        ("refs/pull/1/head", False),
        ("main", False),  # only full refs are kept: ls-remote lists full refs
    ],
)
def test_buildable_ref_keeps_what_some_rule_matches(ref: str, kept: bool) -> None:
    """What ls-remote keeps of a repository's heads (issue 17, item 7)."""
    assert buildable_ref(automated_build(tags=RULES).spec, ref) is kept
