"""Recomputes the log's hash chain, in Python, independently of the trigger that wrote it.

The trigger (migration 0001) stores for each event
``sha256(previous hash || int8 notification_id || uuid originator_id || int8 version ||
int4 len(topic) || topic || int4 len(state) || state || int8 recorded_at)``, with
``recorded_at`` in microseconds since 2000-01-01 UTC and 32 zero bytes before the first
event. Those are exactly the fields' PostgreSQL binary representations, which is what
``COPY ... (FORMAT binary)`` streams: every field prefixed by its int4 length. So the
log is read as one binary COPY in position order and each event is hashed straight
from the stream's bytes (the fixed-width fields without their length prefix, topic and
state with it), without building a Python object per field. That keeps a million
events to a few seconds, at about twice the cost of merely reading the log.

Each event is checked against the *stored* hash of the event before it, so the first
position whose stored hash disagrees is where the log was changed: an edited event
breaks at itself, a removed one at its successor, a slipped-in or moved one at its own
place. What the chain cannot show by itself (a superuser who recomputes every later
hash, or cuts events off the end) is what anchors are for: see ``ledger.audit.anchors``
and docs/audit.md.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from ledger.database import distribution

GENESIS = bytes(32)
EPOCH_2000 = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_INT4 = struct.Struct(">i")
_INT8 = struct.Struct(">q")
# a row up to the topic's bytes: field count, then (length, value) for notification_id,
# originator_id (two halves), originator_version, and the topic's length
_ROW_HEAD = struct.Struct(">hiqiQQiqi")
# after the state's bytes: (length, value) of recorded_at, and the hash's length
_ROW_TAIL = struct.Struct(">iqi")
_BATCH_BYTES = 1 << 20


def event_hash(
    previous: bytes,
    position: int,
    originator_id: UUID,
    version: int,
    topic: str,
    state: bytes,
    recorded_at: datetime,
) -> bytes:
    """One event's hash from its values: the definition, spelled out field by field."""
    topic_bytes = topic.encode("utf-8")
    micros = (recorded_at - EPOCH_2000) // _MICROSECOND
    return hashlib.sha256(
        b"".join(
            (
                previous,
                _INT8.pack(position),
                originator_id.bytes,
                _INT8.pack(version),
                _INT4.pack(len(topic_bytes)),
                topic_bytes,
                _INT4.pack(len(state)),
                state,
                _INT8.pack(micros),
            )
        )
    ).digest()


@dataclass(frozen=True)
class Break:
    """The first place where the stored chain disagrees with the stored events."""

    position: int
    previous_position: int | None  # the event before it, in the log as it is now
    malformed: bool = False

    def describe(self) -> str:
        if self.malformed:
            after = (
                f"after position {self.previous_position}"
                if self.previous_position is not None
                else "at the start of the log"
            )
            return (
                f"the hash chain breaks at position {self.position}: the stored row {after} "
                "is malformed (a NULL or a field of the wrong size)"
            )
        before = (
            f"the event before it (position {self.previous_position})"
            if self.previous_position is not None
            else "the start of the log"
        )
        return (
            f"the hash chain breaks at position {self.position}: its stored hash is not "
            f"the hash of its content chained to {before}; the event at {self.position} "
            "was altered or moved, or an event between them was removed, slipped in or "
            "reordered"
        )


@dataclass
class ChainWalk:
    """Walks a binary COPY stream of the log, chunk by chunk (``feed``, then ``finish``).

    Pure: no database, so the parsing and the checks are unit-tested on hand-made bytes.
    ``watch`` lists positions whose stored hashes to keep (the anchors to check).
    """

    watch: Collection[int] = ()
    # called with (topic, state) of each event until it names a problem (a string)
    inspect: Callable[[bytes, bytes], str | None] | None = None
    first_undecodable: tuple[int, str, str] | None = None  # (position, topic, problem)
    events: int = 0
    head_position: int = 0
    head_hash: bytes = GENESIS
    first_break: Break | None = None
    watched: dict[int, bytes] = field(default_factory=dict)
    _buffer: bytearray = field(default_factory=bytearray)
    _header_done: bool = False
    _ended: bool = False

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        buffer = self._buffer
        buffer += chunk
        start = 0
        if not self._header_done:
            if len(buffer) < 19:
                return
            if bytes(buffer[:11]) != COPY_SIGNATURE:
                raise ValueError("not a binary COPY stream")
            start = 19 + _INT4.unpack_from(buffer, 15)[0]
            if len(buffer) < start:
                return
            self._header_done = True
        start = self._rows(buffer, start)
        del buffer[:start]

    def _rows(self, buffer: bytearray, start: int) -> int:
        """Consumes the complete rows in ``buffer`` from ``start``; returns where it stopped.

        One tight loop over locals, because it runs once per event.
        """
        sha256 = hashlib.sha256
        join = b"".join
        head = _ROW_HEAD.unpack_from
        tail_of = _ROW_TAIL.unpack_from
        int4 = _INT4.unpack_from
        head_size = _ROW_HEAD.size
        watch = self.watch
        inspect = self.inspect if self.first_undecodable is None else None
        previous = self.head_hash
        previous_position: int | None = self.head_position if self.events else None
        position = self.head_position
        count = self.events
        first_break = self.first_break
        end = len(buffer)
        view = memoryview(buffer)
        p = start
        try:
            while p + 2 <= end:
                if buffer[p] == 0xFF:  # the trailer: a field count of -1
                    self._ended = True
                    p += 2
                    break
                if p + head_size > end:
                    break
                fields, id_size, row_position, uuid_size, _, _, version_size, _, topic_size = head(
                    buffer, p
                )
                if (fields, id_size, uuid_size, version_size) != (7, 8, 16, 8) or topic_size < 0:
                    raise _Malformed(row_position)
                state_at = p + head_size + topic_size
                if state_at + 4 > end:
                    break
                state_size = int4(buffer, state_at)[0]
                if state_size < 0:
                    raise _Malformed(row_position)
                tail = state_at + 4 + state_size
                if tail + 48 > end:
                    break
                time_size, _, hash_size = tail_of(buffer, tail)
                if time_size != 8 or hash_size != 32:
                    raise _Malformed(row_position)
                position = row_position
                computed = sha256(
                    join(
                        (
                            previous,
                            view[p + 6 : p + 14],  # notification_id
                            view[p + 18 : p + 34],  # originator_id
                            view[p + 38 : p + 46],  # originator_version
                            view[p + 46 : tail],  # len(topic), topic, len(state), state
                            view[tail + 4 : tail + 12],  # recorded_at
                        )
                    )
                ).digest()
                stored = bytes(buffer[tail + 16 : tail + 48])
                if first_break is None and computed != stored:
                    first_break = Break(position, previous_position)
                if watch and position in watch:
                    self.watched[position] = stored
                if inspect is not None:
                    topic = bytes(view[p + head_size : state_at])
                    problem = inspect(topic, bytes(view[state_at + 4 : tail]))
                    if problem is not None:
                        name = topic.decode("utf-8", "replace")
                        self.first_undecodable = (position, name, problem)
                        inspect = None
                previous, previous_position = stored, position
                count += 1
                p = tail + 48
        except _Malformed as bad:
            if first_break is None:
                first_break = Break(bad.position, previous_position, malformed=True)
            self._ended = True
            p = end
        finally:
            view.release()
        self.head_hash, self.head_position, self.events = previous, position, count
        self.first_break = first_break
        return p

    def finish(self) -> ChainWalk:
        if not self._ended or self._buffer:
            raise ValueError("the binary COPY stream ended early")
        return self


class _Malformed(Exception):
    def __init__(self, position: int) -> None:
        self.position = position


def walk(
    chunks: Iterable[bytes],
    watch: Collection[int] = (),
    inspect: Callable[[bytes, bytes], str | None] | None = None,
) -> ChainWalk:
    walker = ChainWalk(watch=frozenset(watch), inspect=inspect)
    for chunk in chunks:
        walker.feed(chunk)
    return walker.finish()


def chains(conn: psycopg.Connection[Any], schema: str) -> list[UUID]:
    """Every chain of the log, the platform's first.

    On one server a skip over the index on (organization_id, position), one probe per
    chain, however long the chains. Citus runs no recursive query over a distributed table
    ("recursive CTEs are only supported when they contain a filter on the distribution
    column"): there the chains are the rows of ``ledger_chain_heads`` (each made by its
    chain's first append, under the chain's lock), and ``unchained`` counts what lies
    outside them."""
    if distribution.log_is_distributed(conn, schema):
        query = sql.SQL("SELECT organization_id FROM {} ORDER BY organization_id").format(
            sql.Identifier(schema, "ledger_chain_heads")
        )
    else:
        query = sql.SQL(
            "WITH RECURSIVE c(o) AS ("
            " (SELECT organization_id FROM {log} ORDER BY organization_id LIMIT 1)"
            " UNION ALL SELECT (SELECT e.organization_id FROM {log} e"
            " WHERE e.organization_id > c.o ORDER BY e.organization_id LIMIT 1)"
            " FROM c WHERE c.o IS NOT NULL)"
            " SELECT o AS organization_id FROM c WHERE o IS NOT NULL"
        ).format(log=sql.Identifier(schema, "ledger_events"))
    rows = conn.cursor(row_factory=tuple_row).execute(query).fetchall()
    return sorted(UUID(str(r[0])) for r in rows)  # the platform's, the nil uuid, first


def unchained(conn: psycopg.Connection[Any], schema: str, chains: Collection[UUID]) -> int:
    """How many events of the log lie outside ``chains`` (a chain with no row of
    ``ledger_chain_heads``: only a superuser can make one). One count on each worker."""
    row = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            sql.SQL("SELECT count(*) FROM {} WHERE NOT (organization_id = ANY(%s))").format(
                sql.Identifier(schema, "ledger_events")
            ),
            (list(chains),),
        )
        .fetchone()
    )
    return 0 if row is None else int(row[0])


def genesis(conn: psycopg.Connection[Any], schema: str, chain: UUID) -> bytes:
    """What a chain's first event is chained to (migration 0014): 32 zero bytes for the
    platform's (the old single chain's start), sha256(origin || organization) for an
    organization's, origin being the single chain's head recorded at the switch."""
    if chain.int == 0:
        return GENESIS
    row = conn.execute(
        sql.SQL("SELECT head_hash FROM {}").format(sql.Identifier(schema, "ledger_chain_origin"))
    ).fetchone()
    if row is None:
        return hashlib.sha256(GENESIS + chain.bytes).digest()
    origin = bytes(row["head_hash"] if isinstance(row, dict) else row[0])
    return hashlib.sha256(origin + chain.bytes).digest()


def verify_chains(
    conn: psycopg.Connection[Any],
    schema: str,
    watch: Mapping[UUID, Collection[int]] | None = None,
    inspect: Callable[[bytes, bytes], str | None] | None = None,
) -> dict[UUID, ChainWalk]:
    """Walks every chain of the log (``verify_chain``), the platform's first."""
    walks: dict[UUID, ChainWalk] = {}
    for chain in chains(conn, schema):
        walks[chain] = verify_chain(conn, schema, (watch or {}).get(chain, ()), inspect, chain)
        if walks[chain].first_undecodable is not None:
            inspect = None  # the first undecodable event is what the check names
    return walks


def verify_chain(
    conn: psycopg.Connection[Any],
    schema: str,
    watch: Collection[int] = (),
    inspect: Callable[[bytes, bytes], str | None] | None = None,
    chain: UUID | None = None,
) -> ChainWalk:
    """Streams one chain (the platform's by default) in position order (one statement,
    one snapshot) and walks it; ``inspect`` sees each event's topic and state on the way
    (the decode check)."""
    chain = chain or UUID(int=0)
    query = sql.SQL(
        "COPY (SELECT position, originator_id, originator_version, topic, state, "
        "recorded_at, hash FROM {} WHERE organization_id = {} ORDER BY position) "
        "TO STDOUT (FORMAT binary)"
    ).format(sql.Identifier(schema, "ledger_events"), sql.Literal(str(chain)))
    walker = ChainWalk(watch=frozenset(watch), inspect=inspect)
    walker.head_hash = genesis(conn, schema, chain)
    with conn.transaction():
        # the trigger hashes the topic as UTF-8; binary COPY sends text in the client encoding
        conn.execute("SET LOCAL client_encoding TO 'UTF8'")
        with conn.cursor().copy(query) as copy:
            # COPY sends a message per row: walk them a megabyte at a time
            parts: list[bytes | bytearray | memoryview] = []
            size = 0
            for chunk in copy:
                parts.append(chunk)
                size += len(chunk)
                if size >= _BATCH_BYTES:
                    walker.feed(b"".join(parts))
                    parts, size = [], 0
            walker.feed(b"".join(parts))
    return walker.finish()


def sequence_position(conn: psycopg.Connection[Any], schema: str) -> int | None:
    """The last position the log's sequence handed out (None if it never did).

    Only a hint about the end of the log: appends that roll back consume positions too,
    and a superuser can reset a sequence.
    """
    # the sequence asked by its oid: a scan of pg_sequences would cast every schema's
    # sequence names, and fail on a schema another session drops meanwhile
    # (and, as that view does, read only where the role may)
    row = conn.execute(
        "SELECT CASE WHEN has_sequence_privilege(seq, 'SELECT,USAGE')"
        " THEN pg_sequence_last_value(seq) END"
        " FROM (SELECT pg_get_serial_sequence(%s, 'notification_id')::regclass AS seq) s",
        (sql.Identifier(schema, "ledger_events").as_string(conn),),
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def last_notification(conn: psycopg.Connection[Any], schema: str) -> int:
    """The log's highest notification id (0 if empty), for ``sequence_position``."""
    row = conn.execute(
        sql.SQL("SELECT coalesce(max(notification_id), 0) AS last FROM {}").format(
            sql.Identifier(schema, "ledger_events")
        )
    ).fetchone()
    return 0 if row is None else int(row["last"] if isinstance(row, dict) else row[0])
