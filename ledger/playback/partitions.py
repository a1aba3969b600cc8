"""The store's partitions: one per UTC day of business time, created on demand.

A partition is created in its own short transaction before the group that needs it is
written (DDL on the parent takes a strong lock for a moment, once a day), and dropped
whole by compaction once everything in it is folded into the base.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg
from psycopg import sql

PARENT = "playback_heartbeats"
_NAME = re.compile(r"\Aplayback_heartbeats_p(\d{8})\Z")


def name(day: date) -> str:
    return f"{PARENT}_p{day:%Y%m%d}"


def day_of(name_: str) -> date | None:
    match = _NAME.match(name_)
    return datetime.strptime(match.group(1), "%Y%m%d").date() if match else None


def day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def bounds(day_: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day_, time(0), UTC)
    return start, start + timedelta(days=1)


def existing(conn: psycopg.Connection[Any], schema: str) -> dict[date, str]:
    """The partitions there are, by day."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace "
        "WHERE p.relname = %s AND n.nspname = %s",
        (PARENT, schema),
    ).fetchall()
    found: dict[date, str] = {}
    for row in rows:
        relname = row["relname"] if isinstance(row, dict) else row[0]
        d = day_of(relname)
        if d is not None:
            found[d] = relname
    return found


def create(conn: psycopg.Connection[Any], schema: str, days: Iterable[date]) -> None:
    """Creates the days' partitions that are missing (``conn`` in autocommit), through the
    migration's ``playback_create_partition`` (it runs as the parent's owner). Another
    process creating the same one at the same moment is no error."""
    function = sql.Identifier(schema, "playback_create_partition")
    for d in sorted(set(days)):
        # created by another process meanwhile: no error
        with contextlib.suppress(psycopg.errors.DuplicateTable, psycopg.errors.UniqueViolation):
            conn.execute(sql.SQL("SELECT {}(%s)").format(function), (d,))
