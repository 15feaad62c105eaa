"""The ``autobuild`` command (and ``kubectl autobuild``): one module per command group, as
flux2's cmd/flux. ``render`` (no cluster), ``run`` (the operator), ``builds`` (trigger, cancel,
logs), ``account`` (repos, new, dockerfile); ``common`` holds what they share and ``kube`` the
one Kubernetes client they use."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import urllib3

from autobuild.cli import account, builds, render, run
from autobuild.cli.common import CliError


def build_parser(prog: str = "autobuild") -> argparse.ArgumentParser:
    """The argument parser of the ``autobuild`` command (``kubectl autobuild`` as a plugin)."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Docker Hub-style Automated Builds for Kubernetes."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (render, run, builds, account):  # the order of `autobuild --help`
        group.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "autobuild") -> int:
    """Entry point of the ``autobuild`` console script."""
    args = build_parser(prog).parse_args(argv)
    try:
        code: int = args.handler(args, sys.stdout, sys.stderr)
    except CliError as exc:
        sys.stderr.write(f"autobuild: {exc}\n")
        return 1
    except urllib3.exceptions.MaxRetryError as exc:
        # The Kubernetes client gave up connecting: wrong context, or the cluster is down.
        sys.stderr.write(f"autobuild: cannot reach the Kubernetes API server: {exc.reason}\n")
        return 1
    return code


def kubectl_plugin() -> int:
    """Entry point of ``kubectl-autobuild``: ``kubectl autobuild COMMAND ...``."""
    return main(prog="kubectl autobuild")
