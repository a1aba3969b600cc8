"""May this user play this content now? A read of the projected access row.

One indexed lookup on the (user_id, content_id) unique index; the row must exist and
not have expired at ``at`` (default: the database's now).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from ledger.domain.clock import canonical

_QUERY = (
    "SELECT EXISTS (SELECT 1 FROM content_access WHERE user_id = %s AND content_id = %s"
    " AND (expires_at IS NULL OR expires_at > coalesce(%s::timestamptz, now())))"
)


def can_play(
    conn: psycopg.Connection[Any], user_id: str, content_id: str, at: datetime | None = None
) -> bool:
    """``conn``'s search_path must name the ledger's schema (``ledger.db.connect`` does)."""
    row = conn.execute(_QUERY, (user_id, content_id, at), prepare=True).fetchone()
    return bool(row and row[0])


_LOOKUP = (
    "SELECT access_type, expires_at, (expires_at IS NULL OR expires_at > now())"
    " FROM content_access WHERE user_id = %s AND content_id = %s"
)


def lookup(conn: psycopg.Connection[Any], user_id: str, content_id: str) -> dict[str, Any]:
    """The player's answer, ``{"allowed", "access_type", "expires_at"}``, at the database's
    now; the kind and end of an access that has expired are given with ``allowed`` false."""
    row = conn.execute(_LOOKUP, (user_id, content_id), prepare=True).fetchone()
    if row is None:
        return {"allowed": False, "access_type": None, "expires_at": None}
    access_type, expires_at, current = row
    return {
        "allowed": bool(current),
        "access_type": access_type,
        "expires_at": None if expires_at is None else canonical(expires_at),
    }
