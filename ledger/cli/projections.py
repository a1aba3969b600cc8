"""``ledger projections rebuild [--only NAME] | verify | status [--format json]``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from ledger import api


def register(groups: Any, common: argparse.ArgumentParser) -> None:
    group = groups.add_parser("projections", help="rebuild, verify and inspect the projections")
    commands = group.add_subparsers(dest="projections_command", required=True)
    rebuild = commands.add_parser(
        "rebuild", parents=[common], help="rebuild from the log; an atomic switch at the end"
    )
    rebuild.add_argument(
        "--only", action="append", metavar="NAME", help="rebuild only this table (repeatable)"
    )
    rebuild.set_defaults(func=run_rebuild)
    verify = commands.add_parser(
        "verify", parents=[common], help="compare the live tables with a fresh fold of the log"
    )
    verify.set_defaults(func=run_verify)
    status = commands.add_parser("status", parents=[common], help="position and lag of each")
    status.add_argument("--format", choices=("table", "json"), default="table")
    status.set_defaults(func=run_status)


def run_rebuild(args: argparse.Namespace) -> int:
    from ledger.upkeep.rebuild import rebuild

    report = rebuild(api.settings(args.database_url, args.schema), args.only)
    rows = ", ".join(f"{table} {count}" for table, count in report.rows.items())
    print(
        f"rebuilt {', '.join(report.tables)} from {report.events} events up to position "
        f"{report.position} in {report.seconds:.2f}s (switch lock {report.switch_lock_ms:.1f} ms)"
    )
    print(f"rows: {rows}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from ledger.upkeep.verify import verify

    findings = verify(api.settings(args.database_url, args.schema))
    for finding in findings:
        print(finding.describe())
    if findings:
        print(f"{len(findings)} difference(s) between the live tables and the log")
        return 1
    print("the live tables equal the log")
    return 0


def run_status(args: argparse.Namespace) -> int:
    from ledger.upkeep.status import status

    states = status(api.settings(args.database_url, args.schema))
    if args.format == "json":
        sys.stdout.write(
            orjson.dumps({"projections": [s.as_dict() for s in states]}).decode() + "\n"
        )
        return 0
    print(
        f"{'projection':<16}{'exists':>8}{'state':>8}{'position':>10}{'head':>10}{'lag':>6}"
        "  last rebuild"
    )
    for s in states:
        rebuilt = f"{s.rebuilt_at} at {s.rebuilt_position}" if s.rebuilt_at else "never"
        position = "-" if s.position is None else str(s.position)
        lag = "-" if s.lag is None else str(s.lag)
        exists = "yes" if s.exists else "no"
        state = "stale" if s.stale else "current"
        print(f"{s.name:<16}{exists:>8}{state:>8}{position:>10}{s.head:>10}{lag:>6}  {rebuilt}")
    for s in states:
        if s.stale:
            print(
                f"ledger: {s.name} does not reflect the log ({s.stale_reason}): "
                "run `ledger db upgrade` (or `ledger projections rebuild`)",
                file=sys.stderr,
            )
    return 0
