"""Properties over arbitrary refs and names: tags and Job names are always valid."""

from __future__ import annotations

import re

from factories import automated_build
from hypothesis import given, settings
from hypothesis import strategies as st

from autobuild.api import checks
from autobuild.api.models import AutomatedBuild
from autobuild.planning.job import build_identity, render_job
from autobuild.planning.planner import PushEvent, plan_builds
from autobuild.planning.rules import RuleMatch, render_tags
from autobuild.settings import BuildSettings

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

ref_names = st.from_regex(checks.GIT_REF_NAME, fullmatch=True).filter(
    lambda n: (
        len(n) <= 200
        and ".." not in n
        and "@{" not in n
        and "//" not in n
        and not n.endswith(("/", ".", ".lock"))
    )
)
commits = st.from_regex(r"[0-9a-f]{40}", fullmatch=True).filter(lambda c: set(c) != {"0"})
object_names = st.from_regex(checks.DNS1123_SUBDOMAIN, fullmatch=True).filter(
    lambda n: len(n) <= 253
)
templates = st.lists(
    st.sampled_from(
        ["{sourceref}", "{\\1}", "{\\2}", "latest", "v", "-", ".", "_", "x/y", "é", " "]
    ),
    min_size=1,
    max_size=6,
).map("".join)


@given(
    template=templates,
    source_ref=st.text(max_size=300),
    groups=st.lists(st.text(max_size=50), max_size=2),
)
def test_every_rendered_tag_is_a_valid_image_tag(
    template: str, source_ref: str, groups: list[str]
) -> None:
    for tag in render_tags(template, RuleMatch(source_ref, tuple(groups))):
        assert checks.VALID_IMAGE_TAG.fullmatch(tag), tag


@settings(max_examples=200)
@given(name=object_names, ref=ref_names, commit=commits, uid=st.uuids())
def test_job_name_is_valid_deterministic_and_short(
    name: str, ref: str, commit: str, uid: object
) -> None:
    base = automated_build(tags=[{"source": "/.*/", "dockerTag": "{sourceref},latest"}])
    ab = AutomatedBuild.model_validate(
        {
            **base.model_dump(by_alias=True),
            "metadata": {"name": name, "namespace": "ns", "uid": str(uid)},
        }
    )
    (build,) = plan_builds(ab.spec, PushEvent.parse(f"refs/heads/{ref}", commit)).builds
    first = build_identity(ab, build).job_name
    assert first == build_identity(ab, build).job_name
    assert len(first) <= 63
    assert DNS1123_LABEL.fullmatch(first), first
    job = render_job(ab, build, BuildSettings())
    for value in job["metadata"]["labels"].values():
        assert len(value) <= 63, value
        assert LABEL_VALUE.fullmatch(value), value
    for tag in build.tags:
        assert checks.VALID_IMAGE_TAG.fullmatch(tag)
