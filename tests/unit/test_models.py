"""Validation that protects users: every bad input is refused with a message naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from factories import document
from pydantic import ValidationError

from autobuild.api import checks
from autobuild.api.models import AutomatedBuild, Provider, RunPolicy


def errors_of(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        AutomatedBuild.model_validate(doc)
    return checks.describe_validation_error(caught.value)


def with_image(**changes: Any) -> dict[str, Any]:
    doc = document()
    doc["spec"]["image"].update(changes)
    return doc


def with_source(**changes: Any) -> dict[str, Any]:
    doc = document()
    doc["spec"]["source"].update(changes)
    return doc


def with_rule(**rule: Any) -> dict[str, Any]:
    rule.setdefault("source", "main")
    return document(tags=[rule])


def without_image_field(name: str) -> dict[str, Any]:
    doc = document()
    del doc["spec"]["image"][name]
    return doc


@pytest.mark.parametrize(
    ("doc", "field", "words"),
    [
        (with_image(visibility="Secret"), "spec.image.visibility", "'Public' or 'Private'"),
        (with_image(visibility="public"), "spec.image.visibility", "'Public' or 'Private'"),
        (with_image(shortDescription="x" * 101), "spec.image.shortDescription", "at most 100"),
        (with_image(shortDescription=""), "spec.image.shortDescription", "at least 1"),
        (without_image_field("namespace"), "spec.image.namespace", "required"),
        (without_image_field("name"), "spec.image.name", "required"),
        (without_image_field("visibility"), "spec.image.visibility", "required"),
        (with_image(namespace="Acme"), "spec.image.namespace", "not allowed"),
        (with_image(name="my app"), "spec.image.name", "not allowed"),
        (with_image(registry="-evil"), "spec.image.registry", "not allowed"),
        (with_image(pushSecret="Not_A_Name"), "spec.image.pushSecret", "not allowed"),
        # regexes
        (with_rule(source="/a(/"), "spec.tags[0].source", "not a valid regular expression"),
        (with_rule(source="/(?=x)y/"), "spec.tags[0].source", "lookarounds"),
        (with_rule(source="/(a)\\1/"), "spec.tags[0].source", "backreferences"),
        # valid for Python's re, not for RE2 (which the API server's CEL also speaks)
        (with_rule(source="/v1\\Z/"), "spec.tags[0].source", "(RE2 syntax)"),
        (with_rule(source="/a++/"), "spec.tags[0].source", "(RE2 syntax)"),
        (with_rule(source="/(a)?(?(1)b|c)/"), "spec.tags[0].source", "(RE2 syntax)"),
        (with_rule(source="/a{1001}/"), "spec.tags[0].source", "(RE2 syntax)"),
        (with_rule(source="/" + "(a)" * 10 + "/"), "spec.tags[0].source", "at most 9"),
        (with_rule(source="main", dockerTag="{\\1}"), "spec.tags[0]", "0 capture group"),
        (with_rule(source="/^(v)$/", dockerTag="{\\2}"), "spec.tags[0]", "1 capture group"),
        (with_rule(dockerTag="{branch}"), "spec.tags[0]", "unknown placeholder"),
        (with_rule(dockerTag="{sourceref"), "spec.tags[0]", "unbalanced"),
        (with_rule(dockerTag="a/b"), "spec.tags[0].dockerTag", "not allowed"),
        # refs that could inject options or break Kaniko's git context
        (with_rule(source="main#x"), "spec.tags[0].source", "not allowed"),
        (with_rule(source="-main"), "spec.tags[0].source", "not allowed"),
        (with_rule(source="ma in"), "spec.tags[0].source", "not allowed"),
        (with_rule(source="main\x07"), "spec.tags[0].source", "not allowed"),
        (with_rule(source="a..b"), "spec.tags[0].source", "'..'"),
        (with_source(repo="github.com/acme/app#refs/heads/x"), "spec.source.repo", "not allowed"),
        (with_source(repo="-github.com/acme/app"), "spec.source.repo", "not allowed"),
        (with_source(repo="--upload-pack=touch /tmp/x"), "spec.source.repo", "not allowed"),
        (with_source(repo="github.com/acme/app x"), "spec.source.repo", "not allowed"),
        (with_source(repo="https://user:pw@github.com/a/b"), "spec.source.repo", "not allowed"),
        (with_source(repo="github.com/acme"), "spec.source.repo", "owner and a name"),
        (with_source(repo="github.com/acme/../b"), "spec.source.repo", "'..'"),
        (with_source(provider="svn"), "spec.source.provider", "'github'"),
        (with_source(pollInterval="30s"), "spec.source.pollInterval", "at least 1m"),
        (with_source(pollInterval="5 minutes"), "spec.source.pollInterval", "not allowed"),
        # paths that escape the repository
        (with_rule(dockerfile="../Dockerfile"), "spec.tags[0].dockerfile", "escapes"),
        (with_rule(dockerfile="a/../../Dockerfile"), "spec.tags[0].dockerfile", "escapes"),
        (with_rule(dockerfile="/etc/passwd"), "spec.tags[0].dockerfile", "relative"),
        (with_rule(context="/../.."), "spec.tags[0].context", "escapes"),
        (with_rule(context="sub\\dir"), "spec.tags[0].context", "not allowed"),
        # the rest of the spec
        (document(tags=[]), "spec.tags", "at least 1"),
        (document(runPolicy="Sometimes"), "spec.runPolicy", "'Serial'"),
        (document(timeout="10s"), "spec.timeout", "between 1m and 24h"),
        (document(timeout="25h"), "spec.timeout", "between 1m and 24h"),
        (document(timeout="1d"), "spec.timeout", "not allowed"),
        (document(buildArgs={"1X": "v"}), "spec.buildArgs", "'1X' is not a valid build arg"),
        (document(buildArgs={"SOURCE_COMMIT": "v"}), "spec.buildArgs", "SOURCE_COMMIT is one of"),
        (
            document(historyLimit={"succeeded": -1}),
            "spec.historyLimit.succeeded",
            "greater than or equal to 0",
        ),
        (document(surprise=True), "spec.surprise", "Extra inputs"),
    ],
)
def test_bad_input_names_the_field(doc: dict[str, Any], field: str, words: str) -> None:
    lines = errors_of(doc)
    assert any(line.startswith(f"{field}: ") and words in line for line in lines), lines


def test_defaults() -> None:
    spec = AutomatedBuild.model_validate(document()).spec
    assert spec.image.registry == "docker.io"
    assert spec.auto_build_on_push is True
    assert spec.run_policy is RunPolicy.SERIAL
    assert spec.timeout_seconds == 3600
    assert (spec.history_limit.succeeded, spec.history_limit.failed) == (5, 5)
    rule = spec.tags[0]
    assert (rule.dockerfile, rule.context, rule.autobuild, rule.build_cache) == (
        "Dockerfile",
        "/",
        True,
        True,
    )


@pytest.mark.parametrize(
    ("repo", "provider"),
    [
        ("github.com/acme/app", Provider.GITHUB),
        ("https://GitHub.com/acme/app.git", Provider.GITHUB),
        ("bitbucket.org/acme/app", Provider.BITBUCKET),
        ("https://gitlab.com/group/sub/app.git", Provider.GITLAB),
        ("http://127.0.0.1:3000/acme/app.git", Provider.GIT),
    ],
)
def test_provider_is_inferred_from_host(repo: str, provider: Provider) -> None:
    spec = AutomatedBuild.model_validate(with_source(repo=repo)).spec
    assert spec.provider is provider


def test_explicit_provider_wins() -> None:
    spec = AutomatedBuild.model_validate(
        with_source(repo="git.acme.io/a/b", provider="gitlab")
    ).spec
    assert spec.provider is Provider.GITLAB


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("5m", 300), ("1h30m", 5400), ("2h", 7200)]
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert checks.parse_duration(text, "x") == seconds


@pytest.mark.parametrize("text", ["", "1d", "5", "m", "1.5h"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(checks.InputError):
        checks.parse_duration(text, "x")


def test_wire_names_round_trip() -> None:
    doc = document(autoBuildOnPush=False, buildArgs={"A": "1"}, runPolicy="Parallel")
    dumped = AutomatedBuild.model_validate(doc).spec.model_dump(by_alias=True, exclude_none=True)
    assert dumped["autoBuildOnPush"] is False
    assert dumped["buildArgs"] == {"A": "1"}
    assert dumped["image"]["shortDescription"] == "Cavity flow solver"
