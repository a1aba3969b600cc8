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
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from ledger.database import distribution
from ledger.domain.events import EVENTS_BY_TOPIC
from ledger.log import chains as log_chains
from ledger.log.shapes import check
from ledger.reading.cursor import Cursor
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


def sequential_on_citus(conn: psycopg.Connection[Any], live: str) -> None:
    """On a log placed on Citus, one connection per worker for the rest of the transaction:
    Citus refuses a schema's DDL (the shadow schema, the switch) after a read of the
    distributed log over parallel connections ("cannot run schema command because there
    was a parallel operation on a distributed table"). Nothing on one server."""
    if distribution.log_is_distributed(conn, live):
        conn.execute("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'")


def by_chain(conn: psycopg.Connection[Any], schema: str) -> bool:
    """Whether a reader that resumes must keep a position per chain: in the log's
    ``organization`` order (docs/stream.md, "Chains and orders"; always so on a log placed
    on Citus) ``notification_id`` is no order of commits across chains, so "everything
    after N" can pass an event that commits late. In the ``global`` order it is."""
    return log_chains.order(conn, schema) != "global"


@dataclass
class ChainReader:
    """Reads the log again and again, each time everything after what it has read,
    keeping one position per chain (``cursor``) so that it never passes an event that
    commits late, on one server or on Citus (each chain in one shard, gapless in commit
    order). Each read is one statement: one snapshot (on Citus one per worker, a chain's
    events all in one), its events in ``notification_id`` order, which within a snapshot
    keeps every event after the ones it was appended after (a user's registration before
    their purchase); across chains nothing more is needed, no rule spans organizations.
    ``head``: the highest ``notification_id`` read, what a report calls the position."""

    cursor: Cursor = field(default_factory=Cursor)
    head: int = 0

    def events(self, conn: psycopg.Connection[Any], schema: str) -> Iterator[list[tuple[int, Any]]]:
        """Batches of (notification id, event) of every chain after ``cursor``, advancing
        it as they are read. Must run inside a transaction (the cursor lives in it)."""
        log = sql.Identifier(schema, "ledger_events")
        params: tuple[Any, ...]
        if not self.cursor:  # the whole log: the index on notification_id, no join
            query = sql.SQL(
                "SELECT notification_id, topic, state, organization_id, position FROM {} "
                "WHERE topic = ANY(%s) ORDER BY notification_id"
            ).format(log)
            params = (list(PROJECTED_TOPICS),)
        else:  # each chain after its position, by the index on (organization_id, position)
            query = sql.SQL(
                "SELECT e.notification_id, e.topic, e.state, e.organization_id, e.position"
                " FROM {} h"
                " LEFT JOIN unnest(%b::uuid[], %b::bigint[]) AS c(organization_id, position)"
                " ON c.organization_id = h.organization_id"
                " JOIN {} e ON e.organization_id = h.organization_id"
                " AND e.position > coalesce(c.position, 0)"
                " WHERE e.topic = ANY(%s) ORDER BY e.notification_id"
            ).format(sql.Identifier(schema, "ledger_chain_heads"), log)
            chains = list(self.cursor)
            params = (chains, [self.cursor[c] for c in chains], list(PROJECTED_TOPICS))
        with conn.cursor(name="ledger_projection_chains") as cursor:
            cursor.itersize = BATCH
            cursor.execute(query, params)
            while rows := cursor.fetchmany(BATCH):
                reached: dict[UUID, int] = {}
                batch: list[tuple[int, Any]] = []
                for notification, topic, state, chain, position in rows:
                    batch.append((notification, decode(topic, bytes(state), notification)))
                    reached[UUID(str(chain))] = max(position, reached.get(UUID(str(chain)), 0))
                    self.head = max(self.head, notification)
                self.cursor = self.cursor.advanced(reached)
                yield batch


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
