"""The operator image's Dockerfile: multi-stage, a pinned slim base, git, non-root, `autobuild
run`; `make image` tags it with the package version. (No container engine here: the build
itself runs where docker, podman or buildah exists.)"""

from __future__ import annotations

import re
import subprocess

from tests.support.packaging import ROOT, package_version

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def test_the_base_image_is_pinned_and_slim() -> None:
    (default,) = re.findall(r"^ARG BASE_IMAGE=(\S+)$", DOCKERFILE, re.M)
    name, _, tag = default.partition("@")[0].rpartition(":")
    assert name == "python"
    assert re.fullmatch(r"3\.\d+\.\d+-slim-\w+", tag), tag
    froms = [args for word, args in instructions() if word == "FROM"]
    assert len(froms) == 2
    assert all(args.split()[0] == "${BASE_IMAGE}" for args in froms)


def test_the_runtime_stage_has_git_runs_as_non_root_and_starts_the_operator() -> None:
    build, runtime = stages()
    assert "AS build" in build[0][1]
    runs = " ".join(args for word, args in runtime if word == "RUN")
    assert re.search(r"apt-get install .*\bgit\b", runs)
    assert "pip install" not in runs  # the venv comes from the build stage
    assert ("COPY", "--from=build /opt/autobuild /opt/autobuild") in runtime
    (user,) = [args for word, args in runtime if word == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0
    (entrypoint,) = [args for word, args in runtime if word == "ENTRYPOINT"]
    assert entrypoint == '["autobuild"]'
    (cmd,) = [args for word, args in runtime if word == "CMD"]
    assert cmd.startswith('["run", "--probes", "0.0.0.0:8081"')


def test_make_image_tags_the_package_version() -> None:
    dry = subprocess.run(
        ["make", "-n", "image"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert f'-t "autobuild/operator:{package_version()}"' in dry
    assert ":latest" not in dry


def test_the_runtime_user_has_a_name_without_a_passwd_entry() -> None:
    """uid 65532 is in no /etc/passwd: kopf's getpass.getuser() then needs LOGNAME (else the
    operator exits at start with "getpwuid(): uid not found", as make e2e showed)."""
    _build, runtime = stages()
    env = " ".join(args for word, args in runtime if word == "ENV")
    assert re.search(r"\bLOGNAME=\w+", env), env
