"""``ledger audit revenue ...`` and ``ledger audit verify``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

from ledger import api
from ledger.config import ConfigurationError
from ledger.db import connect


def register(groups: Any, common: argparse.ArgumentParser) -> None:
    group = groups.add_parser("audit", help="revenue history and log integrity")
    commands = group.add_subparsers(dest="audit_command", required=True)
    revenue = commands.add_parser("revenue", parents=[common], help="revenue from the event log")
    revenue.add_argument("--organization", metavar="UUID")
    revenue.add_argument("--from", dest="start", metavar="T", help="inclusive, on occurred_at")
    revenue.add_argument("--to", dest="end", metavar="T", help="exclusive, on occurred_at")
    revenue.add_argument("--as-of", dest="as_of", metavar="T", help="as recorded by time T")
    revenue.add_argument(
        "--group-by", choices=("month", "day", "content", "creator", "organization")
    )
    revenue.add_argument("--format", choices=("table", "json", "csv"), default="table")
    revenue.add_argument("--chart", metavar="FILE.png", type=Path)
    revenue.set_defaults(func=run_revenue)
    verify = commands.add_parser(
        "verify", parents=[common], help="the log is intact and the projections reconcile"
    )
    verify.add_argument(
        "--expect-head",
        metavar="POSITION:HASH",
        help="a head printed by an earlier verify: fails if history up to it was rewritten",
    )
    verify.set_defaults(func=run_verify)


def run_revenue(args: argparse.Namespace) -> int:
    from ledger.audit import render
    from ledger.audit.revenue import RevenueQuery, parse_moment, revenue

    try:
        query = RevenueQuery(
            organization=UUID(args.organization) if args.organization else None,
            start=parse_moment(args.start, "--from") if args.start else None,
            end=parse_moment(args.end, "--to") if args.end else None,
            as_of=parse_moment(args.as_of, "--as-of") if args.as_of else None,
            group_by=args.group_by,
        )
    except ValueError as error:
        message = str(error)
        if "UUID" in message or "hexadecimal" in message:
            message = f"--organization: {args.organization!r} is not a UUID"
        raise ConfigurationError(message) from None
    settings = api.settings(args.database_url, args.schema)
    with connect(settings, autocommit=True) as conn:
        report = revenue(conn, settings.schema, query)
    if args.chart is not None:
        from ledger.audit.chart import draw

        chart_report = report
        if args.group_by not in ("month", "day"):
            chart_report = revenue_by_month(settings, query)
        draw(chart_report, args.chart)
    if args.format == "json":
        sys.stdout.write(render.as_json(report) + "\n")
    elif args.format == "csv":
        sys.stdout.write(render.as_csv(report))
    else:
        print(render.as_table(report))
    return 0


def revenue_by_month(settings: Any, query: Any) -> Any:
    from dataclasses import replace

    from ledger.audit.revenue import revenue

    with connect(settings, autocommit=True) as conn:
        return revenue(conn, settings.schema, replace(query, group_by="month"))


def run_verify(args: argparse.Namespace) -> int:
    from ledger.audit.chain import verify_chain
    from ledger.audit.reconcile import reconcile

    anchor = None
    if args.expect_head:
        position, _, digest = args.expect_head.partition(":")
        if not position.isdigit() or len(digest) != 64:
            raise ConfigurationError("--expect-head takes POSITION:HASH (64 hex digits)")
        anchor = (int(position), digest)
    settings = api.settings(args.database_url, args.schema)
    with connect(settings, autocommit=True) as conn:
        chain = verify_chain(conn, settings.schema, anchor)
        if chain.problem is not None:
            print(f"FAIL log: {chain.problem}")
            return 1
        print(
            f"ok   log: {chain.events} events chained; head {chain.head_position}:{chain.head_hash}"
        )
        problem = reconcile(conn, settings.schema)
    if problem is not None:
        print(f"FAIL projections: {problem}")
        return 1
    print("ok   projections: purchases reconcile with the log per organization and currency")
    return 0
