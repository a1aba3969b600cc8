"""What every part of the distributed layout is made of (docs/scaling.md): where a table is,
a step of placing one, the refusal without Citus. Shared by the money tables' and the log's
placement (``distribution``) and the playback store's (``store_placement``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg.rows import tuple_row

from ledger.errors import ConfigurationError

Place = Literal["reference", "distributed", "local"]

COLUMN = "organization_id"


class NoCitus(ConfigurationError):
    """The server has no Citus: there is nothing to distribute over."""

    def __init__(self) -> None:
        super().__init__(
            "this server has no Citus (the citus extension is not installed): the "
            "distributed layout needs a Citus coordinator; on a single server the ledger "
            "needs none (docs/scaling.md)"
        )


@dataclass(frozen=True)
class Step:
    table: str
    place: Place
    done: bool  # False: it was in place already
    column: str = COLUMN  # what a distributed table is distributed by


def citus_version(conn: psycopg.Connection[Any]) -> str | None:
    """The Citus extension's version in this database, or None without Citus."""
    query = "SELECT extversion FROM pg_extension WHERE extname = 'citus'"
    row = conn.cursor(row_factory=tuple_row).execute(query).fetchone()
    return None if row is None else str(row[0])


def places_of(
    conn: psycopg.Connection[Any], schema: str, tables: Sequence[str]
) -> dict[str, Place]:
    """Where each of ``tables`` is, read from Citus's metadata (``local`` without Citus)."""
    found: dict[str, Place] = {t: "local" for t in tables}
    if citus_version(conn) is None:
        return found
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "SELECT c.relname, p.partmethod, p.repmodel FROM pg_dist_partition p"
            " JOIN pg_class c ON c.oid = p.logicalrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = ANY(%s)",
            (schema, list(found)),
        )
        .fetchall()
    )
    for table, method, model in rows:
        # 'h': hash-distributed; 'n' replicated ('t') to every node: reference. A Citus local
        # table ('n', 's': its one shard on the coordinator) counts as local here.
        if method == "h":
            found[str(table)] = "distributed"
        elif method == "n" and model == "t":
            found[str(table)] = "reference"
    return found
