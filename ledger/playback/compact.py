"""Retention of the playback store: compaction, and the store's status.

``compact(before=T)`` folds every heartbeat dated before T into the base (at most one row
per (user, content): the newest position and time, ``completed``, the first heartbeat's
time, each with its position so that rebuilds order them exactly as the records were
ordered) and drops the emptied partitions whole. T is rounded down to the start of its
UTC day, so only whole partitions go: the work grows with what is removed (one
``INSERT ... SELECT ... GROUP BY`` over the dropped partitions, in the server, in bounded
memory), not with the store. It all happens in one transaction: a compaction killed at
any moment leaves the store as it was, and rebuilds and verify exact.

The retention (``LEDGER_PLAYBACK_RETENTION``, default 30 days, docs/operations.md) is what
a compaction without ``--before`` keeps: enough for the monthly watch-time reports and for
a consumer of ``ledger playback events`` that stopped for a few weeks to catch up.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from ledger.domain import clock
from ledger.errors import ConfigurationError
from ledger.playback import partitions

DEFAULT_RETENTION = "30d"
_RETENTION = re.compile(r"\A([0-9]{1,5})(d|h)\Z")


def retention(text: str | None = None) -> timedelta:
    """``LEDGER_PLAYBACK_RETENTION``: whole days (``30d``) or hours (``720h``), at least 1h."""
    value = text if text is not None else os.environ.get("LEDGER_PLAYBACK_RETENTION")
    value = value or DEFAULT_RETENTION
    match = _RETENTION.match(value)
    if match is None or int(match.group(1)) == 0:
        raise ConfigurationError(
            f"LEDGER_PLAYBACK_RETENTION {value!r}: give whole days or hours above 0 (30d, 720h)"
        )
    number = int(match.group(1))
    return timedelta(days=number) if match.group(2) == "d" else timedelta(hours=number)


@dataclass(frozen=True)
class Compaction:
    before: datetime  # the horizon: everything dated before it is folded
    records: int  # heartbeats folded into the base and dropped
    partitions: int  # partitions dropped whole
    pairs: int  # (user, content) base rows written

    def as_dict(self) -> dict[str, Any]:
        return {
            "before": clock.canonical(self.before),
            "records": self.records,
            "partitions": self.partitions,
            "pairs": self.pairs,
        }


_FOLD = """
    WITH r AS (
        SELECT * FROM {records} WHERE occurred_at < %(before)s
    ),
    pair AS (
        SELECT user_id, content_id, bool_or(completed) AS completed,
               (array_agg(organization_id ORDER BY position DESC))[1] AS organization_id,
               (array_agg(occurred_at ORDER BY position))[1] AS first_at,
               min(position) AS first_position
        FROM r GROUP BY user_id, content_id
    ),
    shown AS (
        SELECT DISTINCT ON (user_id, content_id) user_id, content_id, position_seconds,
               duration_seconds, occurred_at, position
        FROM r ORDER BY user_id, content_id, occurred_at DESC, position DESC
    )
    INSERT INTO {base} AS b (user_id, content_id, organization_id, position_seconds,
        duration_seconds, completed, occurred_at, shown_position, first_at, first_position,
        horizon)
    SELECT s.user_id, s.content_id, p.organization_id, s.position_seconds,
           s.duration_seconds, p.completed, s.occurred_at, s.position, p.first_at,
           p.first_position, %(before)s
    FROM shown s JOIN pair p USING (user_id, content_id)
    ON CONFLICT (organization_id, user_id, content_id) DO UPDATE SET
        position_seconds = CASE WHEN (EXCLUDED.occurred_at, EXCLUDED.shown_position)
            > (b.occurred_at, b.shown_position) THEN EXCLUDED.position_seconds
            ELSE b.position_seconds END,
        duration_seconds = CASE WHEN (EXCLUDED.occurred_at, EXCLUDED.shown_position)
            > (b.occurred_at, b.shown_position) THEN EXCLUDED.duration_seconds
            ELSE b.duration_seconds END,
        shown_position = CASE WHEN (EXCLUDED.occurred_at, EXCLUDED.shown_position)
            > (b.occurred_at, b.shown_position) THEN EXCLUDED.shown_position
            ELSE b.shown_position END,
        occurred_at = GREATEST(b.occurred_at, EXCLUDED.occurred_at),
        completed = b.completed OR EXCLUDED.completed,
        first_at = CASE WHEN EXCLUDED.first_position < b.first_position
            THEN EXCLUDED.first_at ELSE b.first_at END,
        first_position = LEAST(b.first_position, EXCLUDED.first_position),
        horizon = GREATEST(b.horizon, EXCLUDED.horizon)
"""


_OWNERS = """
    INSERT INTO {owners} (idempotency_key, user_id)
    SELECT idempotency_key, user_id FROM {records}
    WHERE occurred_at < %(before)s AND idempotency_key IS NOT NULL
    ON CONFLICT (idempotency_key) DO NOTHING
"""


def horizon_of(moment: datetime) -> datetime:
    """The start of the UTC day of ``moment``: compaction takes whole partitions."""
    day = moment.astimezone(UTC).date()
    return partitions.bounds(day)[0]


def compact(conn: psycopg.Connection[Any], schema: str, before: datetime) -> Compaction:
    """Folds and drops, in the caller's transaction (commit it: all or nothing)."""
    horizon = horizon_of(before)
    doomed = {d: n for d, n in partitions.existing(conn, schema).items() if d < horizon.date()}
    for name in sorted(doomed.values()):
        # writers of a dropped day wait, then find no partition and decide again
        conn.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(schema, name))
        )
    records = 0
    for name in doomed.values():
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))
        ).fetchone()
        records += int(_first(row))
    pairs = 0
    if records:
        # whose key each dropped heartbeat used: the key outlives its heartbeat, and an
        # erasure must still find it (migration 0016, docs/privacy.md)
        conn.execute(
            sql.SQL(_OWNERS).format(
                records=sql.Identifier(schema, partitions.PARENT),
                owners=sql.Identifier(schema, "playback_compacted_keys"),
            ),
            {"before": horizon},
        )
        # only the doomed partitions are read: the parent with a bound on the partition key
        cursor = conn.execute(
            sql.SQL(_FOLD).format(
                records=sql.Identifier(schema, partitions.PARENT),
                base=sql.Identifier(schema, "playback_base"),
            ),
            {"before": horizon},
        )
        pairs = cursor.rowcount
    for name in sorted(doomed.values()):
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, name)))
    # statement_timestamp(), not clock_timestamp(): Citus refuses a volatile function in an
    # UPDATE of a reference table (playback_state on the distributed layout)
    conn.execute(
        sql.SQL(
            "UPDATE {} SET compacted_before = GREATEST(compacted_before, %s), "
            "compacted_at = statement_timestamp()"
        ).format(sql.Identifier(schema, "playback_state")),
        (horizon,),
    )
    return Compaction(horizon, records, len(doomed), pairs)


def _first(row: Any) -> Any:
    if row is None:
        return None
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


def status(conn: psycopg.Connection[Any], schema: str) -> dict[str, Any]:
    """What ``ledger playback status`` reports."""

    def one(query: str) -> Any:
        return _first(
            conn.execute(
                sql.SQL(query).format(
                    records=sql.Identifier(schema, partitions.PARENT),
                    base=sql.Identifier(schema, "playback_base"),
                    keys=sql.Identifier(schema, "playback_keys"),
                    state=sql.Identifier(schema, "playback_state"),
                )
            ).fetchone()
        )

    def moment(value: Any) -> str | None:
        return clock.canonical(value) if value is not None else None

    kept = retention()
    return {
        "heartbeats": int(one("SELECT count(*) FROM {records}")),
        "partitions": len(partitions.existing(conn, schema)),
        "oldest": moment(one("SELECT min(occurred_at) FROM {records}")),
        "newest": moment(one("SELECT max(occurred_at) FROM {records}")),
        "last_position": int(one("SELECT coalesce(max(position), 0) FROM {records}")),
        "base_rows": int(one("SELECT count(*) FROM {base}")),
        "idempotency_keys": int(one("SELECT count(*) FROM {keys}")),
        "compacted_before": moment(one("SELECT compacted_before FROM {state}")),
        "compacted_at": moment(one("SELECT compacted_at FROM {state}")),
        "retention_seconds": int(kept.total_seconds()),
    }
