"""The exported row types match the tables, and read real rows."""

from __future__ import annotations

import types
import typing
from typing import Any

import psycopg
import pytest

from ledger.service import Ledger
from projections.rows import ROW_TYPES
from tests.support import append, catalogue, complete, grant, play

Conn = psycopg.Connection[Any]


def columns(conn: Conn, table: str) -> dict[str, tuple[bool, bool]]:
    """column -> (nullable, has a default)"""
    rows = conn.execute(
        "SELECT column_name, is_nullable = 'YES', column_default IS NOT NULL FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = %s",
        (table,),
    ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def optional(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation) or (
        isinstance(annotation, types.UnionType) and type(None) in annotation.__args__
    )


@pytest.mark.parametrize("table", sorted(ROW_TYPES))
def test_models_have_exactly_the_tables_columns(conn: Conn, table: str) -> None:
    row, new = ROW_TYPES[table]
    found = columns(conn, table)
    assert set(row.model_fields) == set(found) == set(new.model_fields)
    for name, (nullable, has_default) in found.items():
        assert optional(row.model_fields[name].annotation) is nullable, (table, name)
        assert (not new.model_fields[name].is_required()) is (nullable or has_default), (
            table,
            name,
        )


def test_models_read_projected_rows(ledger_app: Ledger, conn: Conn) -> None:
    append(ledger_app, *catalogue(), complete("pi_1"), grant("bob"), play("alice", 10))
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        for table, (row, _) in ROW_TYPES.items():
            rows = cursor.execute(f"SELECT * FROM {table}").fetchall()
            assert rows and all(row.model_validate(r) for r in rows)
