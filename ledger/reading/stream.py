"""The log as a stream: its events in position order from any position, and following
the live log (docs/stream.md).

A reader never skips an event. Every append takes the log's EXCLUSIVE lock before it
draws a position from the sequence (the recorder's ``LOCK TABLE``; the trigger of the
consumer-checkpoints migration for any other insert) and keeps it until it has
committed; PostgreSQL makes a commit visible before it releases the transaction's
locks. So a position becomes visible only after every lower position has committed
or rolled back: a snapshot always sees a prefix of the log, and a position missing
below a visible one (an append that rolled back) is a hole for ever. Reading "after
the last position seen" is therefore exact, and passes holes without waiting.

Following polls with a backoff rather than LISTENing: a poll cannot miss a
notification, and it reads what is committed whatever wrote it.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, Protocol
from uuid import UUID

import psycopg
from psycopg import sql

from ledger.config import Settings
from ledger.database.connections import connect
from ledger.domain.clock import canonical
from ledger.domain.events import EVENTS_BY_TOPIC
from ledger.domain.provenance import SOURCES, UNRECORDED
from ledger.errors import ConfigurationError
from ledger.log.shapes import UndecodableEvent
from ledger.reading.cursor import Cursor
from ledger.reading.decoding import decode as decode

MAX_BATCH = 10_000
_ALL_POSITIONS = 2**63 - 1
PLATFORM = UUID(int=0)  # ledger.log.chains.PLATFORM (the reading side imports no log)


@dataclass(frozen=True)
class EventRecord:
    """One event of the log, as ``ledger events`` prints it.

    ``data`` is the decoded event: the fields its class declares, with the library's
    own ``timestamp`` and ``originator_topic``. An event that does not decode stops the
    reader (``UndecodableEvent``, naming its position and topic) instead.
    """

    position: int
    recorded_at: datetime
    topic: str
    originator_id: UUID
    version: int
    data: dict[str, Any]
    hash: bytes
    # its chain (the platform's: the nil uuid) and its position there (docs/stream.md,
    # "Chains and orders"): the cursor of a reader of one chain
    organization_id: UUID = PLATFORM
    chain_position: int = 0

    @classmethod
    def of(cls, row: Sequence[Any], data: dict[str, Any]) -> EventRecord:
        """The record of a row of the readers' windows (notification_id, recorded_at,
        topic, originator_id, originator_version, state, hash, organization_id, position),
        its state decoded into ``data``."""
        notification, recorded_at, topic, originator_id, version, _, digest, org, at = row
        return cls(
            position=notification,
            recorded_at=recorded_at,
            topic=topic,
            originator_id=originator_id,
            version=version,
            data=data,
            hash=bytes(digest),
            organization_id=UUID(str(org)),
            chain_position=at,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "recorded_at": canonical(self.recorded_at),
            "topic": self.topic,
            "originator_id": str(self.originator_id),
            "version": self.version,
            "data": self.data,
            "hash": self.hash.hex(),
            "organization_id": str(self.organization_id),
            "chain_position": self.chain_position,
        }

    def cursor(self, chain: UUID | None) -> int:
        """Where a reader resumes after this record: its position, or in a chain's
        reading, its position in the chain."""
        return self.position if chain is None else self.chain_position


@dataclass(frozen=True)
class EventBatch:
    """The records of one read, and the position read up to.

    ``position`` is the checkpoint to store: every position up to it has been read (or
    was never committed), including those of topics left out, so storing it saves
    reading them again.
    """

    records: tuple[EventRecord, ...]
    position: int
    # each chain's position read up to in this window, records left out included: what a
    # reader keeping one position per chain stores (ledger.reading.cursor)
    chains: Mapping[UUID, int] = field(default_factory=dict)


class Stop(Protocol):
    """What tells a follower to stop: a ``threading.Event``, or (set from a signal
    handler, where an ``Event``'s lock could deadlock) ``ledger.cli.signals.SignalStop``."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


@dataclass(frozen=True)
class Backoff:
    """Waits between polls of a caught-up follower: from ``first`` seconds, times
    ``factor`` while nothing new arrives, at most ``longest``; back to ``first`` as
    soon as something does. ``longest`` bounds how late a follower sees an event."""

    first: float = 0.05
    longest: float = 1.0
    factor: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.longest or self.factor < 1:
            raise ValueError("backoff: need 0 < first <= longest and factor >= 1")

    def delays(self) -> Iterator[float]:
        delay = self.first
        while True:
            yield delay
            delay = min(delay * self.factor, self.longest)


def check_topics(topics: Sequence[str]) -> tuple[str, ...]:
    unknown = [t for t in topics if t not in EVENTS_BY_TOPIC]
    if unknown:
        raise ValueError(
            f"topic: unknown {', '.join(map(repr, unknown))}; "
            f"topics are {', '.join(sorted(EVENTS_BY_TOPIC))}"
        )
    return tuple(dict.fromkeys(topics))


def check_size(size: int) -> None:
    if not 1 <= size <= MAX_BATCH:
        raise ValueError(f"size: a batch holds 1 to {MAX_BATCH} positions, not {size}")


def check_range(after: int, until: int | None) -> None:
    if after < 0:
        raise ValueError(f"after: a position is 0 or more, not {after}")
    if until is not None and until < after:
        raise ValueError(f"until: {until} lies before after ({after})")


@dataclass(frozen=True)
class ProvenanceFilter:
    """Which events to keep, by provenance (None: any). Events stored before provenance
    read as ``source`` ``unknown`` with neither a correlation id nor a key (their
    upcaster), so ``source="unknown"`` finds them."""

    source: str | None = None
    correlation_id: str | None = None
    idempotency_key: str | None = None

    def __post_init__(self) -> None:
        if self.source is not None and self.source not in (*SOURCES, UNRECORDED):
            raise ValueError(
                f"source: one of {', '.join((*SOURCES, UNRECORDED))}, not {self.source!r}"
            )

    def matches(self, data: dict[str, Any]) -> bool:
        return (
            (self.source is None or data.get("source") == self.source)
            and (self.correlation_id is None or data.get("correlation_id") == self.correlation_id)
            and (
                self.idempotency_key is None or data.get("idempotency_key") == self.idempotency_key
            )
        )


ANY = ProvenanceFilter()


def require_tables(conn: psycopg.Connection[Any], schema: str, *tables: str) -> None:
    """A clear error, rather than a database one, when the schema is not migrated."""
    for table in tables:
        row = conn.execute("SELECT to_regclass(%s)", (f"{schema}.{table}",)).fetchone()
        if row is None or row[0] is None:
            raise ConfigurationError(
                f"the database is not migrated (no {table}): run `ledger db upgrade`"
            )


def batch_size(limit: int | None) -> int:
    """Positions read per query: large, but not far beyond a small ``limit``."""
    return MAX_BATCH if limit is None else min(MAX_BATCH, max(limit, 100))


def read_window(
    conn: psycopg.Connection[Any],
    schema: str,
    after: int,
    *,
    until: int | None = None,
    topics: Sequence[str] = (),
    size: int = 1000,
    provenance: ProvenanceFilter = ANY,
    chain: UUID | None = None,
) -> EventBatch | None:
    """The next window of at most ``size`` positions after ``after``, with the records
    of ``topics`` (all if empty) from ``provenance`` among them; ``None`` when nothing
    lies after ``after`` (or ``until`` has been reached). One query; each query sees a
    prefix of the log (module docstring), so no window can miss a position that commits
    later. Provenance is matched on the decoded event, so every stored version is judged
    by the same (upcast) fields. With ``chain``, the window is of that chain's positions
    (an organization's uuid, or the nil uuid for the platform's): exact in either order of
    the log, since a chain's positions are drawn under its lock (docs/stream.md).
    """
    if until is not None and after >= until:
        return None
    params: tuple[Any, ...] = (not topics, list(topics), after, size)
    query = _window_sql(schema)
    if chain is not None:
        query, params = _chain_sql(schema), (not topics, list(topics), chain, after, size)
    rows = conn.execute(query, params, prepare=True).fetchall()
    if not rows:
        return None
    records = []
    position = after
    reached: dict[UUID, int] = {}
    for row in rows:
        notification, _, topic, _, _, state, _, org, at = row
        pos = notification if chain is None else at
        if until is not None and pos > until:
            position = until
            break
        if state is not None:
            try:
                data = decode(pos, topic, bytes(state))
            except UndecodableEvent:
                if position == after:
                    raise
                break  # the window ends before it: the next one starts with it, and stops
            if not provenance.matches(data):
                position, reached[org] = pos, at
                continue
            records.append(EventRecord.of(row, data))
        position, reached[org] = pos, at
    if position == after:
        return None
    return EventBatch(tuple(records), position, reached)


def read_batches(
    settings: Settings,
    *,
    after: int = 0,
    until: int | None = None,
    topics: Sequence[str] = (),
    follow: bool = False,
    size: int = 1000,
    stop: Stop | None = None,
    backoff: Backoff | None = None,
    provenance: ProvenanceFilter = ANY,
    chain: UUID | None = None,
) -> Generator[EventBatch, None, None]:
    """Windows of the log after ``after``, in position order (``read_window``).

    Without ``follow`` it ends once it has caught up with the log (or reached
    ``until``); with ``follow`` it then polls for new events, waiting per ``backoff``,
    until ``until`` is reached or ``stop`` is set. A caller that stores its own
    checkpoint (in another database, with its own writes) stores ``batch.position``.
    """
    check_range(after, until)
    wanted = check_topics(topics)
    check_size(size)
    stop = stop or threading.Event()
    pause = backoff or Backoff()
    with connect(settings, autocommit=True) as conn:
        require_tables(conn, settings.schema, "ledger_events")
        delays = pause.delays()
        while not stop.is_set():
            batch = read_window(
                conn,
                settings.schema,
                after,
                until=until,
                topics=wanted,
                size=size,
                provenance=provenance,
                chain=chain,
            )
            if batch is None:
                if not follow or (until is not None and after >= until):
                    return
                stop.wait(next(delays))
                continue
            delays = pause.delays()
            after = batch.position
            yield batch


def read_events(
    settings: Settings,
    *,
    after: int | Cursor = 0,
    until: int | None = None,
    topics: Sequence[str] = (),
    follow: bool = False,
    limit: int | None = None,
    stop: Stop | None = None,
    backoff: Backoff | None = None,
    provenance: ProvenanceFilter = ANY,
    chain: UUID | None = None,
) -> Generator[EventRecord, None, None]:
    """The records of the log after ``after`` (up to ``until``, at most ``limit``), in
    position order: ``ledger events`` in Python. ``follow`` and ``stop`` as for
    ``read_batches``; a record is yielded once, and every committed event of the
    chosen topics is yielded. ``after`` a ``Cursor``: every chain, each in its position
    order, after the cursor's position for it (``ledger.reading.chains``; exact in either
    order of the log), with no ``until`` nor ``chain``."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit: at least 1, not {limit}")
    count = 0
    batches: Generator[Any, None, None]
    if isinstance(after, Cursor):
        if until is not None or chain is not None:
            raise ValueError("after: a cursor of every chain takes neither until nor chain")
        from ledger.reading.chains import read_chains  # it builds on this module

        batches = read_chains(
            settings,
            after=after,
            topics=topics,
            follow=follow,
            size=batch_size(limit),
            stop=stop,
            backoff=backoff,
            provenance=provenance,
        )
    else:
        batches = read_batches(
            settings,
            after=after,
            until=until,
            topics=topics,
            follow=follow,
            size=batch_size(limit),
            stop=stop,
            backoff=backoff,
            provenance=provenance,
            chain=chain,
        )
    with closing(batches):  # a reader that stops early closes the connection now
        for batch in batches:
            for record in batch.records:
                yield record
                count += 1
                if limit is not None and count >= limit:
                    return


@lru_cache(maxsize=16)
def _window_sql(schema: str) -> sql.Composed:
    return sql.SQL(
        "SELECT notification_id, recorded_at, topic, originator_id, originator_version, "
        "CASE WHEN %s OR topic = ANY(%s) THEN state END, hash, organization_id, position "
        "FROM {} WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
    ).format(sql.Identifier(schema, "ledger_events"))


@lru_cache(maxsize=16)
def _chain_sql(schema: str) -> sql.Composed:
    """One chain's window, on the index of (organization_id, position)."""
    return sql.SQL(
        "SELECT notification_id, recorded_at, topic, originator_id, originator_version, "
        "CASE WHEN %s OR topic = ANY(%s) THEN state END, hash, organization_id, position "
        "FROM {} WHERE organization_id = %s AND position > %s ORDER BY position LIMIT %s"
    ).format(sql.Identifier(schema, "ledger_events"))
