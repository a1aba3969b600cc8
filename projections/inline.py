"""Applies row changes with SQL, inside the transaction that appends their events.

This is the read-your-writes path: ``LedgerRecorder`` puts each change's ``statement``
after the command's events in the append's one transaction, so a command is answered
``accepted`` only once its rows are visible; a rebuild's catch-up runs them with
``apply_changes``, and a spilling fold (``projections.spill``) runs the cascades.
Statements are composed with ``psycopg.sql`` (identifiers) and bound parameters
(values), and cached by shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from psycopg import Cursor, sql

from projections.changes import RowChange, Update, Upsert


@lru_cache(maxsize=256)
def _upsert_sql(
    schema: str, table: str, key: tuple[str, ...], columns: tuple[str, ...], touch: bool
) -> sql.Composed:
    insert_columns = (*columns, "created_at", "updated_at")
    updated = [c for c in columns if c not in key and c != "id"]
    assignments: list[sql.Composable] = [
        sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in updated
    ]
    if touch:
        assignments.append(sql.SQL("updated_at = EXCLUDED.updated_at"))
    return sql.SQL(
        "INSERT INTO {table} ({columns}) VALUES ({values}) "
        "ON CONFLICT ({key}) DO UPDATE SET {assignments}"
    ).format(
        table=sql.Identifier(schema, table),
        columns=sql.SQL(", ").join(map(sql.Identifier, insert_columns)),
        values=sql.SQL(", ").join(sql.Placeholder() * len(insert_columns)),
        key=sql.SQL(", ").join(map(sql.Identifier, key)),
        assignments=sql.SQL(", ").join(assignments),
    )


def _where(match: tuple[str, ...]) -> sql.Composable:
    return sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder()) for c in match
    )


@lru_cache(maxsize=256)
def _update_sql(
    schema: str, table: str, match: tuple[str, ...], columns: tuple[str, ...], touch: bool
) -> sql.Composed:
    assignments: list[sql.Composable] = [
        sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder()) for c in columns
    ]
    if touch:
        assignments.append(sql.SQL("updated_at = {}").format(sql.Placeholder()))
    return sql.SQL("UPDATE {table} SET {assignments} WHERE {where}").format(
        table=sql.Identifier(schema, table),
        assignments=sql.SQL(", ").join(assignments),
        where=_where(match),
    )


@lru_cache(maxsize=256)
def _delete_sql(schema: str, table: str, match: tuple[str, ...]) -> sql.Composed:
    return sql.SQL("DELETE FROM {table} WHERE {where}").format(
        table=sql.Identifier(schema, table), where=_where(match)
    )


def statement(schema: str, change: RowChange) -> tuple[sql.Composed, list[Any]]:
    if isinstance(change, Upsert):
        columns = tuple(change.values)
        query = _upsert_sql(schema, change.table, change.key, columns, change.touch)
        return query, [*change.values.values(), change.at, change.at]
    if isinstance(change, Update):
        query = _update_sql(
            schema, change.table, tuple(change.match), tuple(change.values), change.at is not None
        )
        params = [*change.values.values()]
        if change.at is not None:
            params.append(change.at)
        return query, [*params, *change.match.values()]
    query = _delete_sql(schema, change.table, tuple(change.match))
    return query, list(change.match.values())


def apply_changes(cursor: Cursor[Any], schema: str, changes: Sequence[RowChange]) -> None:
    for change in changes:
        query, params = statement(schema, change)
        cursor.execute(query, params, prepare=True)
