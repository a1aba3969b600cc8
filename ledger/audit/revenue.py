"""The revenue report, computed from the event log (the source of truth).

Gross counts in the period a purchase completed; a refund counts in the period it
occurred; each refund carries its parties' shares by the cumulative rule (see
``ledger.domain.aggregates.refund_shares``), so splitting never drifts. Sums are
bigint in PostgreSQL, currencies are never summed together, and the aggregation
runs in the database: the log is read once, without decoding it in Python.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal
from uuid import UUID

import psycopg
from psycopg import sql

GroupBy = Literal["month", "day", "content", "creator", "organization"]
GROUPS: tuple[str, ...] = ("month", "day", "content", "creator", "organization")
COLUMNS: tuple[str, ...] = (
    "period",
    "group",
    "currency",
    "purchases",
    "gross_cents",
    "refunds",
    "refunded_cents",
    "net_cents",
    "platform_fee_cents",
    "organization_fee_cents",
    "creator_payout_cents",
)


@dataclass(frozen=True)
class RevenueRow:
    period: str | None
    group: str | None
    currency: str
    purchases: int
    gross_cents: int
    refunds: int
    refunded_cents: int
    net_cents: int
    platform_fee_cents: int
    organization_fee_cents: int
    creator_payout_cents: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RevenueReport:
    rows: list[RevenueRow]
    totals: list[RevenueRow]

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": [r.as_dict() for r in self.rows],
            "totals": [r.as_dict() for r in self.totals],
        }


@dataclass(frozen=True)
class RevenueQuery:
    organization: UUID | None = None
    start: datetime | None = None  # inclusive, on occurred_at
    end: datetime | None = None  # exclusive, on occurred_at
    as_of: datetime | None = None  # recorded time
    group_by: GroupBy | None = None


def parse_moment(text: str, name: str) -> datetime:
    """A date (midnight UTC) or an RFC 3339 time with an offset."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name}: {text!r} is neither a date nor an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise ValueError(f"{name}: {text!r} needs an offset (e.g. Z or +01:00)")
    return moment


_ENTRIES = """
WITH entries AS (
    SELECT e.topic, convert_from(e.state, 'UTF8')::jsonb AS s
      FROM {events} e
     WHERE e.topic IN ('PurchaseCompleted', 'PurchaseRefunded')
       AND (%(as_of)s::timestamptz IS NULL OR e.recorded_at <= %(as_of)s::timestamptz)
), facts AS (
    SELECT (s->>'occurred_at')::timestamptz AS occurred_at,
           s->>'currency' AS currency,
           s->>'organization_id' AS organization_id,
           s->>'content_id' AS content_id,
           s->>'creator_id' AS creator_id,
           (topic = 'PurchaseCompleted')::int AS purchases,
           CASE WHEN topic = 'PurchaseCompleted' THEN (s->>'amount_paid_cents')::bigint ELSE 0 END
               AS gross,
           (topic = 'PurchaseRefunded')::int AS refunds,
           CASE WHEN topic = 'PurchaseRefunded' THEN (s->>'amount_cents')::bigint ELSE 0 END
               AS refunded,
           CASE WHEN topic = 'PurchaseCompleted' THEN (s->>'platform_fee_cents')::bigint
                ELSE -(s->>'platform_refund_cents')::bigint END AS platform,
           CASE WHEN topic = 'PurchaseCompleted' THEN (s->>'organization_fee_cents')::bigint
                ELSE -(s->>'organization_refund_cents')::bigint END AS organization,
           CASE WHEN topic = 'PurchaseCompleted' THEN (s->>'creator_payout_cents')::bigint
                ELSE -(s->>'creator_refund_cents')::bigint END AS creator
      FROM entries
), chosen AS (
    SELECT * FROM facts
     WHERE (%(organization)s::text IS NULL OR organization_id = %(organization)s::text)
       AND (%(start)s::timestamptz IS NULL OR occurred_at >= %(start)s::timestamptz)
       AND (%(end)s::timestamptz IS NULL OR occurred_at < %(end)s::timestamptz)
)
SELECT {period} AS period, {grp} AS grp, currency,
       sum(purchases)::bigint, sum(gross)::bigint, sum(refunds)::bigint, sum(refunded)::bigint,
       (sum(gross) - sum(refunded))::bigint,
       sum(platform)::bigint, sum(organization)::bigint, sum(creator)::bigint
  FROM chosen
 GROUP BY 1, 2, 3
 ORDER BY 1 NULLS FIRST, 2 NULLS FIRST, 3
"""

_PERIOD = {
    "month": "to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM')",
    "day": "to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
}
_GROUP = {"content": "content_id", "creator": "creator_id", "organization": "organization_id"}


def _run(
    conn: psycopg.Connection[Any], schema: str, query: RevenueQuery, group_by: str | None
) -> list[RevenueRow]:
    period = _PERIOD.get(group_by or "", "NULL::text")
    grp = _GROUP.get(group_by or "", "NULL::text")
    statement = sql.SQL(_ENTRIES).format(
        events=sql.Identifier(schema, "ledger_events"),
        period=sql.SQL(period),  # a fixed expression chosen above, not input
        grp=sql.SQL(grp),
    )
    params = {
        "as_of": query.as_of,
        "organization": str(query.organization) if query.organization else None,
        "start": query.start,
        "end": query.end,
    }
    return [
        RevenueRow(row[0], row[1], row[2], *(int(v) for v in row[3:]))
        for row in conn.execute(statement, params).fetchall()
    ]


def revenue(conn: psycopg.Connection[Any], schema: str, query: RevenueQuery) -> RevenueReport:
    """The report; rows and totals read in one snapshot."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        totals = _run(conn, schema, query, None)
        rows = totals if query.group_by is None else _run(conn, schema, query, query.group_by)
    return RevenueReport(rows=rows, totals=totals)
