"""The playback store as a stream, for analytics (watch time): ``ledger playback events``.

The records still retained, in position order, from after a position. On a single server
positions are one order, but two groups in flight may commit out of it (migration 0029):
each group publishes, before it draws, a lower bound of its positions in an advisory lock
held to its commit, and a read takes records only up to ``_HIGH_WATER`` (below every group
still in flight), so what it returns is a prefix of the committed records in position order
and a reader that resumes after the last position it saw misses none that is retained. On
the distributed layout (Citus) each organization has its own positions, drawn under its own
head row's lock (``playback_heads``, migration 0027) and committed in their order, and no
order across organizations: the reader keeps a ``Cursor`` (a position per organization,
``ledger.reading.cursor``) and reads each organization after its own position, so it never
skips a committed record either (docs/stream.md, "The playback store's stream"). Compaction
removes records: a reader behind the horizon resumes at the oldest retained."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from ledger.database import store_placement
from ledger.domain import clock
from ledger.playback.partitions import PARENT
from ledger.reading.cursor import Cursor
from ledger.reading.stream import Stop

BATCH = 1000
POLL_SECONDS = 0.5

_COLUMNS = (
    "position, occurred_at, recorded_at, user_id, content_id, organization_id, "
    "position_seconds, duration_seconds, completed, idempotency_key"
)
# every organization with a record after its cursor's position (the heads hold each one's
# last position drawn and committed; a multi-shard read of one small row per organization)
_HEADS = (
    "SELECT organization_id, position FROM {heads} "
    "WHERE %s::uuid IS NULL OR organization_id = %s::uuid"
)
# one organization's records after its position: routed to its worker
_ONE = (
    "SELECT " + _COLUMNS + " FROM {records} WHERE organization_id = %s AND position > %s "
    "ORDER BY position LIMIT %s"
)

_READ = (
    "SELECT position, occurred_at, recorded_at, user_id, content_id, organization_id, "
    "position_seconds, duration_seconds, completed, idempotency_key "
    "FROM {records} WHERE position > %s AND position <= %s "
    "AND (%s::uuid IS NULL OR organization_id = %s::uuid) "
    "ORDER BY position LIMIT %s"
)

# How far a read may go (a statement before the read's own, so before its snapshot): the
# highest position committed (``top``, seen by this statement's snapshot), lowered below the
# bound every group still in flight published (migration 0029: the lock's key is the
# sequence's oid and the bound's low 32 bits, whole again as the nearest value at or below
# ``top``; a bound above ``top`` lowers nothing). Why it is a prefix: a position at or below
# the mark was drawn before ``top`` was, so before this statement; its group had published
# its bound by then, so it is either in flight now (and the mark is below it) or finished
# before the read's statement starts (committed, the read sees it; or rolled back, a gap).
# The read must be a statement of its own after this one, in READ COMMITTED.
_HIGH_WATER = (
    "WITH top AS (SELECT max(position) AS m FROM {records}), "
    "bound AS (SELECT ((top.m - l.objid::bigint) %% 4294967296 + 4294967296) %% 4294967296 "
    "AS below FROM top, pg_locks l WHERE l.locktype = 'advisory' AND l.objsubid = 2 "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND l.classid = %s::regclass::oid) "
    "SELECT least(top.m, top.m - (SELECT max(below) FROM bound WHERE below < 2147483648)) "
    "AS mark, current_setting('transaction_isolation') AS isolation FROM top"
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
    mark = high_water(conn, schema)
    if mark is None or mark <= after:
        return []
    query = sql.SQL(_READ).format(records=sql.Identifier(schema, PARENT))
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(query, (after, mark, organization, organization, limit))
        return [as_dict(row) for row in cur]


def high_water(conn: psycopg.Connection[Any], schema: str) -> int | None:
    """The highest position a read starting now may return (``None``: no record yet):
    every committed record at or below it is visible to a later statement, none of a group
    still in flight is below it (``_HIGH_WATER``). A ``RuntimeError`` on a connection whose
    transaction keeps one snapshot (REPEATABLE READ, SERIALIZABLE): the read must see what
    committed after this statement."""
    query = sql.SQL(_HIGH_WATER).format(records=sql.Identifier(schema, PARENT))
    sequence = f"{sql.Identifier(schema).as_string(conn)}.playback_positions"
    with conn.cursor(row_factory=psycopg.rows.tuple_row) as cur:
        row = cur.execute(query, (sequence,)).fetchone()
    assert row is not None
    mark, isolation = row
    if isolation != "read committed":
        raise RuntimeError(
            f"the playback stream is read in READ COMMITTED, not {isolation}: a read keeping "
            "one snapshot could miss a group that commits meanwhile"
        )
    return None if mark is None else int(mark)


def per_organization(conn: psycopg.Connection[Any], schema: str) -> bool:
    """Whether the store's positions are each organization's (the distributed layout)."""
    return store_placement.store_is_distributed(conn, schema)


def start(conn: psycopg.Connection[Any], schema: str, after: int | Cursor) -> int | Cursor:
    """Where a reader starts, in the store's own kind of position: a ``ValueError`` naming
    ``after`` for a cursor on a single server, or a position past 0 on the distributed
    layout (no order across organizations: read after it, a record of one organization
    committed late would be skipped)."""
    if per_organization(conn, schema):
        if isinstance(after, Cursor):
            return after
        if after:
            raise ValueError(
                f"after: the playback store is distributed by organization, where position "
                f"{after} is no order across organizations: give a cursor "
                "(ORGANIZATION:POSITION joined by commas)"
            )
        return Cursor()
    if isinstance(after, Cursor):
        raise ValueError(
            "after: the playback store is on one server, where positions are one order: "
            "give a position (a whole number)"
        )
    return after


def read_cursor(
    conn: psycopg.Connection[Any],
    schema: str,
    cursor: Cursor,
    limit: int = BATCH,
    organization: str | None = None,
) -> tuple[list[dict[str, Any]], Cursor]:
    """Up to ``limit`` records after ``cursor`` (each organization with news a share, the
    first ``limit`` organizations in uuid order at least one each), each organization's in
    its position order, and the cursor read up to. An organization whose head is past its
    cursor but holds no record there any more (compacted) moves to its head: every position
    up to a committed head is committed."""
    heads = sql.SQL(_HEADS).format(heads=sql.Identifier(schema, "playback_heads"))
    one = sql.SQL(_ONE).format(records=sql.Identifier(schema, PARENT))
    with conn.cursor(row_factory=psycopg.rows.tuple_row) as cur:
        found = cur.execute(heads, (organization, organization)).fetchall()
    waiting = sorted(
        (UUID(str(org)), int(head)) for org, head in found if int(head) > cursor[UUID(str(org))]
    )
    records: list[dict[str, Any]] = []
    reached: dict[UUID, int] = {}
    if not waiting:
        return records, cursor
    waiting = waiting[:limit]
    width = max(1, limit // len(waiting))
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        for org, head in waiting:
            rows = cur.execute(one, (org, cursor[org], width)).fetchall()
            records.extend(as_dict(row) for row in rows)
            reached[org] = int(rows[-1]["position"]) if rows else head
    return records, cursor.advanced(reached)


def follow(
    conn: psycopg.Connection[Any],
    schema: str,
    after: int | Cursor,
    *,
    keep_following: bool,
    limit: int | None,
    stop: Stop,
) -> Iterator[list[dict[str, Any]]]:
    """Batches of records after ``after`` (a position, or a cursor on the distributed
    layout); with ``keep_following``, waits (polling) for new ones until ``stop`` is set."""
    if isinstance(after, Cursor):
        yield from _follow_cursor(conn, schema, after, keep_following, limit, stop)
        return
    left, position = limit, after
    while not stop.is_set():
        size = BATCH if left is None else min(BATCH, left)
        batch = read(conn, schema, position, size)
        if batch:
            yield batch
            position = batch[-1]["position"]
            if left is not None:
                left -= len(batch)
                if left <= 0:
                    return
            continue
        if not keep_following:
            return
        stop.wait(POLL_SECONDS)


def _follow_cursor(
    conn: psycopg.Connection[Any],
    schema: str,
    cursor: Cursor,
    keep_following: bool,
    limit: int | None,
    stop: Stop,
) -> Iterator[list[dict[str, Any]]]:
    """``follow`` with a cursor: the same loop, the cursor moved by each batch."""
    left = limit
    while not stop.is_set():
        size = BATCH if left is None else min(BATCH, left)
        batch, moved = read_cursor(conn, schema, cursor, size)
        if batch:
            yield batch
            if left is not None:
                left -= len(batch)
                if left <= 0:
                    return
        if moved != cursor:
            cursor = moved
            continue
        if not keep_following:
            return
        stop.wait(POLL_SECONDS)
