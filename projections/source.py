"""Reads the log for projections: in large batches, decoding each event once.

Only the topics a projection maps are read. An event object is built without
the library's mapper (no transcoding, no validation): the projections read plain
fields only, so ``object.__new__`` plus the decoded dict is all they need.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import psycopg
from psycopg import sql

from ledger.domain.events import EVENTS_BY_TOPIC
from projections.registry import PROJECTED_TOPICS

BATCH = 20_000


def head(conn: psycopg.Connection[Any], schema: str) -> int:
    row = conn.execute(
        sql.SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(
            sql.Identifier(schema, "ledger_events")
        )
    ).fetchone()
    return int(row[0]) if row else 0


def decode(topic: str, state: bytes) -> Any:
    event = object.__new__(EVENTS_BY_TOPIC[topic])
    object.__setattr__(event, "__dict__", orjson.loads(state))
    return event


def events(
    conn: psycopg.Connection[Any], schema: str, after: int, upto: int
) -> Iterator[list[tuple[int, Any]]]:
    """Batches of (position, event) with ``after < position <= upto``, in log order.

    A server-side cursor streams the rows, so memory does not grow with the log.
    Must run inside a transaction (the cursor lives in it).
    """
    query = sql.SQL(
        "SELECT notification_id, topic, state FROM {} "
        "WHERE notification_id > %s AND notification_id <= %s AND topic = ANY(%s) "
        "ORDER BY notification_id"
    ).format(sql.Identifier(schema, "ledger_events"))
    with conn.cursor(name="ledger_projection_source") as cursor:
        cursor.itersize = BATCH
        cursor.execute(query, (after, upto, list(PROJECTED_TOPICS)))
        while rows := cursor.fetchmany(BATCH):
            yield [(position, decode(topic, bytes(state))) for position, topic, state in rows]
