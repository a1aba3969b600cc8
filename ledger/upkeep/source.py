"""Reads the log for projections: in large batches, decoding each event once.

Only the topics a projection maps are read. An event object is built without
the library's mapper (no transcoding): the projections read plain fields only, so
``object.__new__`` plus the decoded dict is all they need. Each state is checked
against its class's shape first (``ledger.log.shapes``): an event that does not
decode stops the reader with one line naming its position and topic
(``UndecodableEvent``), never a traceback from deep inside a projection.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg import sql

from ledger.domain.events import EVENTS_BY_TOPIC
from ledger.log.shapes import check
from projections.registry import PROJECTED_TOPICS

BATCH = 20_000


def head(conn: psycopg.Connection[Any], schema: str) -> int:
    row = conn.execute(
        sql.SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(
            sql.Identifier(schema, "ledger_events")
        )
    ).fetchone()
    return int(row[0]) if row else 0


def decode(topic: str, state: bytes, position: int = 0) -> Any:
    decoded = check(position, topic, state)
    event = object.__new__(EVENTS_BY_TOPIC[topic])
    object.__setattr__(event, "__dict__", decoded)
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
            yield [
                (position, decode(topic, bytes(state), position)) for position, topic, state in rows
            ]


def count(conn: psycopg.Connection[Any], schema: str, after: int, upto: int) -> int:
    """How many events ``events(conn, schema, after, upto)`` yields (for progress)."""
    row = conn.execute(
        sql.SQL(
            "SELECT count(*) FROM {} WHERE notification_id > %s AND notification_id <= %s "
            "AND topic = ANY(%s)"
        ).format(sql.Identifier(schema, "ledger_events")),
        (after, upto, list(PROJECTED_TOPICS)),
    ).fetchone()
    return int(row[0]) if row else 0


def raise_if_undecodable(conn: psycopg.Connection[Any], schema: str, topics: Sequence[str]) -> None:
    """``UndecodableEvent`` for the first stored event of ``topics`` that does not decode;
    nothing if they all do. A reader that failed on the log calls it to name the event."""
    query = sql.SQL(
        "SELECT notification_id, topic, state FROM {} WHERE topic = ANY(%s) "
        "ORDER BY notification_id"
    ).format(sql.Identifier(schema, "ledger_events"))
    with conn.transaction(), conn.cursor(name="ledger_decode_check") as cursor:
        cursor.itersize = BATCH
        cursor.execute(query, (list(topics),))
        for position, topic, state in cursor:
            check(position, topic, bytes(state))
