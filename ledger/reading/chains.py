"""The whole platform's log read chain by chain, without a total order (docs/stream.md,
"Reading every chain").

In the log's ``organization`` order no lock orders the appends of different organizations:
``notification_id`` is an id, and a reader of it can pass an event that commits late. What
is ordered is each chain: its positions are drawn under its lock (its row of
``ledger_chain_heads``) and held to the commit, gapless from 1. So in any snapshot a chain's
visible positions are exactly 1..m, and a reader that keeps one position per chain (a
``Cursor``) and reads each chain after its own position never skips an event, whatever the
log's order, on one server or split over Citus workers (a chain lives in one shard, and one
shard's read is one snapshot). No order across chains is needed: no rule spans two.

One window is two statements, each an index probe per chain of the ``(organization_id,
position)`` index: which chains have an event after the cursor (their next position
exists: positions are gapless), then up to ``size`` events of those, split evenly between
them (each at least one), ordered by how far past the cursor they lie, so a chain with a
long backlog never holds up the others. Chains are found in ``ledger_chain_heads`` (one row
per chain, made by its first append), so a reader need not know which organizations exist.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from ledger.config import Settings
from ledger.database.connections import connect
from ledger.log import chains as log_chains
from ledger.log.shapes import UndecodableEvent
from ledger.reading.cursor import Cursor
from ledger.reading.decoding import decode
from ledger.reading.stream import (
    ANY,
    Backoff,
    EventRecord,
    ProvenanceFilter,
    Stop,
    check_size,
    check_topics,
    require_tables,
)


@dataclass(frozen=True)
class ChainBatch:
    """The records of one window, and the cursor read up to: every chain's position,
    records of topics left out included, so storing it saves reading them again."""

    records: tuple[EventRecord, ...]
    cursor: Cursor


def unread(
    conn: psycopg.Connection[Any], schema: str, cursor: Cursor
) -> list[tuple[UUID, int, int]]:
    """The chains with an event after ``cursor``: (chain, its position in the cursor, the
    ``notification_id`` of its next event)."""
    chains = list(cursor)
    rows = conn.execute(
        _unread_sql(schema), (chains, [cursor[c] for c in chains]), prepare=True
    ).fetchall()
    return [(UUID(str(r[0])), int(r[1]), int(r[2])) for r in rows]


def read_chains_window(
    conn: psycopg.Connection[Any],
    schema: str,
    cursor: Cursor,
    *,
    topics: Sequence[str] = (),
    size: int = 1000,
    provenance: ProvenanceFilter = ANY,
) -> ChainBatch | None:
    """The next window after ``cursor``: at most about ``size`` events (at least one per
    chain with news), each chain's a run of its positions right after the cursor's;
    ``None`` when no chain has anything after it. An event that does not decode ends the
    window before it (and stops the reader if it comes first), as ``read_window`` does."""
    waiting = unread(conn, schema, cursor)
    if not waiting:
        return None
    width = max(1, size // len(waiting))
    params = (
        not topics,
        list(topics),
        [chain for chain, _, _ in waiting],
        [position for _, position, _ in waiting],
        width,
    )
    rows = conn.execute(_window_sql(schema), params, prepare=True).fetchall()
    records: list[EventRecord] = []
    reached: dict[UUID, int] = {}
    for row in rows:
        notification, _, topic, _, _, state, _, org, at = row
        chain = UUID(str(org))
        if state is not None:
            try:
                data = decode(notification, topic, bytes(state))
            except UndecodableEvent:
                if not reached:
                    raise
                break  # the window ends before it: the next one starts with it, and stops
            if provenance.matches(data):
                records.append(EventRecord.of(row, data))
        reached[chain] = at
    if not reached:
        return None
    return ChainBatch(tuple(records), cursor.advanced(reached))


def read_chains(
    settings: Settings,
    *,
    after: Cursor | None = None,
    topics: Sequence[str] = (),
    follow: bool = False,
    size: int = 1000,
    stop: Stop | None = None,
    backoff: Backoff | None = None,
    provenance: ProvenanceFilter = ANY,
) -> Generator[ChainBatch, None, None]:
    """Windows of every chain after ``after`` (default: nothing read), each chain in its
    position order: ``read_batches`` for a log without a total order. Without ``follow``
    it ends once every chain is caught up; with it, it polls per ``backoff`` until
    ``stop`` is set. A caller storing its own checkpoint stores ``str(batch.cursor)``."""
    wanted = check_topics(topics)
    check_size(size)
    cursor = after if after is not None else Cursor()
    stop = stop or threading.Event()
    pause = backoff or Backoff()
    with connect(settings, autocommit=True) as conn:
        require_tables(conn, settings.schema, "ledger_events", "ledger_chain_heads")
        delays = pause.delays()
        while not stop.is_set():
            batch = read_chains_window(
                conn, settings.schema, cursor, topics=wanted, size=size, provenance=provenance
            )
            if batch is None:
                if not follow:
                    return
                stop.wait(next(delays))
                continue
            delays = pause.delays()
            cursor = batch.cursor
            yield batch


def starting_point(settings: Settings, after: int | None) -> int | Cursor:
    """Where ``ledger events`` starts without a cursor: nothing given, the log's own
    order decides (the start of ``notification_id`` in the global order, of every chain
    in the organization order); a position of ``notification_id`` past 0 is refused in
    the organization order, where it is no order across chains and a reader of it could
    skip an event that commits late."""
    with connect(settings, autocommit=True) as conn:
        require_tables(conn, settings.schema, "ledger_events")
        order = log_chains.order(conn, settings.schema)
    if order == "global":
        return after or 0
    if after:
        raise ValueError(
            f"after: the log is in the organization order, where position {after} (a "
            "notification_id) is no order across chains: give a cursor "
            "(ORGANIZATION:POSITION joined by commas), or read one chain with --chain"
        )
    return Cursor()


@lru_cache(maxsize=16)
def _unread_sql(schema: str) -> sql.Composed:
    return sql.SQL(
        "SELECT h.organization_id, coalesce(c.position, 0), e.notification_id FROM {} h"
        " LEFT JOIN unnest(%b::uuid[], %b::bigint[]) AS c(organization_id, position)"
        " ON c.organization_id = h.organization_id"
        " JOIN {} e ON e.organization_id = h.organization_id"
        " AND e.position = coalesce(c.position, 0) + 1"
    ).format(sql.Identifier(schema, "ledger_chain_heads"), sql.Identifier(schema, "ledger_events"))


@lru_cache(maxsize=16)
def _window_sql(schema: str) -> sql.Composed:
    """Each chain's next positions, on the index of (organization_id, position); a range
    of positions, not a LIMIT per chain, since a chain's positions are gapless."""
    return sql.SQL(
        "SELECT e.notification_id, e.recorded_at, e.topic, e.originator_id,"
        " e.originator_version, CASE WHEN %s OR e.topic = ANY(%s) THEN e.state END, e.hash,"
        " e.organization_id, e.position"
        " FROM unnest(%b::uuid[], %b::bigint[]) AS c(organization_id, position)"
        " JOIN {} e ON e.organization_id = c.organization_id"
        " AND e.position > c.position AND e.position <= c.position + %s"
        " ORDER BY e.position - c.position, e.organization_id"
    ).format(sql.Identifier(schema, "ledger_events"))
