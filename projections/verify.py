"""``ledger projections verify``: do the live tables equal a fresh fold of the log?

The fold is built into a scratch schema in a REPEATABLE READ transaction, so the
log and the live tables are read in the same snapshot (inline projections commit
with their events, so in any snapshot they must agree), then compared row by row
in SQL and thrown away (the transaction is rolled back).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from ledger.config import Settings
from ledger.db import connect
from projections import shadow
from projections.registry import KEYS, TABLES


@dataclass(frozen=True)
class Difference:
    table: str
    key: dict[str, Any]
    column: str | None  # None: the whole row is missing or extra
    live: Any
    log: Any

    def describe(self) -> str:
        key = ", ".join(f"{k}={v}" for k, v in self.key.items())
        if self.column is None:
            if self.live is None:
                return f"{self.table} ({key}): missing from the live table (the log has it)"
            return f"{self.table} ({key}): extra row in the live table (not in the log)"
        return f"{self.table} ({key}): {self.column} live={self.live!r} log={self.log!r}"


def _on_keys(table: str) -> sql.Composable:
    return sql.SQL(" AND ").join(
        sql.SQL("l.{c} = s.{c}").format(c=sql.Identifier(c)) for c in KEYS[table]
    )


def compare(conn: psycopg.Connection[Any], live: str, scratch: str, table: str) -> list[Difference]:
    keys = KEYS[table]
    names = {"live": sql.Identifier(live, table), "scratch": sql.Identifier(scratch, table)}
    found: list[Difference] = []
    missing = sql.SQL(
        "SELECT to_jsonb(s.*) FROM {scratch} s WHERE NOT EXISTS (SELECT 1 FROM {live} l WHERE {on})"
    ).format(on=_on_keys(table), **names)
    for (row,) in conn.execute(missing):
        found.append(Difference(table, {k: row[k] for k in keys}, None, None, row))
    extra = sql.SQL(
        "SELECT to_jsonb(l.*) FROM {live} l WHERE NOT EXISTS (SELECT 1 FROM {scratch} s WHERE {on})"
    ).format(on=_on_keys(table), **names)
    for (row,) in conn.execute(extra):
        found.append(Difference(table, {k: row[k] for k in keys}, None, row, None))
    changed = sql.SQL(
        "SELECT to_jsonb(l.*), to_jsonb(s.*) FROM {live} l JOIN {scratch} s ON {on} "
        "WHERE to_jsonb(l.*) <> to_jsonb(s.*)"
    ).format(on=_on_keys(table), **names)
    for live_row, log_row in conn.execute(changed):
        for column in sorted(set(live_row) | set(log_row)):
            if live_row.get(column) != log_row.get(column):
                found.append(
                    Difference(
                        table,
                        {k: log_row[k] for k in keys},
                        column,
                        live_row.get(column),
                        log_row.get(column),
                    )
                )
    return found


def verify(settings: Settings) -> list[Difference]:
    live = settings.schema
    scratch = f"{live}_verify_{uuid.uuid4().hex[:8]}"
    with connect(settings) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        try:
            shadow.build(conn, live, scratch, TABLES)
            differences: list[Difference] = []
            for table in TABLES:
                exists = conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = %s "
                    "AND tablename = %s)",
                    (live, table),
                ).fetchone()
                if not (exists and exists[0]):
                    differences.append(Difference(table, {}, "(table)", "missing", "expected"))
                    continue
                differences.extend(compare(conn, live, scratch, table))
            return differences
        finally:
            conn.rollback()
