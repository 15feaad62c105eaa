"""The committed CRD is the one generated from the models, and it is structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autobuild.api.crd import build_crd, render_crd

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "automatedbuild.yaml"


def test_committed_crd_matches_the_models() -> None:
    assert CRD_PATH.read_text() == render_crd(), "crds/ is stale: run `make crds` and commit it"


def walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.get("properties", {}).items():
            found += walk(value, f"{path}.{key}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                found += walk(node[key], f"{path}[{key}]")
    return found


def test_schema_is_structural() -> None:
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in walk(schema):
        assert "type" in node, f"{path} has no type"
        assert not {"$ref", "anyOf", "oneOf", "allOf", "title", "$defs"} & node.keys(), path
        assert not ("properties" in node and "additionalProperties" in node), path
        assert node.get("default", ...) is not None, f"{path} defaults to null"


def test_names_columns_and_subresources() -> None:
    crd = build_crd()
    names = crd["spec"]["names"]
    assert names["shortNames"] == ["autobuild", "autobuilds", "ab"]
    assert "categories" not in names
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert {"Repo", "Image", "Visibility", "Phase", "Commit", "Age"} <= columns.keys()
    assert columns["Tags"]["priority"] == 1
    assert columns["Digest"]["priority"] == 1


def test_validation_reaches_the_crd() -> None:
    spec = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    image = spec["properties"]["image"]
    assert image["properties"]["visibility"]["enum"] == ["Public", "Private"]
    assert image["properties"]["shortDescription"]["maxLength"] == 100
    assert set(image["required"]) == {"namespace", "name", "visibility", "shortDescription"}
    rule = spec["properties"]["tags"]["items"]
    assert rule["x-kubernetes-validations"]
    assert rule["properties"]["dockerfile"]["x-kubernetes-validations"]
    assert spec["properties"]["timeout"]["x-kubernetes-validations"]
    assert "pattern" in spec["properties"]["source"]["properties"]["repo"]
    assert spec["properties"]["source"]["properties"]["repo"]["description"]
