"""``ledger audit revenue ...`` and ``ledger audit verify``: thin shells over ``ledger.audit``.

Exit statuses: revenue 0, or 2 for a bad option (named, with its rule) or a connection
problem; verify 0 when every check holds, 1 naming the first problem.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import UUID

from ledger import api
from ledger.database import migrations
from ledger.database.connections import connect
from ledger.domain.provenance import SOURCES, UNRECORDED
from ledger.errors import ConfigurationError


def register(groups: Any, common: argparse.ArgumentParser) -> None:
    group = groups.add_parser("audit", help="revenue history and log integrity")
    commands = group.add_subparsers(dest="audit_command", required=True)
    revenue = commands.add_parser(
        "revenue",
        parents=[common],
        help="revenue from the event log",
        description="Revenue from the event log. Times are dates (midnight UTC) or RFC 3339 "
        "times with an offset.",
    )
    revenue.add_argument("--organization", metavar="UUID", help="only this organization")
    revenue.add_argument("--from", dest="start", metavar="T", help="inclusive, on occurred_at")
    revenue.add_argument("--to", dest="end", metavar="T", help="exclusive, on occurred_at")
    revenue.add_argument(
        "--as-of", dest="as_of", metavar="T", help="as the ledger knew it then (recorded time)"
    )
    revenue.add_argument(
        "--group-by", choices=("month", "day", "content", "creator", "organization")
    )
    revenue.add_argument(
        "--source",
        choices=(*SOURCES, UNRECORDED),
        help="only completions and refunds recorded from this source "
        f"({UNRECORDED}: recorded before provenance)",
    )
    revenue.add_argument("--format", choices=("table", "json", "csv"), default="table")
    revenue.add_argument(
        "--chart",
        metavar="FILE.png",
        type=Path,
        help="also draw gross, refunds and net per month (per day with --group-by day)",
    )
    revenue.set_defaults(func=run_revenue)
    verify = commands.add_parser(
        "verify",
        parents=[common],
        help="the log is intact and the projections reconcile",
        description="Checks the hash chain, the log's guards, anchors and the purchases "
        "reconciliation. Exit 0 when all hold, 1 naming the first problem.",
    )
    verify.add_argument(
        "--expect-head",
        metavar="POSITION:HASH",
        action="append",
        default=[],
        help="a head printed by an earlier verify: fails if history up to it was rewritten "
        "(repeatable)",
    )
    verify.add_argument(
        "--anchors", metavar="FILE", type=Path, help="heads to check, one POSITION:HASH a line"
    )
    verify.add_argument(
        "--record-head",
        metavar="FILE",
        type=Path,
        help="when every check holds, append the head to FILE (keep it out of the database)",
    )
    verify.set_defaults(func=run_verify)


def _query(args: argparse.Namespace) -> Any:
    from ledger.audit.revenue import RevenueQuery, parse_moment

    organization = None
    if args.organization:
        try:
            organization = UUID(args.organization)
        except ValueError:
            raise ConfigurationError(
                f"--organization: {args.organization!r} is not a UUID"
            ) from None
    try:
        return RevenueQuery(
            organization=organization,
            start=parse_moment(args.start, "--from") if args.start else None,
            end=parse_moment(args.end, "--to", exclusive=True) if args.end else None,
            as_of=parse_moment(args.as_of, "--as-of") if args.as_of else None,
            group_by=args.group_by,
            source=args.source,
        )
    except ValueError as error:
        raise ConfigurationError(str(error)) from None


def run_revenue(args: argparse.Namespace) -> int:
    from ledger.audit import render
    from ledger.audit.revenue import checked_revenue, revenue

    query = _query(args)
    if args.chart is not None and args.chart.suffix.lower() != ".png":
        raise ConfigurationError(f"--chart: {str(args.chart)!r} must name a .png file")
    settings = api.settings(args.database_url, args.schema)
    with connect(settings, autocommit=True) as conn:
        migrations.require_log(conn, settings.schema)
        report = checked_revenue(conn, settings.schema, query)
        if query.organization is not None and not _registered(conn, settings, query.organization):
            print(
                f"ledger: no organization {query.organization} is registered in the log: "
                "the report is empty",
                file=sys.stderr,
            )
        if args.chart is not None:
            from ledger.audit.chart import draw

            per = "day" if args.group_by == "day" else "month"
            chart_report = report if args.group_by == per else None
            if chart_report is None:
                chart_report = revenue(conn, settings.schema, replace(query, group_by=per))
            draw(chart_report, args.chart, f"Revenue by {per}", _subtitle(query))
            print(f"ledger: chart written to {args.chart}", file=sys.stderr)
    if args.format == "json":
        sys.stdout.write(render.as_json(report) + "\n")
    elif args.format == "csv":
        sys.stdout.write(render.as_csv(report))
    else:
        sys.stdout.write(render.as_table(report) + "\n")
    return 0


def _registered(conn: Any, settings: Any, organization: UUID) -> bool:
    from psycopg import sql

    from ledger.database.roles import organization_aggregate

    row = conn.execute(
        sql.SQL(
            "SELECT EXISTS (SELECT 1 FROM {} WHERE topic = 'OrganizationRegistered' "
            "AND originator_id = %s)"
        ).format(sql.Identifier(settings.schema, "ledger_events")),
        (organization_aggregate(organization),),
    ).fetchone()
    return bool(row and row[0])


def _subtitle(query: Any) -> str:
    parts = [f"organization {query.organization}" if query.organization else "all organizations"]
    if query.start:
        parts.append(f"occurred on or after {query.start.isoformat()}")
    if query.end:
        parts.append(f"occurred before {query.end.isoformat()}")
    if query.as_of:
        parts.append(f"as recorded by {query.as_of.isoformat()}")
    if query.source:
        parts.append(f"recorded from {query.source}")
    return "; ".join(parts) + "; gross in the period of completion, refunds in their own"


def run_verify(args: argparse.Namespace) -> int:
    from ledger.audit.anchors import parse_anchor, read_anchors, record
    from ledger.audit.verify import verify

    empty: list[str] = []
    try:
        anchors = [parse_anchor(text) for text in args.expect_head]
        if args.anchors is not None:
            from_file = read_anchors(args.anchors)
            if not from_file:
                empty.append(f"--anchors {args.anchors}")
            anchors += from_file
    except ValueError as error:
        raise ConfigurationError(str(error)) from None
    settings = api.settings(args.database_url, args.schema)
    with connect(settings, autocommit=True) as conn:
        result = verify(conn, settings.schema, anchors, empty)
    for check in result.checks:
        print(check.line())
    problem = result.first_problem
    if problem is not None:
        print(f"verify failed: the first problem is in {problem.name}", file=sys.stderr)
        return 1
    if args.record_head is not None:
        heads = result.heads or [result.head]  # every chain's head (docs/audit.md)
        try:
            for head in heads:
                record(args.record_head, head)
        except ValueError as error:
            raise ConfigurationError(str(error)) from None
        for head in heads:
            print(f"head {head} appended to {args.record_head}")
    return 0
