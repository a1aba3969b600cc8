"""A fold whose memory is bounded: beyond a budget of rows, rows move to the shadow tables.

The rebuild folds the log in memory (``projections.fold``) because a row touched by a
thousand heartbeats should be written once. Kept whole, the fold grows with the final
tables. Here, when the rows held pass ``budget`` after a batch, they are all written to
the shadow tables with COPY ("spilled") and memory starts again, so memory is bounded
by the budget and one batch, however long the log and however large the tables.

Every row is in exactly one place, memory or its table, and gets every change once, in
log order:

* before a batch, the rows its changes name by key (an ``Upsert``, or an ``Update`` or
  ``Delete`` matching the whole key) are taken back from the tables into memory
  (``DELETE ... RETURNING``);
* a change matching other columns (the cascades of a deleted user or content) applies
  to the rows in memory and, as SQL with the inline path's own statements, to the
  rows in the tables.

Rows come back as text, the form the fold holds them in (keys and matched values are
the events' strings; COPY reads the rest back exactly).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import sql

from projections.changes import RowChange, Upsert
from projections.fold import Fold, Key
from projections.inline import statement
from projections.registry import KEYS


class SpillingFold:
    def __init__(
        self,
        conn: psycopg.Connection[Any],
        schema: str,
        tables: Sequence[str],
        columns: dict[str, list[str]],
        budget: int,
        before_first_write: Callable[[bool, int], None] | None = None,
    ) -> None:
        self.conn = conn
        self.schema = schema
        self.tables = tuple(tables)
        self.columns = columns
        self.budget = budget
        self.fold = Fold(tables)
        self.spilled: set[str] = set()  # tables with rows written out
        self.indexed: set[str] = set()  # tables given a key index to take rows back by
        self.spills = 0
        # called once before rows are first written, with whether this is the last write
        # (every event folded) and the rows held: the caller may drop the tables' keys and
        # indexes then (a few rows written once, at the end, need not have them dropped)
        self.before_first_write = before_first_write

    def apply(self, changes: Sequence[RowChange]) -> None:
        """Applies one batch's changes, then spills if the rows held exceed the budget."""
        if self.spilled:
            self._take_back(changes)
        for change in changes:
            if change.table not in self.fold.tables:
                continue
            if change.table in self.spilled and not _keyed(change):
                query, params = statement(self.schema, change)
                self.conn.execute(query, params)
            self.fold.apply((change,))
        if self.fold.size() > self.budget:
            self.spill()

    def spill(self, last: bool = False) -> None:
        """Writes every row held to its table and forgets it. The last write (``finish``)
        builds no key index: no row will be taken back after it."""
        if self.before_first_write is not None:
            self.before_first_write(last, self.fold.size())
            self.before_first_write = None
        for table in self.tables:
            rows = self.fold.drain(table)
            if not rows:
                continue
            _copy(self.conn, self.schema, table, self.columns[table], rows)
            self.spilled.add(table)
            if not last and table not in self.indexed:
                self.indexed.add(table)
                self.conn.execute(
                    sql.SQL("CREATE INDEX {} ON {} ({})").format(
                        sql.Identifier(_key_index(table)),
                        sql.Identifier(self.schema, table),
                        sql.SQL(", ").join(
                            sql.SQL("({}::text)").format(sql.Identifier(c)) for c in KEYS[table]
                        ),
                    )
                )
        self.spills += 1

    def finish(self) -> dict[str, int]:
        """Spills the rest; returns the row count of each table."""
        self.spill(last=True)
        counts: dict[str, int] = {}
        for table in self.tables:
            if table in self.indexed:
                self.conn.execute(
                    sql.SQL("DROP INDEX {}").format(sql.Identifier(self.schema, _key_index(table)))
                )
            row = self.conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(self.schema, table))
            ).fetchone()
            counts[table] = int(row[0]) if row else 0
        return counts

    def _take_back(self, changes: Sequence[RowChange]) -> None:
        wanted: dict[str, set[Key]] = {}
        for change in changes:
            if change.table in self.spilled and _keyed(change):
                key = _key_of(change)
                if key not in self.fold.rows[change.table]:
                    wanted.setdefault(change.table, set()).add(key)
        for table, keys in wanted.items():
            key_columns = KEYS[table]
            columns = self.columns[table]
            query = sql.SQL(
                "DELETE FROM {table} AS t WHERE ({key}) IN (SELECT * FROM unnest({arrays})) "
                "RETURNING {columns}"
            ).format(
                table=sql.Identifier(self.schema, table),
                key=_text_key(key_columns, "t."),
                arrays=sql.SQL(", ").join(
                    sql.SQL("{}::text[]").format(sql.Placeholder()) for _ in key_columns
                ),
                columns=sql.SQL(", ").join(
                    sql.SQL("t.{}::text").format(sql.Identifier(c)) for c in columns
                ),
            )
            arrays = [[k[i] for k in keys] for i in range(len(key_columns))]
            for values in self.conn.execute(query, arrays).fetchall():
                row = dict(zip(columns, values, strict=True))
                self.fold.adopt(table, tuple(row[c] for c in key_columns), row)


def _text_key(key_columns: tuple[str, ...], prefix: str = "") -> sql.Composable:
    """The key as text (uuid and text keys alike), as the spill index holds it."""
    return sql.SQL(", ").join(
        sql.SQL(prefix + "{}::text").format(sql.Identifier(c)) for c in key_columns
    )


def _keyed(change: RowChange) -> bool:
    if isinstance(change, Upsert):
        return True
    return set(change.match) == set(KEYS[change.table])


def _key_of(change: RowChange) -> Key:
    if isinstance(change, Upsert):
        return tuple(change.values[c] for c in change.key)
    return tuple(change.match[c] for c in KEYS[change.table])


def _key_index(table: str) -> str:
    return f"ledger_spill_{table}_key"


def _copy(
    conn: psycopg.Connection[Any],
    schema: str,
    table: str,
    columns: list[str],
    rows: dict[Key, dict[str, Any]],
) -> None:
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(schema, table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with conn.cursor() as cursor, cursor.copy(copy_sql) as copy:
        for key in sorted(rows):
            row = rows[key]
            copy.write_row(tuple(row.get(c) for c in columns))
