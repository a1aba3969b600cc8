"""Applies row changes to rows held in memory: the rebuild's interpreter.

Same semantics as ``projections.inline`` (which does it in SQL), so that folding
the whole log gives exactly the rows the inline path left in the tables. Only the
final rows are kept: a row touched by a thousand heartbeats is one row here.
Secondary indexes serve the explicit cascades (rows of a deleted user or content).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from projections.changes import Delete, RowChange, Update, Upsert
from projections.registry import KEYS

Key = tuple[Any, ...]
Row = dict[str, Any]

# columns that cascades and Update/Delete match on, besides the key
INDEXED: dict[str, tuple[str, ...]] = {
    "content": ("creator_id", "id"),
    "content_access": ("user_id", "content_id"),
    "purchases": ("customer_id",),
    "video_playback": ("user_id", "content_id"),
}


class Fold:
    def __init__(self, tables: Iterable[str] | None = None) -> None:
        self.tables = frozenset(tables) if tables is not None else frozenset(KEYS)
        self.rows: dict[str, dict[Key, Row]] = {t: {} for t in self.tables}
        self._index: dict[tuple[str, str], defaultdict[Any, set[Key]]] = {
            (t, c): defaultdict(set) for t in self.tables for c in INDEXED.get(t, ())
        }

    def size(self) -> int:
        """Rows held, all tables together."""
        return sum(len(rows) for rows in self.rows.values())

    def adopt(self, table: str, key: Key, row: Row) -> None:
        """Holds a row read back from a table (``projections.spill``)."""
        self.rows[table][key] = row
        for column in INDEXED.get(table, ()):
            self._index[(table, column)][row.get(column)].add(key)

    def drain(self, table: str) -> dict[Key, Row]:
        """Gives up every row of ``table``."""
        rows, self.rows[table] = self.rows[table], {}
        for column in INDEXED.get(table, ()):
            self._index[(table, column)] = defaultdict(set)
        return rows

    def apply(self, changes: Iterable[RowChange]) -> None:
        for change in changes:
            if change.table not in self.tables:
                continue
            if isinstance(change, Upsert):
                self._upsert(change)
            elif isinstance(change, Update):
                for key in self._matching(change.table, change.match):
                    self._set(change.table, key, change.values, change.at)
            else:
                self._delete(change)

    def _upsert(self, change: Upsert) -> None:
        table = self.rows[change.table]
        key = tuple(change.values[c] for c in change.key)
        row = table.get(key)
        if row is None:
            row = dict(change.values)
            row["created_at"] = change.at
            row["updated_at"] = change.at
            table[key] = row
            for column in INDEXED.get(change.table, ()):
                self._index[(change.table, column)][row.get(column)].add(key)
            return
        values = {c: v for c, v in change.values.items() if c != "id" and c not in change.key}
        self._set(change.table, key, values, change.at if change.touch else None)

    def _set(self, table: str, key: Key, values: dict[str, Any], at: str | None) -> None:
        row = self.rows[table][key]
        for column in INDEXED.get(table, ()):
            if column in values and values[column] != row.get(column):
                self._index[(table, column)][row.get(column)].discard(key)
                self._index[(table, column)][values[column]].add(key)
        row.update(values)
        if at is not None:
            row["updated_at"] = at

    def _delete(self, change: Delete) -> None:
        for key in self._matching(change.table, change.match):
            row = self.rows[change.table].pop(key)
            for column in INDEXED.get(change.table, ()):
                self._index[(change.table, column)][row.get(column)].discard(key)

    def find(self, table: str, match: dict[str, Any]) -> Row | None:
        """The row matching ``match``, or None: content by its id alone, though its key
        carries the organization (migration 0015)."""
        keys = self._matching(table, match)
        return self.rows[table][keys[0]] if keys else None

    def _matching(self, table: str, match: dict[str, Any]) -> list[Key]:
        rows = self.rows[table]
        key_columns = KEYS[table]
        if set(match) == set(key_columns):
            key = tuple(match[c] for c in key_columns)
            return [key] if key in rows else []
        indexed = [c for c in match if c in INDEXED.get(table, ())]
        if indexed:
            candidates = list(self._index[(table, indexed[0])].get(match[indexed[0]], ()))
        else:
            candidates = list(rows)
        return [k for k in candidates if all(rows[k].get(c) == v for c, v in match.items())]
