"""Builds projected tables from the log into a shadow schema.

The tables are created by the very migrations that created the live ones (run
with ``search_path`` set to the shadow schema), their constraints and indexes are
dropped, the folded rows are loaded with COPY, and the constraints and indexes are
re-created with their own names: loading into bare tables and indexing once is
much faster than maintaining indexes row by row. ``rebuild`` swaps the result in;
``verify`` compares it with the live tables and throws it away.
"""

from __future__ import annotations

import gc
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from ledger.database import migrations
from ledger.errors import ConfigurationError
from ledger.playback import fold as playback
from ledger.privacy.store import all_names
from ledger.privacy.subjects import resolve
from ledger.upkeep import source
from projections.registry import TABLES, changes_for
from projections.spill import SpillingFold

# Rows the fold holds before it writes them to the shadow tables: bounds the rebuild's
# memory (about 1 KB a row) whatever the size of the log and the tables. A row touched
# again after that is read back, so a budget larger than the rows one batch of events
# touches keeps that rare. LEDGER_REBUILD_ROW_BUDGET sets it; ROW_BUDGET, when set,
# overrides it (the tests shrink it).
DEFAULT_ROW_BUDGET = 50_000
ROW_BUDGET: int | None = None


def row_budget() -> int:
    """The row budget; a ``ConfigurationError`` naming the variable if it is not a
    whole number of at least 1."""
    if ROW_BUDGET is not None:
        return ROW_BUDGET
    text = os.environ.get("LEDGER_REBUILD_ROW_BUDGET")
    if text is None:
        return DEFAULT_ROW_BUDGET
    value = text.strip()
    if not value.isascii() or not value.isdigit() or int(value) < 1:
        raise ConfigurationError(
            f"LEDGER_REBUILD_ROW_BUDGET={text!r}: a whole number of rows of at least 1 "
            f"(default {DEFAULT_ROW_BUDGET}), e.g. 20000"
        )
    return int(value)


def create_schema(conn: psycopg.Connection[Any], live: str, tag: str) -> str:
    """Creates a schema of a name no one else holds (``<live>_<tag>_<random>``) in the
    caller's transaction, and returns it: a rebuild or a verify only ever drops the
    schemas it created itself, in the same transaction."""
    while True:
        name = f"{live}_{tag}_{secrets.token_hex(4)}"
        taken = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (name,)).fetchone()
        if taken is None:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
            return name


@dataclass
class ShadowBuild:
    schema: str
    tables: tuple[str, ...]
    position: int
    events: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    spills: int = 0  # times the fold's rows went to the tables to keep memory bounded


def _set_path(conn: psycopg.Connection[Any], *schemas: str) -> None:
    conn.execute(
        sql.SQL("SET LOCAL search_path TO {}").format(
            sql.SQL(", ").join(sql.Identifier(s) for s in schemas)
        )
    )


def _definitions(
    conn: psycopg.Connection[Any], schema: str, table: str
) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """(constraints as (name, type, definition), indexes as (name, definition)),
    rendered with search_path = ``schema``, so they name its objects unqualified."""
    constraints = conn.execute(
        "SELECT c.conname, c.contype, pg_get_constraintdef(c.oid) FROM pg_constraint c "
        "JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE n.nspname = %s AND t.relname = %s AND c.contype IN ('p', 'u', 'c', 'f', 'x') "
        "ORDER BY c.contype = 'f', c.conname",
        (schema, table),
    ).fetchall()
    indexes = conn.execute(
        "SELECT i.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x "
        "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
        "JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE n.nspname = %s AND t.relname = %s "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid "
        "AND c.conrelid = x.indrelid) ORDER BY i.relname",
        (schema, table),
    ).fetchall()
    return [(r[0], r[1], r[2]) for r in constraints], [(r[0], r[1]) for r in indexes]


def _columns(conn: psycopg.Connection[Any], schema: str, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT a.attname FROM pg_attribute a JOIN pg_class t ON t.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE n.nspname = %s AND t.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum",
        (schema, table),
    ).fetchall()
    return [r[0] for r in rows]


def build(
    conn: psycopg.Connection[Any],
    live: str,
    shadow: str,
    tables: tuple[str, ...] = TABLES,
    upto: int | None = None,
    on_events: Callable[[int], None] | None = None,
) -> ShadowBuild:
    """Fills ``shadow`` (a schema the caller created with ``create_schema``, empty) with
    ``tables`` folded from the log up to ``upto`` (default: the head now). Runs in the
    caller's transaction; nothing outside ``shadow`` changes.

    Foreign keys of tables left out of ``tables`` point at the live tables, so a
    single table can be rebuilt against the live ones it references.
    """
    budget = row_budget()
    _set_path(conn, shadow)
    for migration in migrations.projection_migrations():
        conn.execute(migration.up.encode())
    saved = {t: _definitions(conn, shadow, t) for t in tables}
    for table in TABLES:
        if table not in tables:
            conn.execute(sql.SQL("DROP TABLE {} CASCADE").format(sql.Identifier(shadow, table)))
    for table in tables:
        constraints, indexes = saved[table]
        for name, _, _ in constraints:
            conn.execute(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {} CASCADE").format(
                    sql.Identifier(shadow, table), sql.Identifier(name)
                )
            )
        for name, _ in indexes:
            conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(shadow, name)))

    position = source.head(conn, live) if upto is None else upto
    result = ShadowBuild(shadow, tables, position)
    with _without_cycle_collection():
        _fold_and_load(conn, live, shadow, tables, result, on_events, budget)

    for table in tables:
        constraints, indexes = saved[table]
        for name, kind, definition in constraints:
            # a foreign key to a table not rebuilt here points at the live table
            if kind == "f" and _referenced_table(definition) not in tables:
                _set_path(conn, live)
            else:
                _set_path(conn, shadow)
            conn.execute(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                    sql.Identifier(shadow, table), sql.Identifier(name), _trusted(definition)
                )
            )
        _set_path(conn, shadow)
        for _, definition in indexes:
            conn.execute(_trusted(definition))
    _set_path(conn, live)
    playback.overlay(conn, live, shadow, tables)  # heartbeats live in the playback store
    return result


@contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """The fold makes millions of small acyclic objects (events, row changes, rows), all
    freed by reference counting; the cycle collector only re-scans the growing fold,
    again and again (a large share of a rebuild's time: docs/performance.md). It is off
    while folding."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _fold_and_load(
    conn: psycopg.Connection[Any],
    live: str,
    shadow: str,
    tables: tuple[str, ...],
    result: ShadowBuild,
    on_events: Callable[[int], None] | None,
    budget: int,
) -> None:
    """Folds the log up to ``result.position`` into the shadow tables, memory bounded."""
    columns = {table: _columns(conn, shadow, table) for table in tables}
    fold = SpillingFold(conn, shadow, tables, columns, budget)
    only = frozenset(tables)
    names = all_names(conn, live)  # the people the log names by subjects (docs/privacy.md)
    for batch in source.events(conn, live, 0, result.position):
        fold.apply(resolve(changes_for((event for _, event in batch), only), names))
        result.events += len(batch)
        if on_events is not None:
            on_events(len(batch))
    result.rows.update(fold.finish())
    result.spills = fold.spills


def _referenced_table(definition: str) -> str:
    return definition.split("REFERENCES", 1)[1].strip().split("(", 1)[0].strip()


def _trusted(definition: str) -> sql.SQL:
    """DDL that PostgreSQL itself rendered (pg_get_constraintdef, pg_get_indexdef)."""
    return sql.SQL(definition)
