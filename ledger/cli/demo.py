"""``ledger demo``: migrate, append a generated checkout history, print a summary."""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

import orjson
from psycopg import sql

from ledger import api, demo
from ledger.db import connect
from projections.registry import TABLES


def register(groups: Any, common: argparse.ArgumentParser) -> None:
    parser = groups.add_parser(
        "demo", parents=[common], help="migrate, append a realistic history, print a summary"
    )
    parser.add_argument("--purchases", type=int, default=300, help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = api.settings(args.database_url, args.schema)
    api.upgrade(settings)
    lines = [orjson.dumps(command) for command in demo.history(purchases=args.purchases)]
    answers: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    with api.open_ledger(settings) as ledger:
        for _, result in api.append_lines(ledger, lines):
            answers[result.status] += 1
            if result.error is not None:
                codes[result.error.code] += 1
    print(
        f"appended {len(lines)} commands: "
        + ", ".join(f"{n} {s}" for s, n in sorted(answers.items()))
    )
    if codes:
        print("  rejections: " + ", ".join(f"{n} {c}" for c, n in sorted(codes.items())))
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
    return 0
