"""The revenue report, computed from the event log (the source of truth).

Gross counts in the period a purchase completed (``PurchaseCompleted.occurred_at``); a
refund counts in the period it occurred (``PurchaseRefunded.occurred_at``), so a
closed month never changes because of a later refund. Each refund's parties' shares are
computed here from the cumulative amounts and its purchase's split, by the rule of
``ledger.domain.aggregates.refund_shares`` (the platform ceil(R*p/A), the creator
floor(R*c/A), the organization the rest), so splitting never drifts and no party ever
returns more than it was paid. The shares a refund event recorded are not used: events
recorded before that rule carry the earlier rule's shares, and one rule must hold for
every refund in the report. Currencies are never summed together, sums are bigint (an
overflow is an error, never a wrap).

It is one SQL statement over the two topics, read in one snapshot: each event's JSON is
parsed once (``json_to_record``), a refund finds its purchase's split with a window over
the purchase's events (no self-join: its misestimates cost disk sorts and JIT), rows and
per-currency totals come from one pass (``GROUPING SETS``), and nothing is decoded in
Python, so a million-event log takes under a second. No projection is involved, so there
is nothing to reconcile.

``source`` keeps the completions and refunds recorded by commands from one source (the
Stripe webhook, the CLI...): a refund still takes its split from its completion, whatever
recorded that. Events stored before provenance count as ``unknown``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal
from uuid import UUID

import psycopg
from psycopg import sql

from ledger.domain import clock
from ledger.domain.provenance import SOURCES, UNRECORDED

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
MONEY: tuple[str, ...] = COLUMNS[3:]


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
    as_of: datetime | None = None  # recorded time: later events are ignored
    group_by: GroupBy | None = None
    source: str | None = None  # only completions and refunds recorded from this source

    def __post_init__(self) -> None:
        if self.source is not None and self.source not in (*SOURCES, UNRECORDED):
            raise ValueError(
                f"--source: {self.source!r} is not one of {', '.join((*SOURCES, UNRECORDED))}"
            )
        for name, moment in (("--from", self.start), ("--to", self.end), ("--as-of", self.as_of)):
            if moment is not None and moment.tzinfo is None:
                raise ValueError(f"{name}: a time needs an offset")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError(
                f"--to ({self.end.isoformat()}) must be later than --from "
                f"({self.start.isoformat()}): --from is inclusive, --to exclusive"
            )
        if self.group_by is not None and self.group_by not in GROUPS:
            raise ValueError(f"--group-by: {self.group_by!r} is not one of {', '.join(GROUPS)}")


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$",
)


def parse_moment(text: str, name: str, *, exclusive: bool = False) -> datetime:
    """A date (midnight UTC that day) or an RFC 3339 time with an offset, inside the
    business window (no event lies outside it, and a time outside it could not be
    converted to UTC); an ``exclusive`` end may be the window's own end, 2100-01-01."""
    candidate = text.strip()
    moment = None
    try:
        if _DATE.match(candidate):
            day = date.fromisoformat(candidate)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        elif _RFC3339.match(candidate):
            moment = datetime.fromisoformat(candidate.upper().replace(" ", "T"))
    except ValueError:
        pass
    if moment is None:
        raise ValueError(
            f"{name}: {text!r} is neither a date (2026-01-31) nor an RFC 3339 time with an "
            "offset (2026-01-31T09:30:00Z, 2026-01-31T10:30:00+01:00)"
        )
    if not (clock.within_window(moment) or (exclusive and moment == clock.WINDOW_END)):
        raise ValueError(f"{name}: {text!r} lies outside the business window, {clock.WINDOW}")
    return moment


_REPORT = """
WITH facts AS (
    SELECT e.topic = 'PurchaseCompleted' AS completion, e.originator_id, f.*
      FROM {events} e
     CROSS JOIN LATERAL json_to_record(convert_from(e.state, 'UTF8')::json) AS f(
            occurred_at timestamptz, currency text, organization_id text, content_id text,
            creator_id text, amount_paid_cents bigint, platform_fee_cents bigint,
            organization_fee_cents bigint, creator_payout_cents bigint, amount_cents bigint,
            refunded_amount_cents bigint, platform_refund_cents bigint,
            organization_refund_cents bigint, creator_refund_cents bigint, source text)
     WHERE e.topic IN ('PurchaseCompleted', 'PurchaseRefunded')
       AND (%(as_of)s::timestamptz IS NULL OR e.recorded_at <= %(as_of)s::timestamptz)
), refunds AS (
    -- each refund's shares by the cumulative rule, from its purchase's split (taken from
    -- the completion, an event of the same aggregate): after R of A split (p, o, c) the
    -- platform has returned ceil(R*p/A), the creator floor(R*c/A), the organization the
    -- rest; a refund's share is the difference before and after it (R*p <= 2^62: bigint
    -- holds it). A refund without its completion in the log (which the ledger never
    -- writes) keeps the shares it recorded.
    SELECT *,
           coalesce((refunded_amount_cents * p + a - 1) / a - (before * p + a - 1) / a,
                    platform_refund_cents) AS platform_share,
           coalesce(refunded_amount_cents * c / a - before * c / a,
                    creator_refund_cents) AS creator_share
      FROM (SELECT *, refunded_amount_cents - amount_cents AS before,
                   max(amount_paid_cents) FILTER (WHERE completion) OVER purchase AS a,
                   max(platform_fee_cents) FILTER (WHERE completion) OVER purchase AS p,
                   max(creator_payout_cents) FILTER (WHERE completion) OVER purchase AS c
              FROM facts
            WINDOW purchase AS (PARTITION BY originator_id)) split
     WHERE NOT completion
), split AS (
    SELECT completion, occurred_at, currency, organization_id, content_id, creator_id, source,
           amount_paid_cents AS gross, 0::bigint AS refunded, platform_fee_cents AS platform,
           organization_fee_cents AS organization, creator_payout_cents AS creator
      FROM facts
     WHERE completion
    UNION ALL
    SELECT completion, occurred_at, currency, organization_id, content_id, creator_id, source,
           0, amount_cents, -platform_share, -(amount_cents - platform_share - creator_share),
           -creator_share
      FROM refunds
), chosen AS (
    SELECT {period} AS period, {grp} AS grp, split.*
      FROM split{names}
     WHERE (%(organization)s::text IS NULL OR organization_id = %(organization)s::text)
       AND (%(start)s::timestamptz IS NULL OR occurred_at >= %(start)s::timestamptz)
       AND (%(end)s::timestamptz IS NULL OR occurred_at < %(end)s::timestamptz)
       -- the version 1 -> 2 upcaster in SQL: an event stored before provenance is "unknown"
       AND (%(source)s::text IS NULL OR coalesce(source, 'unknown') = %(source)s::text)
)
SELECT GROUPING(period, grp) <> 0 AS is_total, period, grp, currency,
       count(*) FILTER (WHERE completion),
       sum(gross)::bigint,
       count(*) FILTER (WHERE NOT completion),
       sum(refunded)::bigint,
       (sum(gross) - sum(refunded))::bigint,
       sum(platform)::bigint,
       sum(organization)::bigint,
       sum(creator)::bigint
  FROM chosen
 GROUP BY GROUPING SETS ((period, grp, currency), (currency))
 ORDER BY is_total, period, grp, currency
"""

# fixed expressions chosen by the --group-by value, never built from input
_PERIOD = {
    "month": "to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM')",
    "day": "to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
}
_GROUP = {"content": "content_id", "creator": "creator_id", "organization": "organization_id"}


def revenue(conn: psycopg.Connection[Any], schema: str, query: RevenueQuery) -> RevenueReport:
    """The report for ``query``: rows per period or group and currency, totals per currency.

    Without ``group_by`` the rows are the totals (one per currency). Periods or groups
    without any completion or refund have no row.
    """
    grp: sql.Composable = sql.SQL(_GROUP.get(query.group_by or "", "NULL::text"))
    names: sql.Composable = sql.SQL("")
    if query.group_by == "creator":
        # the log names creators by subject (docs/privacy.md): the report shows the id,
        # and an erased creator's subject, which names no one. A join, not a correlated
        # subquery: on a log placed on Citus that subquery gave no rows at all
        grp = sql.SQL("coalesce(s.user_id, split.creator_id)")
        names = sql.SQL(" LEFT JOIN {} s ON s.subject = split.creator_id").format(
            sql.Identifier(schema, "ledger_subjects")
        )
    statement = sql.SQL(_REPORT).format(
        events=sql.Identifier(schema, "ledger_events"),
        period=sql.SQL(_PERIOD.get(query.group_by or "", "NULL::text")),
        grp=grp,
        names=names,
    )
    params = {
        "as_of": query.as_of,
        "organization": str(query.organization) if query.organization else None,
        "start": query.start,
        "end": query.end,
        "source": query.source,
    }
    rows: list[RevenueRow] = []
    totals: list[RevenueRow] = []
    for is_total, *values in conn.execute(statement, params).fetchall():
        period, group, currency, *amounts = values
        row = RevenueRow(period, group, currency, *(int(v) for v in amounts))
        (totals if is_total else rows).append(row)
    return RevenueReport(rows=totals if query.group_by is None else rows, totals=totals)


REVENUE_TOPICS = ("PurchaseCompleted", "PurchaseRefunded")


def checked_revenue(
    conn: psycopg.Connection[Any], schema: str, query: RevenueQuery
) -> RevenueReport:
    """The report; an event it reads that does not decode (stored behind the insert
    trigger's back) is named by position and topic instead of failing deep in SQL."""
    from ledger.upkeep.source import raise_if_undecodable

    try:
        report = revenue(conn, schema, query)
    except (psycopg.DataError, TypeError, ValueError):
        raise_if_undecodable(conn, schema, REVENUE_TOPICS)
        raise
    if any(row.currency is None for row in report.totals):
        raise_if_undecodable(conn, schema, REVENUE_TOPICS)
    return report
