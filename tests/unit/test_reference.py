"""The committed API reference (docs/api.md) is the one generated from the models, and it is
complete: every field of the CRD's schema, each with a description."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from autobuild.api.crd import openapi_schema
from autobuild.api.models import AutomatedBuildSpec, AutomatedBuildStatus
from autobuild.api.reference import FieldDoc, anchor, api_objects, render_reference

API_MD = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def fields() -> dict[str, FieldDoc]:
    return {f.path: f for obj in api_objects() for f in obj.fields}


def schema_paths(path: str, node: dict[str, Any]) -> list[str]:
    """Every property path of a structural schema, lists written as ``name[]``."""
    found = []
    for name, sub in node.get("properties", {}).items():
        found.append(f"{path}.{name}")
        items = sub.get("items", {})
        if "properties" in items:
            found += schema_paths(f"{path}.{name}[]", items)
        found += schema_paths(f"{path}.{name}", sub)
    return found


def test_committed_reference_matches_the_models() -> None:
    assert API_MD.read_text() == render_reference(), (
        "docs/api.md is stale: run `make docs` (or `make crds`) and commit it"
    )


def test_every_field_of_the_schema_is_documented_with_a_description() -> None:
    expected = schema_paths("spec", openapi_schema(AutomatedBuildSpec)) + schema_paths(
        "status", openapi_schema(AutomatedBuildStatus)
    )
    documented = fields()
    assert sorted(documented) == sorted(expected)
    undescribed = [path for path, f in documented.items() if not f.description.strip()]
    assert not undescribed, f"give these fields a description in models.py: {undescribed}"


def test_types_defaults_and_validation_come_from_the_schema() -> None:
    docs = fields()
    assert docs["spec.source.repo"].required
    assert any(v.startswith("pattern `^") for v in docs["spec.source.repo"].validation)
    assert docs["spec.image.visibility"].validation == ("one of `Public`, `Private`",)
    assert docs["spec.image.shortDescription"].validation == ("1 to 100 characters",)
    assert docs["spec.tags"].validation == ("1 to 32 items",)
    assert docs["spec.tags"].type == "[[]object](#spectags)"
    assert docs["spec.tags[].dockerTag"].default == '`"{sourceref}"`'
    assert docs["spec.historyLimit.failed"].validation == ("0 to 100",)
    assert "must be between 1m and 24h" in docs["spec.timeout"].validation
    assert docs["spec.buildArgs"].type == "map[string]string"
    assert "each value: at most 4096 characters" in docs["spec.buildArgs"].validation
    assert docs["status.conditions"].validation == ("one entry per `type`",)
    assert docs["status.builds[].startTime"].type == "string (date-time)"
    assert not docs["spec.image.pushSecret"].required
    assert docs["spec.image.pushSecret"].default == ""


def test_markdown_tables_and_links_hold() -> None:
    text = render_reference()
    headings = {anchor(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}
    links = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert links
    assert links <= headings, links - headings
    rows = [line for line in text.splitlines() if line.startswith(("| `spec.", "| `status."))]
    for row in rows:
        # A '|' inside a pattern is escaped, so every row has exactly the table's 5 cells.
        assert len(re.findall(r"(?<!\\)\|", row)) == 6, row
    assert "(\\.\\|_\\|__\\|-+)" in text
    assert "<repository>" not in text
    assert "&lt;repository&gt;/buildcache" in text
