"""``autobuild render`` through a real subprocess, as users run it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from factories import COMMIT

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def autobuild(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autobuild.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_render_seed_example_on_main() -> None:
    result = autobuild(
        "render",
        "-f",
        str(EXAMPLES / "dockertext-cavityflow.yaml"),
        "--ref",
        "refs/heads/main",
        "--commit",
        COMMIT,
        "--message",
        "Fix solver",
    )
    assert result.returncode == 0, result.stderr
    (job,) = list(yaml.safe_load_all(result.stdout))
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--destination=docker.io/acme/dockertext-cavityflow:latest" in args
    assert "--build-arg=COMMIT_MSG=Fix solver" in args
    assert job["spec"]["activeDeadlineSeconds"] == 1800


def test_render_multi_document_file_skips_other_kinds() -> None:
    result = autobuild(
        "render", "-f", str(EXAMPLES / "private-repo.yaml"), "--ref", "main", "--commit", COMMIT
    )
    assert result.returncode == 0, result.stderr
    (job,) = list(yaml.safe_load_all(result.stdout))
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "GIT_USERNAME", "value": "x-token-auth"} in env
    assert "replace-me" not in result.stdout


def test_render_several_automated_builds_from_stdin() -> None:
    text = (
        (EXAMPLES / "dockertext-cavityflow.yaml").read_text()
        + "\n---\n"
        + (EXAMPLES / "semver-tags.yaml").read_text()
    )
    result = autobuild(
        "render", "-f", "-", "--ref", "refs/tags/v1.4.2", "--commit", COMMIT, stdin=text
    )
    assert result.returncode == 0, result.stderr
    names = [job["metadata"]["name"] for job in yaml.safe_load_all(result.stdout)]
    assert len(names) == 2
    assert names[0].startswith("cavityflow-")
    assert names[1].startswith("semver-api-")


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_example_is_valid(example: str) -> None:
    result = autobuild(
        "render",
        "-f",
        str(EXAMPLES / example),
        "--ref",
        "refs/heads/nothing-matches-this",
        "--commit",
        COMMIT,
    )
    assert result.returncode == 0, result.stderr


def test_nothing_matched_is_empty_output_exit_0_and_a_note() -> None:
    result = autobuild(
        "render",
        "-f",
        str(EXAMPLES / "dockertext-cavityflow.yaml"),
        "--ref",
        "refs/heads/dev",
        "--commit",
        COMMIT,
    )
    assert result.returncode == 0
    assert result.stdout == ""
    assert "no build rule matches Branch 'dev'" in result.stderr
    assert "nothing to build" in result.stderr


def test_deleted_branch_builds_nothing() -> None:
    result = autobuild(
        "render",
        "-f",
        str(EXAMPLES / "dockertext-cavityflow.yaml"),
        "--ref",
        "main",
        "--commit",
        "0" * 40,
    )
    assert (result.returncode, result.stdout) == (0, "")
    assert "deleted" in result.stderr


@pytest.mark.timeout(20)
def test_render_answers_at_once_for_a_catastrophic_regex(tmp_path: Path) -> None:
    """RE2 matches in linear time; a backtracking engine needs minutes for this ref."""
    document = yaml.safe_load((EXAMPLES / "dockertext-cavityflow.yaml").read_text())
    document["spec"]["tags"] = [{"source": "/^(a+)+$/", "dockerTag": "x"}]
    path = tmp_path / "catastrophic.yaml"
    path.write_text(yaml.safe_dump(document))
    result = autobuild("render", "-f", str(path), "--ref", "a" * 29 + "b", "--commit", COMMIT)
    assert (result.returncode, result.stdout) == (0, "")
    assert "no build rule matches Branch 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaab'" in result.stderr


def test_invalid_document_exits_1_naming_the_field(tmp_path: Path) -> None:
    bad = (
        (EXAMPLES / "dockertext-cavityflow.yaml")
        .read_text()
        .replace("visibility: Public", "visibility: Everyone")
    )
    path = tmp_path / "bad.yaml"
    path.write_text(bad)
    result = autobuild("render", "-f", str(path), "--ref", "main", "--commit", COMMIT)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "spec.image.visibility" in result.stderr
    assert "AutomatedBuild cavityflow" in result.stderr


def test_one_bad_document_yields_no_output_at_all(tmp_path: Path) -> None:
    good = (EXAMPLES / "dockertext-cavityflow.yaml").read_text()
    bad = good.replace("name: cavityflow", "name: broken").replace(
        "dockerTag: latest", "dockerTag: '{\\\\1}'"
    )
    path = tmp_path / "mixed.yaml"
    path.write_text(good + "\n---\n" + bad)
    result = autobuild("render", "-f", str(path), "--ref", "main", "--commit", COMMIT)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "document 2 (AutomatedBuild broken): spec.tags[0]" in result.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--ref", "main#x", "--commit", COMMIT], "--ref: 'main#x' is not a safe git ref name"),
        (["--ref=-x", "--commit", COMMIT], "--ref: '-x' is not a safe git ref name"),
        (["--ref", "main", "--commit", "abc"], "--commit: 'abc' is not a full commit id"),
    ],
)
def test_bad_ref_or_commit(args: list[str], words: str) -> None:
    result = autobuild("render", "-f", str(EXAMPLES / "dockertext-cavityflow.yaml"), *args)
    assert result.returncode == 1
    assert words in result.stderr


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    result = autobuild(
        "render", "-f", str(tmp_path / "nope.yaml"), "--ref", "main", "--commit", COMMIT
    )
    assert result.returncode == 1
    assert "No such file" in result.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [\n")
    result = autobuild("render", "-f", str(broken), "--ref", "main", "--commit", COMMIT)
    assert result.returncode == 1
    assert "not valid YAML" in result.stderr
    empty = tmp_path / "empty.yaml"
    empty.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    result = autobuild("render", "-f", str(empty), "--ref", "main", "--commit", COMMIT)
    assert result.returncode == 1
    assert "no AutomatedBuild" in result.stderr


def test_manual_trigger_builds_rules_with_autobuild_off() -> None:
    example = str(EXAMPLES / "release-branches.yaml")
    push = autobuild("render", "-f", example, "--ref", "feature/login", "--commit", COMMIT)
    assert push.stdout == ""
    assert "autobuild is false" in push.stderr
    manual = autobuild(
        "render", "-f", example, "--ref", "feature/login", "--commit", COMMIT, "--trigger", "Manual"
    )
    (job,) = list(yaml.safe_load_all(manual.stdout))
    assert (
        "--destination=docker.io/acme/frontend:feature-login"
        in job["spec"]["template"]["spec"]["containers"][0]["args"]
    )


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "autobuild"
    result = subprocess.run(
        [str(script), "render", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert "--commit" in result.stdout


def _private_example(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    secret, automated_build = yaml.safe_load_all((EXAMPLES / "private-repo.yaml").read_text())
    change(secret)
    path = tmp_path / "private.yaml"
    path.write_text(yaml.safe_dump_all([secret, automated_build]))
    return path


def test_render_passes_a_username_key_of_a_secret_in_the_file_by_reference(
    tmp_path: Path,
) -> None:
    path = _private_example(tmp_path, lambda s: s["stringData"].update(username="bot"))
    result = autobuild("render", "-f", str(path), "--ref", "main", "--commit", COMMIT)
    assert result.returncode == 0, result.stderr
    (job,) = list(yaml.safe_load_all(result.stdout))
    assert job["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {
            "name": "GIT_USERNAME",
            "valueFrom": {"secretKeyRef": {"name": "bitbucket-link", "key": "username"}},
        },
        {
            "name": "GIT_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "bitbucket-link", "key": "token"}},
        },
    ]
    assert "bot" not in result.stdout
    assert "replace-me" not in result.stdout


@pytest.mark.parametrize(
    ("annotations", "words"),
    [
        ({}, "has no annotation autobuild.dev/git-hosts"),
        ({"autobuild.dev/git-hosts": "github.com"}, "lists github.com, not bitbucket.org"),
    ],
)
def test_render_refuses_a_secret_that_does_not_allow_the_repo_host(
    tmp_path: Path, annotations: dict[str, str], words: str
) -> None:
    path = _private_example(tmp_path, lambda s: s["metadata"].update(annotations=annotations))
    result = autobuild("render", "-f", str(path), "--ref", "main", "--commit", COMMIT)
    assert (result.returncode, result.stdout) == (1, "")
    assert "AutomatedBuild billing-worker: CredentialsNotAllowed: " in result.stderr
    assert words in result.stderr


def test_render_refuses_a_secret_bound_to_other_repositories(tmp_path: Path) -> None:
    bound = {
        "autobuild.dev/git-hosts": "bitbucket.org",
        "autobuild.dev/git-repos": "bitbucket.org/other/*",
    }
    path = _private_example(tmp_path, lambda s: s["metadata"].update(annotations=bound))
    result = autobuild("render", "-f", str(path), "--ref", "main", "--commit", COMMIT)
    assert (result.returncode, result.stdout) == (1, "")
    assert "AutomatedBuild billing-worker: CredentialsNotAllowed: " in result.stderr
    assert "bitbucket.org/acme/billing-worker" in result.stderr


def test_render_refuses_a_push_secret_bound_to_other_images(tmp_path: Path) -> None:
    path = _private_example(tmp_path, lambda s: None)
    push = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {
            "name": "dockerhub-push",
            "namespace": "ci",
            "annotations": {"autobuild.dev/image-repos": "docker.io/acme/web"},
        },
        "stringData": {".dockerconfigjson": "{}"},
    }
    path.write_text(path.read_text() + "---\n" + yaml.safe_dump(push))
    result = autobuild("render", "-f", str(path), "--ref", "main", "--commit", COMMIT)
    assert (result.returncode, result.stdout) == (1, "")
    assert "CredentialsNotAllowed" in result.stderr
    assert "autobuild.dev/image-repos lists docker.io/acme/web" in result.stderr
