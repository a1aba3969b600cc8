"""Checks the log's hash chain: nothing altered, removed, slipped in or reordered.

Recomputes, in log order, exactly what the migration's trigger stored:
``sha256(previous hash || notification_id || originator_id || originator_version ||
len(topic) || topic || len(state) || state || recorded_at in µs since 2000)``.
An edited event fails its own hash; a removed, inserted or moved one breaks the
link to its neighbour. A superuser who rewrites the whole chain from some point on
is caught only against a head recorded earlier (``--expect-head``): see docs/audit.md.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

GENESIS = bytes(32)
EPOCH_2000 = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class ChainResult:
    events: int
    head_position: int
    head_hash: str
    problem: str | None


def event_hash(
    previous: bytes,
    position: int,
    originator_id: UUID,
    version: int,
    topic: str,
    state: bytes,
    recorded_at: datetime,
) -> bytes:
    topic_bytes = topic.encode("utf-8")
    micros = (recorded_at - EPOCH_2000) // _MICROSECOND
    return hashlib.sha256(
        b"".join(
            (
                previous,
                struct.pack(">q", position),
                originator_id.bytes,
                struct.pack(">q", version),
                struct.pack(">i", len(topic_bytes)),
                topic_bytes,
                struct.pack(">i", len(state)),
                state,
                struct.pack(">q", micros),
            )
        )
    ).digest()


def verify_chain(
    conn: psycopg.Connection[Any], schema: str, expect_head: tuple[int, str] | None = None
) -> ChainResult:
    previous = GENESIS
    count = 0
    position = 0
    problem: str | None = None
    seen: dict[int, str] = {}
    query = sql.SQL(
        "SELECT notification_id, originator_id, originator_version, topic, state, recorded_at, "
        "hash FROM {} ORDER BY notification_id"
    ).format(sql.Identifier(schema, "ledger_events"))
    with conn.transaction(), conn.cursor(name="ledger_chain") as cursor:
        cursor.itersize = 10_000
        cursor.execute(query)
        for position, originator_id, version, topic, state, recorded_at, stored in cursor:
            count += 1
            expected = event_hash(
                previous, position, originator_id, version, topic, bytes(state), recorded_at
            )
            stored = bytes(stored)
            if expected != stored:
                problem = (
                    f"the hash chain breaks at position {position}: the event there, or the "
                    "one before it, was altered, removed, inserted or moved"
                )
                break
            if expect_head is not None and position == expect_head[0]:
                seen[position] = stored.hex()
            previous = stored
    if problem is None and expect_head is not None:
        anchor_position, anchor_hash = expect_head
        if anchor_position not in seen:
            problem = f"the anchored position {anchor_position} is no longer in the log"
        elif seen[anchor_position] != anchor_hash.lower():
            problem = (
                f"the event at anchored position {anchor_position} does not carry the anchored "
                "hash: history up to it was rewritten"
            )
    return ChainResult(count, position, previous.hex() if count else GENESIS.hex(), problem)
