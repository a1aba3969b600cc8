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

from ledger.database import distribution, migrations
from ledger.errors import ConfigurationError
from ledger.playback import fold as playback
from ledger.privacy.store import all_names
from ledger.privacy.subjects import resolve
from ledger.upkeep import owners, source
from projections.registry import TABLES, changes_for
from projections.spill import SpillingFold

# Rows the fold holds before it writes them to the shadow tables: bounds the rebuild's
# memory (about 1 KB a row) whatever the size of the log and the tables. A row touched
# again after that is read back, so a budget larger than the rows one batch of events
# touches keeps that rare. LEDGER_REBUILD_ROW_BUDGET sets it; ROW_BUDGET, when set,
# overrides it (the tests shrink it).
DEFAULT_ROW_BUDGET = 50_000
ROW_BUDGET: int | None = None
# Rows few enough to load, all at the end, into the tables with their keys and indexes on
# (checked and indexed row by row): cheaper than dropping and re-building them, each index
# build a file synced to disk on PostgreSQL 15. Above it, or when rows are written before
# the end, they are dropped first and re-created after the load, as for a large log.
KEYED_LOAD_ROWS = 1_000


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
    # foreign keys to live tables Citus holds (table, name, definition): a local shadow
    # table cannot reference them, so the switch adds them once the table is in place
    deferred: list[tuple[str, str, str]] = field(default_factory=list)


def _path(*schemas: str) -> sql.Composed:
    """``SET LOCAL search_path``, as one statement of a batch."""
    return sql.SQL("SET LOCAL search_path TO {};").format(
        sql.SQL(", ").join(sql.Identifier(s) for s in schemas)
    )


def _definitions(
    conn: psycopg.Connection[Any], schema: str, tables: tuple[str, ...]
) -> dict[str, tuple[list[tuple[str, str, str]], list[tuple[str, str]]]]:
    """Per table, (constraints as (name, type, definition), indexes as (name, definition)),
    rendered with search_path = ``schema``, so they name its objects unqualified; one
    round trip for all the tables. CHECK constraints are not among them: they stay on the
    tables while the rows are loaded (checking a row as it arrives costs no more than the
    scan re-adding them would, and PostgreSQL renders some of them back in another form
    than the migration wrote, so a re-added CHECK would differ from a migrated one)."""
    found: dict[str, tuple[list[tuple[str, str, str]], list[tuple[str, str]]]] = {
        t: ([], []) for t in tables
    }
    rows = conn.execute(
        "SELECT t.relname, 'c', c.conname, c.contype::text, pg_get_constraintdef(c.oid), "
        "c.contype = 'f' FROM pg_constraint c "
        "JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE n.nspname = %(schema)s AND t.relname = ANY(%(tables)s) "
        "AND c.contype IN ('p', 'u', 'f', 'x') "
        "UNION ALL "
        "SELECT t.relname, 'i', i.relname, '', pg_get_indexdef(x.indexrelid), false "
        "FROM pg_index x "
        "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
        "JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE n.nspname = %(schema)s AND t.relname = ANY(%(tables)s) "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid "
        "AND c.conrelid = x.indrelid) ORDER BY 1, 2, 6, 3",
        {"schema": schema, "tables": list(tables)},
    ).fetchall()
    for table, what, name, kind, definition, _ in rows:
        if what == "c":
            found[table][0].append((name, kind, definition))
        else:
            found[table][1].append((name, definition))
    return found


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
    chains: source.ChainReader | None = None,
) -> ShadowBuild:
    """Fills ``shadow`` (a schema the caller created with ``create_schema``, empty) with
    ``tables`` folded from the log up to ``upto`` (default: the head now). Runs in the
    caller's transaction; nothing outside ``shadow`` changes.

    Foreign keys of tables left out of ``tables`` point at the live tables, so a
    single table can be rebuilt against the live ones it references.

    With ``chains`` (a log in the ``organization`` order: ``source.by_chain``) the log is
    read by it, everything visible now, and it keeps where each chain was read up to for
    the caller's catch-up; ``upto`` is then only the position reported until it is read.
    """
    budget = row_budget()
    # the DDL goes in a few round trips, not one per statement: a small log's rebuild or
    # verify is mostly this DDL (about a hundred statements)
    conn.execute(
        sql.Composed(
            [
                _path(shadow),
                *(sql.SQL(m.up) for m in migrations.projection_migrations()),
            ]
        )
    )
    saved: dict[str, tuple[list[tuple[str, str, str]], list[tuple[str, str]]]] = {}

    def loosen(drops: list[sql.Composable]) -> None:
        """Runs ``drops``, then drops the constraints and indexes the rows are loaded
        without, remembered first in ``saved`` (re-created after the load)."""
        saved.update(_definitions(conn, shadow, tables))
        for table in tables:
            constraints, indexes = saved[table]
            drops += [
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {} CASCADE;").format(
                    sql.Identifier(shadow, table), sql.Identifier(name)
                )
                for name, _, _ in constraints
            ]
            drops += [
                sql.SQL("DROP INDEX IF EXISTS {};").format(sql.Identifier(shadow, name))
                for name, _ in indexes
            ]
        if drops:
            conn.execute(sql.Composed(drops))

    def first_write(last: bool, rows: int) -> None:
        """Before the fold first writes rows: the keys and indexes stay on only for a
        few rows written once, at the end."""
        if not last or rows > KEYED_LOAD_ROWS:
            loosen([])

    left_out = [t for t in TABLES if t not in tables]
    if left_out:
        # the rebuilt tables' foreign keys to the tables left out go with them (CASCADE)
        # and come back pointing at the live tables: loosened now, re-added after the load
        loosen(
            [
                sql.SQL("DROP TABLE {} CASCADE;").format(sql.Identifier(shadow, table))
                for table in left_out
            ]
        )

    position = source.head(conn, live) if upto is None else upto
    result = ShadowBuild(shadow, tables, position)
    with _without_cycle_collection():
        # a small log's rows (KEYED_LOAD_ROWS), all held to the end, are loaded once into
        # the tables as migrated (in TABLES order, each table after those it references):
        # no key or index is dropped and re-created (each index built is a file synced to
        # disk, the most of a small rebuild's time on PostgreSQL 15)
        _fold_and_load(
            conn,
            live,
            shadow,
            tables,
            result,
            on_events,
            budget,
            None if saved else first_write,
            chains,
        )

    adds: list[sql.Composable] = []
    placed = distribution.places(conn, live) if len(tables) < len(TABLES) else {}
    for table in tables if saved else ():
        constraints, indexes = saved[table]
        for name, kind, definition in constraints:
            # a foreign key to a table not rebuilt here points at the live table; on Citus
            # one to a table placed on the workers waits for the switch (Citus refuses a
            # key from a local table to a distributed one)
            referenced = _referenced_table(definition) if kind == "f" else ""
            if kind == "f" and placed.get(referenced, "local") != "local":
                result.deferred.append((table, name, definition))
                continue
            if kind == "f" and referenced not in tables:
                adds.append(_path(live))
            else:
                adds.append(_path(shadow))
            adds.append(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {};").format(
                    sql.Identifier(shadow, table), sql.Identifier(name), _trusted(definition)
                )
            )
        adds.append(_path(shadow))
        adds += [sql.Composed([_trusted(definition), sql.SQL(";")]) for _, definition in indexes]
    adds.append(_path(live))
    conn.execute(sql.Composed(adds))
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
    loosen: Callable[[bool, int], None] | None,
    chains: source.ChainReader | None = None,
) -> None:
    """Folds the log up to ``result.position`` (or all ``chains`` reads) into the shadow
    tables, memory bounded; ``loosen`` is called before rows are first written (whether it
    is the last write, the rows held)."""
    columns = {table: _columns(conn, shadow, table) for table in tables}
    fold = SpillingFold(conn, shadow, tables, columns, budget, loosen)
    only = frozenset(tables)
    names = all_names(conn, live)  # the people the log names by subjects (docs/privacy.md)
    batches = (
        source.events(conn, live, 0, result.position)
        if chains is None
        else chains.events(conn, live)
    )
    for batch in batches:
        changes = resolve(changes_for((event for _, event in batch), only), names)
        fold.apply(owners.fill(conn, changes, (shadow, live), fold.fold))
        result.events += len(batch)
        if on_events is not None:
            on_events(len(batch))
    if chains is not None:
        result.position = max(result.position, chains.head)
    result.rows.update(fold.finish())
    result.spills = fold.spills


def _referenced_table(definition: str) -> str:
    return definition.split("REFERENCES", 1)[1].strip().split("(", 1)[0].strip()


def _trusted(definition: str) -> sql.SQL:
    """DDL that PostgreSQL itself rendered (pg_get_constraintdef, pg_get_indexdef)."""
    return sql.SQL(definition)
