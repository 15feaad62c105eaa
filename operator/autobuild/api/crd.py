"""Generate the AutomatedBuild CustomResourceDefinition from the pydantic models.

``python -m autobuild.api.crd`` prints the CRD as YAML; ``make crds`` writes it to ``crds/``.
"""

from __future__ import annotations

import sys
from typing import Any

from autobuild import API_GROUP, API_VERSION, KIND, PLURAL, yamlio
from autobuild.api.conditions import ConditionType
from autobuild.api.models import AutomatedBuildSpec, AutomatedBuildStatus

SHORT_NAMES = ["autobuild", "autobuilds", "ab"]

# JSON Schema keywords that have no place in a structural OpenAPI v3 schema.
_DROPPED_KEYS = {"title", "$defs"}

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Repo", "type": "string", "jsonPath": ".spec.source.repo"},
    {"name": "Image", "type": "string", "jsonPath": ".status.image"},
    {"name": "Visibility", "type": "string", "jsonPath": ".spec.image.visibility"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.latestBuild.phase"},
    {"name": "Commit", "type": "string", "jsonPath": ".status.latestBuild.shortCommit"},
    {
        "name": ConditionType.READY.value,
        "type": "string",
        "jsonPath": f'.status.conditions[?(@.type=="{ConditionType.READY}")].status',
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Ref", "type": "string", "jsonPath": ".status.latestBuild.sourceRef", "priority": 1},
    {"name": "Tags", "type": "string", "jsonPath": ".status.latestBuild.tags", "priority": 1},
    {"name": "Digest", "type": "string", "jsonPath": ".status.latestBuild.digest", "priority": 1},
    {
        "name": "Reason",
        "type": "string",
        "jsonPath": ".status.latestBuild.reason",
        "priority": 1,
    },
]


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    """Turn a pydantic JSON schema node into a structural OpenAPI v3 schema node."""
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in node:
        # Optional[X] is anyOf [X, null]: the field is simply not required.
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express a union in a structural schema: {node}")
        merged = {**options[0], **{k: v for k, v in node.items() if k != "anyOf"}}
        if merged.get("default", ...) is None:
            del merged["default"]
        return _structural(merged, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "properties":
            out[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key == "additionalProperties" and value is False:
            # Structural schemas forbid it next to properties; the API server prunes and, with
            # kubectl's strict field validation, rejects unknown fields anyway.
            continue
        elif key in ("items", "additionalProperties"):
            out[key] = _structural(value, defs)
        else:
            out[key] = value
    if out.get("default", ...) is None:
        del out["default"]
    return out


def openapi_schema(model: type[AutomatedBuildSpec] | type[AutomatedBuildStatus]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of one top-level model (spec or status)."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    result = _structural(schema, schema.get("$defs", {}))
    assert isinstance(result, dict)
    return result


def build_crd() -> dict[str, Any]:
    """The whole CustomResourceDefinition as a dict."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{API_GROUP}",
            "annotations": {"autobuild.dev/generated-by": "make crds (autobuild.api.crd)"},
        },
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": SHORT_NAMES,
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "AutomatedBuild builds a git repository's Dockerfile "
                            "into an image with Kaniko whenever its build rules match a push, "
                            "like Docker Hub's Automated Builds.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": openapi_schema(AutomatedBuildSpec),
                                "status": openapi_schema(AutomatedBuildStatus),
                            },
                        }
                    },
                }
            ],
        },
    }


def render_crd() -> str:
    """The CRD as the YAML text committed in ``crds/automatedbuild.yaml``."""
    header = "# Generated from operator/autobuild/api/models.py by `make crds`. Do not edit.\n"
    return header + yamlio.dump(build_crd())


if __name__ == "__main__":
    sys.stdout.write(render_crd())
