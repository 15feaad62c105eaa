"""YAML output without anchors and aliases: people and GitOps tools read what we print."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml


class _NoAliasDumper(yaml.SafeDumper):
    """Writes repeated nodes in full instead of as ``&id001`` / ``*id001``."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(document: Any) -> str:
    """One document as block YAML, keys in insertion order."""
    return yaml.dump(document, Dumper=_NoAliasDumper, sort_keys=False, width=100)


def dump_all(documents: Iterable[Any]) -> str:
    """A YAML stream, every document starting with ``---``."""
    return yaml.dump_all(
        documents, Dumper=_NoAliasDumper, sort_keys=False, explicit_start=True, width=1000
    )
