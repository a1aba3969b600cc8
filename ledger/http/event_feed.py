"""``GET /v1/events``'s pages: the log after a position (the global order), or every chain
after a cursor (docs/stream.md, "Reading every chain"), at most ``limit`` events a page,
with the ``next_after`` to ask for the next one in the form ``after`` came in.

The page is read in the request's one transaction (``Backend.read``), so a token bound to
an organization reads through row-level security: the chains it sees are its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from ledger.log import chains as log_chains
from ledger.log.shapes import UndecodableEvent
from ledger.reading import stream
from ledger.reading.chains import read_chains_window
from ledger.reading.cursor import Cursor, parse_cursor

_MAX_POSITION = 2**63 - 1


def parse_after(text: str | None) -> int | Cursor | None:
    """``after`` as given: none, a position, or a cursor; a ``ValueError`` naming it."""
    if text is None:
        return None
    if text.isascii() and text.isdigit():
        if len(text) > 19 or int(text) > _MAX_POSITION:
            raise ValueError(f"after: a position is 0 to {_MAX_POSITION}")
        return int(text)
    return parse_cursor(text)


def read_page(
    conn: psycopg.Connection[Any],
    schema: str,
    after: int | Cursor | None,
    limit: int,
    *,
    topics: Sequence[str],
    provenance: stream.ProvenanceFilter,
) -> dict[str, Any]:
    """``{"events": [...], "next_after": ...}``: ``next_after`` a position, or a cursor's
    text. A position past 0 in the log's ``organization`` order is refused (ValueError),
    as ``ledger events`` refuses it: a reader of it could skip an event."""
    if after is None or after == 0:
        after = Cursor() if log_chains.order(conn, schema) == "organization" else 0
    elif isinstance(after, int) and log_chains.order(conn, schema) == "organization":
        raise ValueError(
            f"after: the log is in the organization order, where position {after} (a "
            "notification_id) is no order across chains: give a cursor (next_after)"
        )
    if isinstance(after, Cursor):
        return _chains_page(conn, schema, after, limit, topics, provenance)
    return _global_page(conn, schema, after, limit, topics, provenance)


def _global_page(
    conn: psycopg.Connection[Any],
    schema: str,
    after: int,
    limit: int,
    topics: Sequence[str],
    provenance: stream.ProvenanceFilter,
) -> dict[str, Any]:
    records: list[dict[str, Any]] = []
    position = after
    while len(records) < limit:
        try:
            batch = stream.read_window(
                conn, schema, position, topics=topics, size=limit, provenance=provenance
            )
        except UndecodableEvent:
            if records:
                break
            raise
        if batch is None:
            break
        for record in batch.records[: limit - len(records)]:
            records.append(record.as_dict())
            position = record.position
        if len(records) < limit:
            position = batch.position
    return {"events": records, "next_after": position}


def _chains_page(
    conn: psycopg.Connection[Any],
    schema: str,
    cursor: Cursor,
    limit: int,
    topics: Sequence[str],
    provenance: stream.ProvenanceFilter,
) -> dict[str, Any]:
    records: list[dict[str, Any]] = []
    while len(records) < limit:
        try:
            batch = read_chains_window(
                conn,
                schema,
                cursor,
                topics=topics,
                size=limit - len(records),
                provenance=provenance,
            )
        except UndecodableEvent:
            if records:
                break
            raise
        if batch is None:
            break
        if len(records) + len(batch.records) > limit:  # a window may give one per chain
            taken = batch.records[: limit - len(records)]
            cursor = cursor.advanced({r.organization_id: r.chain_position for r in taken})
            records += [r.as_dict() for r in taken]
            break
        records += [r.as_dict() for r in batch.records]
        cursor = batch.cursor
    return {"events": records, "next_after": str(cursor)}
