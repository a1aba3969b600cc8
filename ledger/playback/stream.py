"""The playback store as a stream, for analytics (watch time): ``ledger playback events``.

The records still retained, in position order, from after a position. Positions are
drawn under the store's advisory lock and committed in that order (``store.py``), so a
reader that resumes after the last position it saw misses none that is retained.
Compaction removes records: a reader behind the horizon resumes at the oldest retained.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql

from ledger.domain import clock
from ledger.playback.partitions import PARENT
from ledger.reading.stream import Stop

BATCH = 1000
POLL_SECONDS = 0.5

_READ = (
    "SELECT position, occurred_at, recorded_at, user_id, content_id, organization_id, "
    "position_seconds, duration_seconds, completed, idempotency_key "
    "FROM {records} WHERE position > %s AND (%s::uuid IS NULL OR organization_id = %s::uuid) "
    "ORDER BY position LIMIT %s"
)


def as_dict(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "position": row["position"],
        "occurred_at": clock.canonical(row["occurred_at"]),
        "recorded_at": clock.canonical(row["recorded_at"]),
        "user_id": row["user_id"],
        "content_id": str(row["content_id"]),
        "organization_id": str(row["organization_id"]),
        "position_seconds": row["position_seconds"],
        "duration_seconds": row["duration_seconds"],
        "completed": row["completed"],
        "idempotency_key": row["idempotency_key"],
    }


def read(
    conn: psycopg.Connection[Any],
    schema: str,
    after: int,
    limit: int = BATCH,
    organization: str | None = None,
) -> list[dict[str, Any]]:
    """Up to ``limit`` records after position ``after``; with ``organization``, only its
    content's (the HTTP service's tokens bound to one organization)."""
    query = sql.SQL(_READ).format(records=sql.Identifier(schema, PARENT))
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(query, (after, organization, organization, limit))
        return [as_dict(row) for row in cur]


def follow(
    conn: psycopg.Connection[Any],
    schema: str,
    after: int,
    *,
    keep_following: bool,
    limit: int | None,
    stop: Stop,
) -> Iterator[list[dict[str, Any]]]:
    """Batches of records after ``after``; with ``keep_following``, waits (polling) for
    new ones until ``stop`` is set."""
    left = limit
    while not stop.is_set():
        size = BATCH if left is None else min(BATCH, left)
        batch = read(conn, schema, after, size)
        if batch:
            yield batch
            after = batch[-1]["position"]
            if left is not None:
                left -= len(batch)
                if left <= 0:
                    return
            continue
        if not keep_following:
            return
        stop.wait(POLL_SECONDS)
