"""``autobuild run``: the operator (kopf runs the process) and its webhook receiver."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from autobuild.cli.common import CliError
from autobuild.controller.leader import (
    ElectionConfig,
    default_identity,
    default_namespace,
    parse_duration,
)
from autobuild.settings import BuildSettings, GitHubSettings
from autobuild.webhooks.receiver import DEFAULT_ADDRESS, parse_address


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``autobuild run``: the operator."""
    import kopf

    from autobuild.controller.handlers import PROBES, RUNTIME  # importing registers handlers

    host, _, port = args.probes.rpartition(":")
    if not host or not port.isdigit():
        raise CliError(f"--probes: expected HOST:PORT, got {args.probes!r}")
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat[args.log_format.upper()])
    RUNTIME.namespaces = list(args.namespace or [])
    try:
        parse_address(args.webhook_address)
    except ValueError as exc:
        raise CliError(f"--webhook-address: {exc}") from exc
    RUNTIME.webhook_address = args.webhook_address
    RUNTIME.election = _election(args)
    try:  # a bad setting stops the start, with its name, before anything runs
        BuildSettings.from_env()
        GitHubSettings.from_env()
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    server = PROBES.serve(host.strip("[]"), int(port))
    err.write(f"autobuild: probes on http://{args.probes}/healthz and /readyz\n")
    try:
        kopf.run(standalone=True, clusterwide=True)
    finally:
        server.shutdown()
    return 0


def _election(args: argparse.Namespace) -> ElectionConfig | None:
    """The leader election the flags ask for (None: off)."""
    if not args.leader_elect:
        return None
    try:
        return ElectionConfig(
            namespace=args.leader_election_namespace or default_namespace(),
            identity=default_identity(),
            lease_duration=parse_duration(args.leader_election_lease_duration),
            renew_deadline=parse_duration(args.leader_election_renew_deadline),
            retry_period=parse_duration(args.leader_election_retry_period),
        )
    except ValueError as exc:
        raise CliError(f"leader election: {exc}") from exc


def add_commands(commands: Any) -> None:
    """``run``."""
    run_cmd = commands.add_parser("run", help="run the operator")
    run_cmd.add_argument(
        "-n", "--namespace", action="append", help="watch only this namespace (repeatable)"
    )
    run_cmd.add_argument(
        "--probes",
        default="127.0.0.1:8081",
        help="HOST:PORT serving /healthz and /readyz (use 0.0.0.0:8081 in a Pod)",
    )
    run_cmd.add_argument(
        "--webhook-address",
        default=DEFAULT_ADDRESS,
        help="HOST:PORT of the webhook receiver (/hooks/github, /hooks/bitbucket, /hooks/gitlab, "
        "/hooks/trigger/NS/NAME/TOKEN)",
    )
    run_cmd.add_argument(
        "--leader-elect",
        action="store_true",
        help="run as one of several replicas: only the holder of the Lease autobuild-operator "
        "reconciles and writes (the others keep their caches and serve webhooks and probes)",
    )
    run_cmd.add_argument(
        "--leader-election-namespace",
        help="namespace of the Lease (default: $POD_NAMESPACE, else autobuild-system)",
    )
    run_cmd.add_argument(
        "--leader-election-lease-duration",
        default="15s",
        help="how long followers wait before taking a Lease that is not renewed",
    )
    run_cmd.add_argument(
        "--leader-election-renew-deadline",
        default="10s",
        help="how long the leader tries to renew before it stops leading (and writing)",
    )
    run_cmd.add_argument(
        "--leader-election-retry-period",
        default="2s",
        help="how often replicas try to take or renew the Lease",
    )
    run_cmd.add_argument(
        "--log-format", choices=["full", "plain", "json"], default="full", help="log lines"
    )
    run_cmd.add_argument("-v", "--verbose", action="store_true")
    run_cmd.set_defaults(handler=run)
