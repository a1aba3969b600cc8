"""Do the projected purchases reconcile with the log?

An accountant's check, per organization and currency: purchases by status, gross,
refunded and each fee, summed from the ``purchases`` table and, independently of the
projection code, from the purchase events in the log. Both sides are read in one
snapshot, in SQL (a million events in about a second).

The log side rebuilds each purchase's row from its last events: the last of
``PurchaseStarted``/``Completed``/``Failed`` writes the whole row (status pending,
completed, failed; refunded back to 0), a later ``PurchaseRefunded`` sets the
cumulative refunded amount and the status it carries. Purchases of a customer deleted
after that row was written are left out: the table lost them with the customer (ON
DELETE CASCADE) while the log keeps them, and the revenue report still counts them.

On a difference the first purchase that differs is named too, so the row to look at
is known.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

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

_LOG_ROWS = """
WITH purchase_events AS (
    SELECT e.notification_id, e.topic, r.*
      FROM {events} e
     CROSS JOIN LATERAL json_to_record(convert_from(e.state, 'UTF8')::json) AS r(
            stripe_payment_intent_id text, customer_id text, organization_id text,
            currency text, amount_paid_cents bigint, refunded_amount_cents bigint,
            status text, platform_fee_cents bigint, organization_fee_cents bigint,
            creator_payout_cents bigint)
     WHERE e.topic IN ('PurchaseStarted', 'PurchaseCompleted', 'PurchaseFailed',
                       'PurchaseRefunded')
), row_written AS (
    SELECT DISTINCT ON (stripe_payment_intent_id) *
      FROM purchase_events
     WHERE topic <> 'PurchaseRefunded'
     ORDER BY stripe_payment_intent_id, notification_id DESC
), last_event AS (
    SELECT DISTINCT ON (stripe_payment_intent_id)
           stripe_payment_intent_id, notification_id, topic, status, refunded_amount_cents
      FROM purchase_events
     ORDER BY stripe_payment_intent_id, notification_id DESC
), deleted_customers AS (
    SELECT r.user_id, max(e.notification_id) AS position
      FROM {events} e
     CROSS JOIN LATERAL json_to_record(convert_from(e.state, 'UTF8')::json) AS r(user_id text)
     WHERE e.topic IN ('UserDeleted', 'UserErased')  -- an erasure deletes as a deletion
     GROUP BY r.user_id
), log_rows AS (
    SELECT w.stripe_payment_intent_id, w.organization_id, w.currency,
           CASE WHEN l.topic = 'PurchaseRefunded' THEN l.status
                WHEN w.topic = 'PurchaseStarted' THEN 'pending'
                WHEN w.topic = 'PurchaseCompleted' THEN 'completed'
                ELSE 'failed' END AS status,
           w.amount_paid_cents,
           CASE WHEN l.topic = 'PurchaseRefunded' THEN l.refunded_amount_cents ELSE 0 END
               AS refunded_amount_cents,
           w.platform_fee_cents, w.organization_fee_cents, w.creator_payout_cents
      FROM row_written w
      JOIN last_event l USING (stripe_payment_intent_id)
     WHERE NOT EXISTS (SELECT 1 FROM deleted_customers d
                        WHERE d.user_id = w.customer_id AND d.position > w.notification_id)
), table_rows AS (
    SELECT stripe_payment_intent_id::text, organization_id::text, currency::text, status::text,
           amount_paid_cents::bigint, refunded_amount_cents::bigint,
           platform_fee_cents::bigint, organization_fee_cents::bigint,
           creator_payout_cents::bigint
      FROM {purchases}
)
"""

_SUMS = """
SELECT organization_id, currency,
       count(*) FILTER (WHERE status = 'pending'),
       count(*) FILTER (WHERE status = 'completed'),
       count(*) FILTER (WHERE status = 'refunded'),
       count(*) FILTER (WHERE status = 'failed'),
       coalesce(sum(amount_paid_cents) FILTER (WHERE status IN ('completed', 'refunded')), 0),
       coalesce(sum(refunded_amount_cents), 0),
       coalesce(sum(platform_fee_cents) FILTER (WHERE status IN ('completed', 'refunded')), 0),
       coalesce(sum(organization_fee_cents) FILTER (WHERE status IN ('completed', 'refunded')), 0),
       coalesce(sum(creator_payout_cents) FILTER (WHERE status IN ('completed', 'refunded')), 0)
  FROM {side}
 GROUP BY organization_id, currency
"""

_FIRST_DIFFERENT_PURCHASE = """
SELECT coalesce(t.stripe_payment_intent_id, l.stripe_payment_intent_id),
       to_jsonb(t) - 'stripe_payment_intent_id', to_jsonb(l) - 'stripe_payment_intent_id'
  FROM (SELECT * FROM table_rows WHERE organization_id = %(organization)s
                                   AND currency = %(currency)s) t
  FULL JOIN (SELECT * FROM log_rows WHERE organization_id = %(organization)s
                                      AND currency = %(currency)s) l
    USING (stripe_payment_intent_id)
 WHERE to_jsonb(t) IS DISTINCT FROM to_jsonb(l)
 ORDER BY 1
 LIMIT 1
"""

Sums = dict[tuple[str, str], dict[str, int]]


@dataclass(frozen=True)
class Reconciliation:
    organizations: int
    currencies: int
    purchases: int
    problem: str | None


def _sums(conn: psycopg.Connection[Any], prefix: sql.Composed, side: str) -> Sums:
    query = prefix + sql.SQL(_SUMS).format(side=sql.Identifier(side))
    return {
        (str(row[0]), str(row[1])): dict(zip(MEASURES, (int(v) for v in row[2:]), strict=True))
        for row in conn.execute(query).fetchall()
    }


def reconcile(conn: psycopg.Connection[Any], schema: str) -> Reconciliation:
    """Compares the ``purchases`` table with the log; names the first difference."""
    prefix = sql.SQL(_LOG_ROWS).format(
        events=sql.Identifier(schema, "ledger_events"),
        purchases=sql.Identifier(schema, "purchases"),
    )
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        # before the snapshot: a rebuild's switch of purchases then either committed
        # already (the snapshot sees the new table's rows) or waits for this check
        conn.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(
                sql.Identifier(schema, "purchases")
            )
        )
        from_table = _sums(conn, prefix, "table_rows")
        from_log = _sums(conn, prefix, "log_rows")
        problem = None
        for organization, currency in sorted(set(from_log) | set(from_table)):
            table_side = from_table.get((organization, currency), {})
            log_side = from_log.get((organization, currency), {})
            for measure in MEASURES:
                in_table, in_log = table_side.get(measure, 0), log_side.get(measure, 0)
                if in_table != in_log:
                    problem = (
                        f"purchases of organization {organization} in {currency}: {measure} is "
                        f"{in_table} in the table but {in_log} from the log"
                        + _first_purchase(conn, prefix, organization, currency)
                    )
                    break
            if problem:
                break
    organizations = {o for o, _ in from_log} | {o for o, _ in from_table}
    currencies = {c for _, c in from_log} | {c for _, c in from_table}
    purchases = sum(sum(s[m] for m in MEASURES[:4]) for s in from_log.values())
    return Reconciliation(len(organizations), len(currencies), purchases, problem)


def _first_purchase(
    conn: psycopg.Connection[Any], prefix: sql.Composed, organization: str, currency: str
) -> str:
    row = conn.execute(
        prefix + sql.SQL(_FIRST_DIFFERENT_PURCHASE),
        {"organization": organization, "currency": currency},
    ).fetchone()
    if row is None:
        return ""
    intent, in_table, in_log = row
    if in_table is None:
        return f" (first: purchase {intent} is in the log but not in the table)"
    if in_log is None:
        return f" (first: purchase {intent} is in the table but not in the log)"
    columns = [c for c in in_table if in_table.get(c) != in_log.get(c)]
    details = ", ".join(
        f"{c} {in_table.get(c)} in the table, {in_log.get(c)} in the log" for c in columns
    )
    return f" (first: purchase {intent}: {details})"
