"""Consumers of the log with a durable checkpoint in the ledger's own database.

A consumer that writes into the ledger's database (a table of its own) is fed the log
a window at a time, each window in one transaction that also moves its checkpoint
(``ledger_consumer_checkpoints``): its writes for a window and the position after it
commit together or not at all. A crash, a failing handler or a lost connection leaves
it where it was; the next run starts from its checkpoint, so each event's effects are
made exactly once. The checkpoint's row is locked for the transaction, so a second
copy of the same consumer waits and then goes on from where the first left off.

A consumer that writes elsewhere reads ``ledger.read_batches`` and stores each
``batch.position`` with its own writes instead (docs/stream.md).

Nothing else runs consumers: ``ledger projections rebuild`` replays the log into the
projected tables only, so a consumer's side effects happen once, at its checkpoint.
"""

from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import psycopg
from psycopg import sql

from ledger.config import Settings
from ledger.database.connections import connect
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

    ``handle`` gets each record of ``topics`` (all topics if empty) once, in position
    order, with the connection of the transaction that will also move the checkpoint:
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
    """What a run did: ``handled`` records, and the checkpoint it left."""

    name: str
    handled: int
    position: int


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
    ``start_after`` (0: the whole log). An exception from ``handle`` rolls its window
    back, checkpoint included, and is raised.
    """
    name = check_name(consumer.name)
    topics = check_topics(consumer.topics)
    check_size(size)
    if start_after < 0:
        raise ValueError(f"start_after: a position is 0 or more, not {start_after}")
    stop = stop or threading.Event()
    pause = backoff or Backoff()
    handled = 0
    with connect(settings) as conn:
        require_tables(conn, settings.schema, "ledger_events", "ledger_consumer_checkpoints")
        conn.commit()
        with conn.transaction():
            consumer.prepare(conn)
        delays = pause.delays()
        while True:
            with conn.transaction():
                position = _claim(conn, settings.schema, name, start_after)
                batch = read_window(conn, settings.schema, position, topics=topics, size=size)
                if batch is not None:
                    for record in batch.records:
                        consumer.handle(conn, record)
                    _advance(conn, settings.schema, name, batch.position)
                    handled += len(batch.records)
                    position = batch.position
            if stop.is_set():
                break
            if batch is None:
                if not follow:
                    break
                stop.wait(next(delays))
            else:
                delays = pause.delays()
    return ConsumerRun(name, handled, position)


def consumer_position(settings: Settings, name: str) -> int | None:
    """Where the consumer ``name`` stands, or ``None`` if it never ran."""
    check_name(name)
    with connect(settings, autocommit=True) as conn:
        require_tables(conn, settings.schema, "ledger_consumer_checkpoints")
        row = conn.execute(_select_sql(settings.schema), (name,)).fetchone()
    return None if row is None else int(row[0])


def _claim(conn: psycopg.Connection[Any], schema: str, name: str, start_after: int) -> int:
    """The checkpoint, its row locked until the transaction ends (created if new)."""
    conn.execute(_create_sql(schema), (name, start_after))
    row = conn.execute(_lock_sql(schema), (name,)).fetchone()
    assert row is not None
    return int(row[0])


def _advance(conn: psycopg.Connection[Any], schema: str, name: str, position: int) -> None:
    conn.execute(_advance_sql(schema), (position, name))


def _table(schema: str) -> sql.Identifier:
    return sql.Identifier(schema, "ledger_consumer_checkpoints")


@lru_cache(maxsize=16)
def _create_sql(schema: str) -> sql.Composed:
    return sql.SQL(
        "INSERT INTO {} (name, position) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING"
    ).format(_table(schema))


@lru_cache(maxsize=16)
def _lock_sql(schema: str) -> sql.Composed:
    return sql.SQL("SELECT position FROM {} WHERE name = %s FOR UPDATE").format(_table(schema))


@lru_cache(maxsize=16)
def _select_sql(schema: str) -> sql.Composed:
    return sql.SQL("SELECT position FROM {} WHERE name = %s").format(_table(schema))


@lru_cache(maxsize=16)
def _advance_sql(schema: str) -> sql.Composed:
    return sql.SQL(
        "UPDATE {} SET position = %s, updated_at = clock_timestamp() WHERE name = %s"
    ).format(_table(schema))
