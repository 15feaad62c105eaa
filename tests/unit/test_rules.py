"""Build-rule matching and tag rendering, with Docker Hub's documented examples."""

from __future__ import annotations

import pytest
from factories import COMMIT, automated_build

from autobuild.api.models import BuildRule, SourceType
from autobuild.planning.planner import PushEvent, plan_builds
from autobuild.planning.rules import RuleMatch, match_rule, render_tags, sanitize_tag

BRANCH = SourceType.BRANCH
TAG = SourceType.TAG


@pytest.mark.parametrize(
    ("rule_type", "source", "push_type", "name", "groups"),
    [
        # exact names compare the whole name and the type
        (BRANCH, "main", BRANCH, "main", ()),
        (BRANCH, "main", BRANCH, "main2", None),
        (BRANCH, "main", TAG, "main", None),
        (TAG, "v1.0", TAG, "v1.0", ()),
        (TAG, "v1.0", BRANCH, "v1.0", None),
        (BRANCH, "release/1.x", BRANCH, "release/1.x", ()),
        # Docker Hub's documented /[0-9.]+$/: searched, so any name ending in a version
        (BRANCH, "/[0-9.]+$/", BRANCH, "release-1.2", ()),
        (BRANCH, "/[0-9.]+$/", BRANCH, "1.2", ()),
        (BRANCH, "/[0-9.]+$/", BRANCH, "release-1.2-rc", None),
        # anchored regexes match whole names only
        (TAG, "/^[0-9.]+$/", TAG, "1.2.3", ()),
        (TAG, "/^[0-9.]+$/", TAG, "v1.2.3", None),
        (TAG, "/^v([0-9.]+)$/", TAG, "v1.2.3", ("1.2.3",)),
        (TAG, "/^v([0-9.]+)$/", BRANCH, "v1.2.3", None),
        # optional groups that do not take part render as ''
        (TAG, "/^v([0-9]+)(-rc)?$/", TAG, "v2", ("2", "")),
        (BRANCH, "/^(alice|bob)-v([0-9.]+)$/", BRANCH, "bob-v3.1", ("bob", "3.1")),
    ],
)
def test_match_rule(
    rule_type: SourceType,
    source: str,
    push_type: SourceType,
    name: str,
    groups: tuple[str, ...] | None,
) -> None:
    rule = BuildRule(source_type=rule_type, source=source)
    match = match_rule(rule, push_type, name)
    if groups is None:
        assert match is None
    else:
        assert match == RuleMatch(source_ref=name, groups=groups)


@pytest.mark.parametrize(
    ("template", "source_ref", "groups", "tags"),
    [
        ("latest", "main", (), ("latest",)),
        # {sourceref} is the whole name, not the matched part (Docker Hub's version-{sourceref})
        ("version-{sourceref}", "release-1.2", (), ("version-release-1.2",)),
        # ^v([0-9.]+)$ -> v{\1}
        ("v{\\1}", "v1.2.3", ("1.2.3",), ("v1.2.3",)),
        ("{\\1}", "v1.2.3", ("1.2.3",), ("1.2.3",)),
        # comma-separated: one image, several tags
        ("{sourceref},latest", "v1.0", (), ("v1.0", "latest")),
        (" {sourceref} , latest ", "v1.0", (), ("v1.0", "latest")),
        ("{\\2}-{\\1}", "bob-v3.1", ("bob", "3.1"), ("3.1-bob",)),
        # duplicates collapse, order kept
        ("latest,{sourceref},latest", "latest", (), ("latest",)),
        # characters outside [A-Za-z0-9_.-] become '-'
        ("{sourceref}", "feature/login", (), ("feature-login",)),
        ("{sourceref}", "fix+bug@2", (), ("fix-bug-2",)),
        ("{sourceref}", "Ünïcode", (), ("n-code",)),
        # empty renders drop out; an unmatched optional group is ''
        ("{\\2}", "v2", ("2", ""), ()),
        ("{\\2},stable", "v2", ("2", ""), ("stable",)),
        (",,", "main", (), ()),
    ],
)
def test_render_tags(
    template: str, source_ref: str, groups: tuple[str, ...], tags: tuple[str, ...]
) -> None:
    assert render_tags(template, RuleMatch(source_ref, groups)) == tags


def test_substituted_values_are_not_substituted_again() -> None:
    match = RuleMatch("weird", ("{sourceref}",))
    assert render_tags("{\\1}", match) == ("sourceref-",)


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        ("latest", "latest"),
        ("1.2.3", "1.2.3"),
        ("_x", "_x"),
        (".hidden", "hidden"),
        ("-dash", "dash"),
        ("a b", "a-b"),
        ("...", None),
        ("", None),
        ("x" * 200, "x" * 128),
    ],
)
def test_sanitize_tag(text: str, tag: str | None) -> None:
    assert sanitize_tag(text) == tag


# A 30-character branch name that backtracking engines need minutes (2^29 steps) to refuse.
CATASTROPHIC_NAME = "a" * 29 + "b"


@pytest.mark.timeout(20)
def test_catastrophic_regex_answers_at_once_through_the_planner() -> None:
    ab = automated_build(tags=[{"source": "/^(a+)+$/", "dockerTag": "x"}, {"source": "/b$/"}])
    plan = plan_builds(ab.spec, PushEvent.parse(CATASTROPHIC_NAME, COMMIT))
    assert [build.rule_index for build in plan.builds] == [1]
    assert match_rule(BuildRule(source="/^(a+)+$/"), BRANCH, "a" * 30) == RuleMatch(
        "a" * 30, ("a" * 30,)
    )
