"""Render the AutomatedBuild API reference (``docs/api.md``) from the pydantic models.

It reads the same structural schema the CRD is generated from (``crd.openapi_schema``), so the
reference says exactly what the API server validates: one section per object, one row per
field with its path, type, default, validation and description.
``python -m autobuild.api.reference`` prints it; ``make docs`` (and ``make crds``) writes it.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from autobuild import API_GROUP, API_VERSION, KIND, PLURAL
from autobuild.api.crd import PRINTER_COLUMNS, SHORT_NAMES, openapi_schema
from autobuild.api.models import AutomatedBuildSpec, AutomatedBuildStatus

HEADER = (
    "<!-- Generated from operator/autobuild/api/models.py by `make docs`"
    " (autobuild.api.reference). Do not edit. -->\n"
)


@dataclass(frozen=True)
class FieldDoc:
    """One field of the reference: where it is and what it accepts."""

    path: str
    type: str
    required: bool
    default: str
    validation: tuple[str, ...]
    description: str


@dataclass(frozen=True)
class ObjectDoc:
    """One object of the API (spec, spec.source, status.builds[], ...) and its fields."""

    path: str
    description: str
    fields: tuple[FieldDoc, ...]


def anchor(path: str) -> str:
    """The anchor GitHub gives the heading ``path`` (lower case, punctuation dropped)."""
    return re.sub(r"[^a-z0-9 _-]", "", path.lower()).replace(" ", "-")


def _code(value: str) -> str:
    """``value`` as an inline code span, however many backticks it holds."""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", value)), default=0) + 1)
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _object_child(node: dict[str, Any]) -> dict[str, Any] | None:
    """The object a field holds directly or as list items (it gets its own section)."""
    if "properties" in node:
        return node
    items = node.get("items")
    if isinstance(items, dict) and "properties" in items:
        return items
    return None


def _child_path(path: str, node: dict[str, Any]) -> str:
    return f"{path}[]" if node.get("type") == "array" else path


def _type(node: dict[str, Any], path: str) -> str:
    """The field's type as Kubernetes API references write it (string, []object, ...)."""
    kind = str(node.get("type", "object"))
    if kind == "array":
        items = node.get("items", {})
        if "properties" in items:
            return f"[[]object](#{anchor(path + '[]')})"
        return "[]" + _type(items, path + "[]")
    if kind == "object":
        if "properties" in node:
            return f"[object](#{anchor(path)})"
        values = node.get("additionalProperties")
        if isinstance(values, dict):
            return "map[string]" + _type(values, path + ".*")
        return "object"
    if "format" in node:
        return f"{kind} ({node['format']})"
    return kind


def _bounds(node: dict[str, Any], low: str, high: str, unit: str) -> list[str]:
    """'1 to 255 characters', 'at least 0', 'at most 32 items' from a pair of keywords."""
    lo, hi = node.get(low), node.get(high)
    suffix = f" {unit}" if unit else ""
    if lo is not None and hi is not None:
        return [f"{lo} to {hi}{suffix}"]
    if lo is not None:
        return [f"at least {lo}{suffix}"]
    if hi is not None:
        return [f"at most {hi}{suffix}"]
    return []


def _validation(node: dict[str, Any]) -> tuple[str, ...]:
    """Every constraint the schema puts on the field's value, in words."""
    rules: list[str] = []
    if "enum" in node:
        rules.append("one of " + ", ".join(_code(str(v)) for v in node["enum"]))
    rules += _bounds(node, "minLength", "maxLength", "characters")
    rules += _bounds(node, "minimum", "maximum", "")
    rules += _bounds(node, "minItems", "maxItems", "items")
    rules += _bounds(node, "minProperties", "maxProperties", "entries")
    if "pattern" in node:
        rules.append("pattern " + _code(node["pattern"]))
    values = node.get("additionalProperties")
    if isinstance(values, dict):
        rules += [f"each value: {rule}" for rule in _validation(values)]
    if node.get("x-kubernetes-list-type") == "map":
        keys = ", ".join(_code(k) for k in node.get("x-kubernetes-list-map-keys", []))
        rules.append(f"one entry per {keys}")
    # The CEL rules' own messages say what they check; the rule text is in the CRD.
    rules += [check["message"] for check in node.get("x-kubernetes-validations", [])]
    return tuple(rules)


def _field(path: str, node: dict[str, Any], required: bool) -> FieldDoc:
    return FieldDoc(
        path=path,
        type=_type(node, path),
        required=required,
        default=_code(_json(node["default"])) if "default" in node else "",
        validation=_validation(node),
        description=str(node.get("description", "")),
    )


def _objects(path: str, node: dict[str, Any]) -> Iterator[ObjectDoc]:
    """The object at ``path`` and, depth first, every object below it."""
    required = set(node.get("required", []))
    properties: dict[str, dict[str, Any]] = node.get("properties", {})
    fields = tuple(
        _field(f"{path}.{name}", sub, name in required) for name, sub in properties.items()
    )
    yield ObjectDoc(path, str(node.get("description", "")), fields)
    for name, sub in properties.items():
        child = _object_child(sub)
        if child is not None:
            yield from _objects(_child_path(f"{path}.{name}", sub), child)


def api_objects() -> list[ObjectDoc]:
    """Every object of the spec and the status, as the CRD's schema describes them."""
    objects = [
        *_objects("spec", openapi_schema(AutomatedBuildSpec)),
        *_objects("status", openapi_schema(AutomatedBuildStatus)),
    ]
    anchors = [anchor(o.path) for o in objects]
    if len(set(anchors)) != len(anchors):
        raise ValueError(f"two objects would share a heading anchor: {sorted(anchors)}")
    return objects


def _cell(text: str) -> str:
    """Text for a Markdown table cell: no line breaks, no bare '|', no raw HTML, no emphasis."""
    out: list[str] = []
    # Odd parts are code spans: only '|' needs escaping there (GFM tables unescape it).
    for i, part in enumerate(re.split(r"(`+[^`]*`+)", text.replace("\n", " "))):
        if i % 2 == 0:
            part = part.replace("<", "&lt;").replace(">", "&gt;").replace("*", "\\*")
        out.append(part.replace("|", "\\|"))
    return "".join(out)


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _object_section(obj: ObjectDoc) -> list[str]:
    lines = [f"### {obj.path}", ""]
    if obj.description:
        lines += [_cell(obj.description), ""]
    lines += [
        _row(["Field", "Type", "Default", "Validation", "Description"]),
        "|---|---|---|---|---|",
    ]
    for f in obj.fields:
        kind = f"{f.type}, **required**" if f.required else f.type
        lines.append(_row([_code(f.path), kind, f.default, "; ".join(f.validation), f.description]))
    return [*lines, ""]


def render_reference() -> str:
    """The whole reference as the Markdown committed in ``docs/api.md``."""
    objects = api_objects()
    lines = [
        f"# {KIND} API reference ({API_GROUP}/{API_VERSION})",
        "",
        f"`kind: {KIND}`, `apiVersion: {API_GROUP}/{API_VERSION}`, namespaced; plural "
        f"`{PLURAL}`, short names {', '.join(_code(n) for n in SHORT_NAMES)}. The operator "
        "writes `status` only (through the status subresource); `spec` is yours. Fields are "
        "camelCase; a field without a default and not required may be left out. "
        "`kubectl explain automatedbuild.spec --recursive` shows the same descriptions.",
        "",
        "Validation is what the API server enforces through the CRD's schema (the `pattern`s, "
        "lengths, ranges and CEL rules below); the operator checks the rest (a `/regex/` that "
        "RE2 cannot compile, a repo without owner and name, Secrets that exist) and reports it "
        "in the `Stalled` condition (see [troubleshooting](troubleshooting.md)).",
        "",
        "## Objects",
        "",
        *[f"- [{o.path}](#{anchor(o.path)})" for o in objects],
        "",
        "## `kubectl get` columns",
        "",
        _row(["Column", "From", "Shown"]),
        "|---|---|---|",
        *[
            _row([c["name"], _code(c["jsonPath"]), "with -o wide" if c.get("priority") else ""])
            for c in PRINTER_COLUMNS
        ],
        "",
        "## Fields",
        "",
    ]
    for obj in objects:
        lines += _object_section(obj)
    return HEADER + "\n".join(lines).rstrip("\n") + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_reference())
