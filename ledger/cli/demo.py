"""``ledger demo``: migrate, append a generated checkout history, print a summary.

The demo invents purchases, refunds and grants, and the log is append-only: once in, they stay.
So it runs on the embedded default, or on a given database only while that database's log is
empty, and refuses otherwise (exit 2). On an embedded log that already begins with the demo it
appends nothing: a second demo changes nothing. (Appending the history again would not be a
no-op: a rejected command is not recorded, so a redelivery is decided afresh against the later
state; the demo's history has a grant rejected because the customer bought the video, followed by
a revoke that removes that access, so a second run would accept the grant.)
"""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

import orjson
from psycopg import sql

from ledger import api
from ledger.cli.server import given_url
from ledger.commands import demo
from ledger.config import Settings
from ledger.database import embedded
from ledger.database.connections import connect
from ledger.errors import ConfigurationError
from projections.registry import TABLES


def register(groups: Any, common: argparse.ArgumentParser) -> None:
    parser = groups.add_parser(
        "demo", parents=[common], help="migrate, append a realistic history, print a summary"
    )
    parser.add_argument("--purchases", type=int, default=300, help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def _last_position(settings: Settings) -> int | None:
    """The log's last position; 0 when it is empty or does not exist yet."""
    with connect(settings, autocommit=True) as conn:
        found = conn.execute("SELECT to_regclass('ledger_events') IS NOT NULL").fetchone()
        if not found or not found[0]:
            return 0
        row = conn.execute("SELECT coalesce(max(notification_id), 0) FROM ledger_events").fetchone()
        return int(row[0]) if row else 0


def _begins_with_the_demo(settings: Settings) -> bool:
    first_command = next(iter(demo.history()))
    with connect(settings, autocommit=True) as conn:
        row = conn.execute(
            "SELECT state FROM ledger_events ORDER BY notification_id LIMIT 1"
        ).fetchone()
    if row is None:
        return False
    try:
        state = orjson.loads(bytes(row[0]))
    except orjson.JSONDecodeError:
        return False
    return isinstance(state, dict) and all(
        state.get(key) == first_command[key] for key in ("organization_id", "name")
    )


def run(args: argparse.Namespace) -> int:
    url = given_url(args)
    settings = api.settings(args.database_url, args.schema)
    last = _last_position(settings)
    if last and url:
        raise ConfigurationError(
            f"demo refused: the given database's log holds events (up to position {last}), and "
            f"the demo would add invented purchases to it for ever (the log is append-only). "
            f"Run `ledger demo` without a database URL (the embedded server), or on a database "
            f"whose log is empty"
        )
    if last and not _begins_with_the_demo(settings):
        raise ConfigurationError(
            f"demo refused: the embedded log under {embedded.home()} holds events that are not "
            f"the demo's (up to position {last}); the demo appends only to an empty log. Set "
            f"LEDGER_HOME to another directory to see the demo"
        )
    if last:
        print(f"the demo already ran under {embedded.home()}: nothing appended\n")
        _summary(settings)
        return 0
    if url:
        print("the given database's log is empty: the demo's invented history goes into it\n")
    api.upgrade(settings)
    lines = [orjson.dumps(command) for command in demo.history(purchases=args.purchases)]
    answers: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    with api.open_ledger(settings) as ledger:
        for _, result in api.append_lines(ledger, lines, source="cli", name="demo"):
            answers[result.status] += 1
            if result.error is not None:
                codes[result.error.code] += 1
    print(
        f"appended {len(lines)} commands: "
        + ", ".join(f"{n} {s}" for s, n in sorted(answers.items()))
    )
    if codes:
        print("  rejections: " + ", ".join(f"{n} {c}" for c, n in sorted(codes.items())))
    _summary(settings)
    return 0


def _summary(settings: Settings) -> None:
    with connect(settings, autocommit=True) as conn:
        print("\ntables")
        for table in TABLES:
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            row = conn.execute(query).fetchone()
            print(f"  {table:<16}{row[0] if row else 0:>8}")
        print("\npurchases by status")
        for status, count in conn.execute(
            "SELECT status, count(*) FROM purchases GROUP BY status ORDER BY status"
        ):
            print(f"  {status:<16}{count:>8}")
        print("\nrevenue by currency (cents)")
        print(f"  {'currency':<10}{'gross':>12}{'refunded':>12}{'net':>12}")
        for currency, gross, refunded in conn.execute(
            "SELECT currency, sum(amount_paid_cents::bigint), sum(refunded_amount_cents::bigint)"
            " FROM purchases WHERE status IN ('completed', 'refunded')"
            " GROUP BY currency ORDER BY currency"
        ):
            print(f"  {currency:<10}{gross:>12}{refunded:>12}{gross - refunded:>12}")
