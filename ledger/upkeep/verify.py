"""``ledger projections verify``: do the live tables equal a fresh fold of the log?

The fold is built into a scratch schema in a REPEATABLE READ transaction, so the
log and the live tables are read in the same snapshot (inline projections commit
with their events, so in any snapshot they must agree), then compared row by row
in SQL and thrown away (the transaction is rolled back).

Before its snapshot is taken, the transaction locks the live tables in ACCESS SHARE
mode: a rebuild's switch (which needs ACCESS EXCLUSIVE) either committed before, and
the snapshot sees the new tables with their rows, or waits until verify ends. Without
the lock, a switch committed after the snapshot would show verify new tables that its
snapshot sees empty: every row "missing".

A log that cannot be folded (an event that does not decode, or events whose rows break
a table's constraints: a log altered behind the ledger's back) is a finding too, one
line, like each difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from ledger.config import Settings
from ledger.database import distribution, migrations
from ledger.database.connections import connect
from ledger.log.shapes import UndecodableEvent
from ledger.upkeep import shadow, source
from projections import freshness
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
        if self.column == "(table)":
            return f"{self.table}: the table is missing (`ledger projections rebuild` restores it)"
        if self.column is None:
            if self.live is None:
                return f"{self.table} ({key}): missing from the live table (the log has it)"
            return f"{self.table} ({key}): extra row in the live table (not in the log)"
        return f"{self.table} ({key}): {self.column} live={self.live!r} log={self.log!r}"


@dataclass(frozen=True)
class Unfolded:
    """Something that is not a row difference: the log could not be folded, or a table
    is known to be stale."""

    table: str
    message: str

    def describe(self) -> str:
        return self.message


Finding = Difference | Unfolded


def _on_keys(table: str) -> sql.Composable:
    return sql.SQL(" AND ").join(
        sql.SQL("l.{c} = s.{c}").format(c=sql.Identifier(c)) for c in KEYS[table]
    )


def compare(
    conn: psycopg.Connection[Any],
    live: str,
    scratch: str,
    table: str,
    placed: bool = False,
) -> list[Difference]:
    """The differences of one live table from its fold in ``scratch``. ``placed``: the
    live table is a Citus reference or distributed table, which Citus does not join with a
    local one directly, so its rows are first read into the coordinator (a temporary table,
    gone with the transaction); on a single server the tables are joined as they are."""
    keys = KEYS[table]
    names: dict[str, sql.Composable] = {
        "live": sql.Identifier(live, table),
        "scratch": sql.Identifier(scratch, table),
    }
    if placed:
        conn.execute(
            sql.SQL("CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT * FROM {}").format(
                sql.Identifier(f"ledger_verify_{table}"), names["live"]
            )
        )
        names["live"] = sql.Identifier(f"ledger_verify_{table}")
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


def _lock_live_tables(conn: psycopg.Connection[Any], live: str) -> set[str]:
    """ACCESS SHARE on every live table that exists, before the transaction's snapshot
    (SAVEPOINT and LOCK take none); returns the tables that exist."""
    present = set()
    for table in TABLES:
        conn.execute("SAVEPOINT ledger_verify_lock")
        try:
            conn.execute(
                sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(sql.Identifier(live, table))
            )
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
            conn.execute("ROLLBACK TO SAVEPOINT ledger_verify_lock")
        else:
            present.add(table)
    return present


def _fold(conn: psycopg.Connection[Any], live: str) -> str | Unfolded:
    """Folds the log into a scratch schema: its name, or why the log could not be folded."""
    conn.execute("SAVEPOINT ledger_verify_fold")
    try:
        scratch = shadow.create_schema(conn, live, "v")
        shadow.build(conn, live, scratch, TABLES)
    except UndecodableEvent as error:
        conn.execute("ROLLBACK TO SAVEPOINT ledger_verify_fold")
        return Unfolded("ledger_events", f"the log cannot be folded: {error}")
    except (psycopg.errors.IntegrityError, psycopg.errors.DataError) as error:
        conn.execute("ROLLBACK TO SAVEPOINT ledger_verify_fold")
        first = str(error).strip().splitlines()[0]
        detail = (error.diag.message_detail or "").strip().replace("\n", " ")
        return Unfolded(
            "ledger_events",
            f"the log does not fold into valid tables ({first}{'; ' + detail if detail else ''}): "
            "it holds events the ledger would not have written; `ledger audit verify` checks it",
        )
    return scratch


def verify(settings: Settings) -> list[Finding]:
    live = settings.schema
    with connect(settings) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        try:
            present = _lock_live_tables(conn, live)  # before the snapshot
            source.sequential_on_citus(conn, live)
            migrations.require_log(conn, live)
            findings: list[Finding] = [
                Unfolded(name, f"{name} is marked stale ({reason}): run `ledger db upgrade`")
                for name, reason in freshness.stale(conn, live).items()
            ]
            placed = distribution.places(conn, live)
            scratch = _fold(conn, live)
            if isinstance(scratch, Unfolded):
                return [*findings, scratch]
            for table in TABLES:
                if table not in present:
                    findings.append(Difference(table, {}, "(table)", "missing", "expected"))
                    continue
                elsewhere = placed.get(table, "local") != "local"
                findings.extend(compare(conn, live, scratch, table, elsewhere))
            return findings
        finally:
            conn.rollback()
