"""Do the projected purchases reconcile with the log?

Per organization and currency: purchases by status, gross, refunded and fee sums,
from the ``purchases`` table and from a fold of the log (the same pure projection
a rebuild uses, so purchases of a deleted customer leave both sides alike).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import psycopg
from psycopg import sql

from projections import source
from projections.fold import Fold
from projections.registry import changes_for

MEASURES = (
    "pending",
    "completed",
    "refunded",
    "failed",
    "gross_cents",
    "refunded_cents",
    "platform_fee_cents",
    "organization_fee_cents",
    "creator_payout_cents",
)

Totals = dict[tuple[str, str], dict[str, int]]


def _add(totals: Totals, row: dict[str, Any]) -> None:
    bucket = totals[(str(row["organization_id"]), str(row["currency"]))]
    status = str(row["status"])
    bucket[status] += 1
    if status in ("completed", "refunded"):
        bucket["gross_cents"] += int(row["amount_paid_cents"])
        bucket["platform_fee_cents"] += int(row["platform_fee_cents"] or 0)
        bucket["organization_fee_cents"] += int(row["organization_fee_cents"] or 0)
        bucket["creator_payout_cents"] += int(row["creator_payout_cents"] or 0)
    bucket["refunded_cents"] += int(row["refunded_amount_cents"])


def reconcile(conn: psycopg.Connection[Any], schema: str) -> str | None:
    """None when the table and the log agree, else the first difference."""
    from_log: Totals = defaultdict(lambda: defaultdict(int))
    from_table: Totals = defaultdict(lambda: defaultdict(int))
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        fold = Fold(("purchases",))
        for batch in source.events(conn, schema, 0, source.head(conn, schema)):
            fold.apply(changes_for((e for _, e in batch), frozenset(("purchases",))))
        for row in fold.rows["purchases"].values():
            _add(from_log, row)
        query = sql.SQL(
            "SELECT organization_id, currency, status, amount_paid_cents, refunded_amount_cents, "
            "platform_fee_cents, organization_fee_cents, creator_payout_cents FROM {}"
        ).format(sql.Identifier(schema, "purchases"))
        with conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
            for table_row in cursor.execute(query):
                _add(from_table, table_row)
    for organization, currency in sorted(set(from_log) | set(from_table)):
        log_side = from_log.get((organization, currency), {})
        table_side = from_table.get((organization, currency), {})
        for measure in MEASURES:
            if log_side.get(measure, 0) != table_side.get(measure, 0):
                return (
                    f"purchases of organization {organization} in {currency}: {measure} is "
                    f"{table_side.get(measure, 0)} in the table but {log_side.get(measure, 0)} "
                    "from the log"
                )
    return None
