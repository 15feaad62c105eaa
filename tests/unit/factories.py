"""Small builders of valid API objects for the unit tests."""

from __future__ import annotations

import copy
from typing import Any

from autobuild.api.models import AutomatedBuild

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_COMMIT = "89abcdef0123456789abcdef0123456789abcdef"

_BASE: dict[str, Any] = {
    "apiVersion": "autobuild.dev/v1alpha1",
    "kind": "AutomatedBuild",
    "metadata": {
        "name": "cavityflow",
        "namespace": "ci",
        "uid": "6f1c2d4e-aaaa-bbbb-cccc-1234567890ab",
    },
    "spec": {
        "source": {"repo": "github.com/acme/dockertext-cavityflow"},
        "image": {
            "namespace": "acme",
            "name": "dockertext-cavityflow",
            "visibility": "Public",
            "shortDescription": "Cavity flow solver",
        },
    },
}


def document(**spec_changes: Any) -> dict[str, Any]:
    """A valid AutomatedBuild document with top-level spec fields replaced."""
    doc = copy.deepcopy(_BASE)
    doc["spec"].update(spec_changes)
    return doc


def automated_build(**spec_changes: Any) -> AutomatedBuild:
    """A validated AutomatedBuild with top-level spec fields replaced."""
    return AutomatedBuild.model_validate(document(**spec_changes))
