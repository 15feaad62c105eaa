"""What every command group shares: the user error, reading input, writing bytes and kubectl's
client flags."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

import yaml


class CliError(Exception):
    """A user error: printed as ``autobuild: <message>`` with exit code 1."""


def yaml_documents(text: str, source: str) -> list[Any]:
    """The documents of a YAML stream (empty ones dropped); a CliError when it is not YAML."""
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise CliError(f"{source}: not valid YAML: {exc}") from exc


def read_input(path: str) -> str:
    """The text of the file ``path`` ('-': stdin); a CliError naming it when it cannot be read."""
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror}") from exc


def write_bytes(out: TextIO, content: bytes) -> None:
    """Write ``content`` exactly (through the binary buffer when the stream has one)."""
    out.flush()
    binary = getattr(out, "buffer", None)
    if binary is not None:
        binary.write(content)
        binary.flush()
    else:
        out.write(content.decode(errors="replace"))


def add_kube_options(parser: argparse.ArgumentParser) -> None:
    """kubectl's ``--kubeconfig`` and ``--context`` on a client command. kubectl never hands
    its own flags to a plugin (it passes the arguments after the plugin's name), so
    ``kubectl autobuild trigger app --context C`` must parse them itself."""
    parser.add_argument("--kubeconfig", help="the kubeconfig file (as kubectl's)")
    parser.add_argument("--context", help="the kubeconfig context (as kubectl's)")
