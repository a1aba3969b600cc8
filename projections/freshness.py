"""Projected tables known not to reflect the log, and the durable mark that says so.

Inline projections keep every existing table at the log's head, except a table that
was created empty over a non-empty log (``ledger db upgrade`` after ``db downgrade``)
and not filled yet. Such a table is marked in ``ledger_stale_projections`` (migration
``log_guards``) in the very transaction that creates it, and the rebuild that fills it
clears the mark in the transaction of its switch. So a killed upgrade or rebuild leaves
the mark behind, never an unmarked empty table: appends refuse while any mark is
there (``ledger.api.open_ledger``, and the log's statement trigger
``ledger_events_refuse_while_stale``, which is enabled with the first mark and disabled
with the last, in the same transactions, so that appends pay nothing for it otherwise),
``ledger projections status`` reports the table as stale, and the next ``ledger db
upgrade`` fills it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

MARKS = "ledger_stale_projections"
GATE = "ledger_events_refuse_while_stale"


def _has_marks(conn: psycopg.Connection[Any], schema: str) -> bool:
    """Whether the schema holds the marks' table (migrated far enough)."""
    name = sql.Identifier(schema, MARKS).as_string(conn)
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def log_has_events(conn: psycopg.Connection[Any], schema: str) -> bool:
    row = conn.execute(
        sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(schema, "ledger_events"))
    ).fetchone()
    return bool(row and row[0])


def mark(conn: psycopg.Connection[Any], schema: str, tables: Sequence[str], reason: str) -> None:
    """Marks ``tables`` stale, in the caller's transaction."""
    if not _has_marks(conn, schema):
        return
    query = sql.SQL(
        "INSERT INTO {} (name, reason) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING"
    ).format(sql.Identifier(schema, MARKS))
    for table in tables:
        conn.execute(query, (table, reason))
    if tables:
        _gate(conn, schema, "ENABLE")


def _gate(conn: psycopg.Connection[Any], schema: str, verb: str) -> None:
    """Switches the gate, in the caller's transaction. On Citus, where the log may be a
    distributed table, Citus refuses ``ALTER TABLE ... ENABLE TRIGGER`` on it ("triggers
    are not supported on distributed tables") unless ``citus.enable_unsafe_triggers`` is
    on in the session: set for this transaction only (the gate's trigger touches no other
    shard: it reads the reference table of marks)."""
    if _on_citus(conn):
        conn.execute("SELECT set_config('citus.enable_unsafe_triggers', 'on', true)")
    conn.execute(
        sql.SQL("ALTER TABLE {} {} TRIGGER {}").format(
            sql.Identifier(schema, "ledger_events"), sql.SQL(verb), sql.Identifier(GATE)
        )
    )


def _on_citus(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')")
    found = row.fetchone()
    return bool(found and found[0])


def stale(conn: psycopg.Connection[Any], schema: str) -> dict[str, str]:
    """The tables marked stale, with the reason."""
    if not _has_marks(conn, schema):
        return {}
    rows = conn.execute(
        sql.SQL("SELECT name, reason FROM {} ORDER BY name").format(sql.Identifier(schema, MARKS))
    ).fetchall()
    return {row[0]: row[1] for row in rows}


def clear(conn: psycopg.Connection[Any], schema: str, tables: Sequence[str]) -> None:
    """Clears the marks of ``tables``, in the caller's transaction (a rebuild's switch,
    which holds the log's EXCLUSIVE lock); opens the gate once no mark is left."""
    if not _has_marks(conn, schema):
        return
    cleared = conn.execute(
        sql.SQL("DELETE FROM {} WHERE name = ANY(%s)").format(sql.Identifier(schema, MARKS)),
        (list(tables),),
    ).rowcount
    if cleared and not stale(conn, schema):
        _gate(conn, schema, "DISABLE")
