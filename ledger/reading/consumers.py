"""Consumers of the log with a durable checkpoint in the ledger's own database.

A consumer that writes into the ledger's database (a table of its own) is fed the log
a window at a time, each window in one transaction that also moves its checkpoint
(``ledger_consumer_checkpoints``): its writes for a window and the position after it
commit together or not at all. A crash, a failing handler or a lost connection leaves
it where it was; the next run starts from its checkpoint, so each event's effects are
made exactly once. The checkpoint's row is locked for the transaction, so a second
copy of the same consumer waits and then goes on from where the first left off.

Its checkpoint is a map, one position per chain (migration 0021,
``ledger_consumer_chains``), so it never skips an event whatever the log's order
(``ledger.reading.chains``). In the log's ``global`` order (a single server) a window is
still the next positions of ``notification_id`` after the consumer's place in that order,
which the map gives exactly (the lowest id of the events it has not read, less one), so
the consumer handles events in the order the library's readers do; in the
``organization`` order a window is each chain's next positions. The map moves in both, so
the log may switch order under a consumer without it skipping or repeating an event. Its
row of ``ledger_consumer_checkpoints`` stays its lock, and holds its place in the global
order (``consumer_position``).

A consumer that writes elsewhere reads ``ledger.read_batches`` (or ``ledger.read_events``
with a ``Cursor``) and stores each batch's position with its own writes instead
(docs/stream.md).

Nothing else runs consumers: ``ledger projections rebuild`` replays the log into the
projected tables only, so a consumer's side effects happen once, at its checkpoint.
"""

from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar
from uuid import UUID

import psycopg
from psycopg import sql

from ledger.config import Settings
from ledger.database.connections import connect
from ledger.log import chains as log_chains
from ledger.reading.chains import read_chains_window, unread
from ledger.reading.cursor import Cursor
from ledger.reading.stream import (
    Backoff,
    EventRecord,
    check_size,
    check_topics,
    read_window,
    require_tables,
)

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}")


class Consumer(ABC):
    """A named reader of the log whose effects go into the ledger's database.

    ``handle`` gets each record of ``topics`` (all topics if empty) once, each chain's in
    its position order (in the log's global order: in ``notification_id`` order), with the
    connection of the transaction that will also move the checkpoint:
    write with it, and do nothing that outlives a rollback. ``prepare`` runs once per
    ``run_consumer``, in its own transaction (create the consumer's tables there).
    """

    name: ClassVar[str]
    topics: ClassVar[Sequence[str]] = ()

    def prepare(self, conn: psycopg.Connection[Any]) -> None:  # noqa: B027 (optional hook)
        """Nothing by default."""

    @abstractmethod
    def handle(self, conn: psycopg.Connection[Any], record: EventRecord) -> None: ...


@dataclass(frozen=True)
class ConsumerRun:
    """What a run did: ``handled`` records, and the checkpoint it left: ``cursor`` (one
    position per chain) and ``position``, its place in the log's global order."""

    name: str
    handled: int
    position: int
    cursor: Cursor = field(default_factory=Cursor)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"name: {name!r} is not a consumer name (1-100 of a-z, 0-9, '_', '.', '-', "
            "starting with a letter or digit)"
        )
    return name


def run_consumer(
    settings: Settings,
    consumer: Consumer,
    *,
    follow: bool = False,
    stop: threading.Event | None = None,
    size: int = 500,
    backoff: Backoff | None = None,
    start_after: int = 0,
) -> ConsumerRun:
    """Feeds ``consumer`` every event after its checkpoint, one window of at most
    ``size`` positions per transaction; returns when caught up (or, with ``follow``,
    when ``stop`` is set). A consumer met for the first time starts after
    ``start_after`` (0: the whole log; a ``notification_id`` of the global order). An
    exception from ``handle`` rolls its window back, checkpoint included, and is raised.
    """
    name = check_name(consumer.name)
    topics = check_topics(consumer.topics)
    check_size(size)
    if start_after < 0:
        raise ValueError(f"start_after: a position is 0 or more, not {start_after}")
    stop = stop or threading.Event()
    pause = backoff or Backoff()
    handled = 0
    schema = settings.schema
    with connect(settings) as conn:
        require_tables(
            conn, schema, "ledger_events", "ledger_consumer_checkpoints", "ledger_consumer_chains"
        )
        conn.commit()
        with conn.transaction():
            consumer.prepare(conn)
        delays = pause.delays()
        while True:
            with conn.transaction():
                position, cursor = _claim(conn, schema, name, start_after)
                records, moved, reached = _window(conn, schema, position, cursor, topics, size)
                for record in records:
                    consumer.handle(conn, record)
                progressed = bool(moved) or reached > position
                if progressed:
                    cursor = cursor.advanced(moved)
                    position = max(position, reached)
                    _advance(conn, schema, name, position, moved)
                    handled += len(records)
            if stop.is_set():
                break
            if not progressed:
                if not follow:
                    break
                stop.wait(next(delays))
            else:
                delays = pause.delays()
    return ConsumerRun(name, handled, position, cursor)


def _window(
    conn: psycopg.Connection[Any],
    schema: str,
    position: int,
    cursor: Cursor,
    topics: Sequence[str],
    size: int,
) -> tuple[Sequence[EventRecord], dict[UUID, int], int]:
    """The next window after ``cursor``: its records, each chain's position reached, and
    the ``notification_id`` read up to in the global order (0 in the organization order).
    ``position``: the consumer's place in the global order, which every event at or below
    it had been read by (set only in that order, where ids are drawn in commit order)."""
    if log_chains.order(conn, schema) == "organization":
        batch = read_chains_window(conn, schema, cursor, topics=topics, size=size)
        if batch is None:
            return (), {}, 0
        return batch.records, {c: batch.cursor[c] for c in batch.cursor}, 0
    waiting = unread(conn, schema, cursor)
    if not waiting:
        return (), {}, 0
    # every event below the lowest unread one is read: in the global order ids are in
    # commit order, so the window after it is exact, as it always was
    after = max(position, min(notification for _, _, notification in waiting) - 1)
    window = read_window(conn, schema, after, topics=topics, size=size)
    if window is None:
        return (), {}, 0
    # after a switch from the organization order, a chain may have been read past ``after``
    fresh = [r for r in window.records if r.chain_position > cursor[r.organization_id]]
    moved = {c: p for c, p in window.chains.items() if p > cursor[c]}
    return fresh, moved, window.position


def consumer_position(settings: Settings, name: str) -> int | None:
    """Where the consumer ``name`` stands in the log's global order (``notification_id``),
    or ``None`` if it never ran."""
    check_name(name)
    with connect(settings, autocommit=True) as conn:
        require_tables(conn, settings.schema, "ledger_consumer_checkpoints")
        row = conn.execute(_select_sql(settings.schema), (name,)).fetchone()
    return None if row is None else int(row[0])


def consumer_cursor(settings: Settings, name: str) -> Cursor | None:
    """Where the consumer ``name`` stands in each chain, or ``None`` if it never ran."""
    check_name(name)
    with connect(settings, autocommit=True) as conn:
        require_tables(
            conn, settings.schema, "ledger_consumer_checkpoints", "ledger_consumer_chains"
        )
        if conn.execute(_select_sql(settings.schema), (name,)).fetchone() is None:
            return None
        return _map(conn, settings.schema, name)


def _claim(
    conn: psycopg.Connection[Any], schema: str, name: str, start_after: int
) -> tuple[int, Cursor]:
    """The checkpoint, its row locked until the transaction ends (created if new, its map
    then that of ``start_after``: each chain's last position at or below it)."""
    if conn.execute(_create_sql(schema), (name, start_after)).fetchone() is not None:
        conn.execute(_start_sql(schema), (name, start_after))
    row = conn.execute(_lock_sql(schema), (name,)).fetchone()
    assert row is not None
    return int(row[0]), _map(conn, schema, name)


def _map(conn: psycopg.Connection[Any], schema: str, name: str) -> Cursor:
    rows = conn.execute(_map_sql(schema), (name,)).fetchall()
    return Cursor({UUID(str(chain)): int(position) for chain, position in rows})


def _advance(
    conn: psycopg.Connection[Any], schema: str, name: str, position: int, moved: dict[UUID, int]
) -> None:
    conn.execute(_advance_sql(schema), (position, name))
    chains = list(moved)
    conn.execute(_move_sql(schema), (name, chains, [moved[c] for c in chains]))


def _table(schema: str) -> sql.Identifier:
    return sql.Identifier(schema, "ledger_consumer_checkpoints")


def _chains(schema: str) -> sql.Identifier:
    return sql.Identifier(schema, "ledger_consumer_chains")


@lru_cache(maxsize=16)
def _create_sql(schema: str) -> sql.Composed:
    return sql.SQL(
        "INSERT INTO {} (name, position) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING"
        " RETURNING name"
    ).format(_table(schema))


@lru_cache(maxsize=16)
def _start_sql(schema: str) -> sql.Composed:
    """A new consumer's map from a global position (as migration 0021 carried the old
    checkpoints over)."""
    return sql.SQL(
        "INSERT INTO {} (name, organization_id, position)"
        " SELECT %s, organization_id, max(position) FROM {}"
        " WHERE notification_id <= %s GROUP BY organization_id"
    ).format(_chains(schema), sql.Identifier(schema, "ledger_events"))


@lru_cache(maxsize=16)
def _lock_sql(schema: str) -> sql.Composed:
    return sql.SQL("SELECT position FROM {} WHERE name = %s FOR UPDATE").format(_table(schema))


@lru_cache(maxsize=16)
def _select_sql(schema: str) -> sql.Composed:
    return sql.SQL("SELECT position FROM {} WHERE name = %s").format(_table(schema))


@lru_cache(maxsize=16)
def _map_sql(schema: str) -> sql.Composed:
    return sql.SQL("SELECT organization_id, position FROM {} WHERE name = %s").format(
        _chains(schema)
    )


@lru_cache(maxsize=16)
def _advance_sql(schema: str) -> sql.Composed:
    return sql.SQL(
        "UPDATE {} SET position = %s, updated_at = clock_timestamp() WHERE name = %s"
    ).format(_table(schema))


@lru_cache(maxsize=16)
def _move_sql(schema: str) -> sql.Composed:
    return sql.SQL(
        "INSERT INTO {} (name, organization_id, position)"
        " SELECT %s, c.organization_id, c.position"
        " FROM unnest(%b::uuid[], %b::bigint[]) AS c(organization_id, position)"
        " ON CONFLICT (name, organization_id) DO UPDATE"
        " SET position = EXCLUDED.position, updated_at = clock_timestamp()"
    ).format(_chains(schema))
