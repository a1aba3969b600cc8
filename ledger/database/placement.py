"""What every part of the distributed layout is made of (docs/scaling.md): where a table is,
a step of placing one, the refusal without Citus. Shared by the money tables' and the log's
placement (``distribution``) and the playback store's (``store_placement``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg import sql
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


def lock_local(conn: psycopg.Connection[Any], schema: str) -> None:
    """Every table of the schema still local (partitions each on its own), locked ACCESS
    EXCLUSIVE before ``ledger db distribute`` places any, in the order of their oids: the
    order in which ``pg_dump`` takes its ACCESS SHARE locks. Placing them one by one took the
    log's last (``distribution._log_keys``), after the money tables': a reader of the whole
    database that held the log and then asked for ``content`` deadlocked with it
    (``deadlock detected``, twice in the suite's distributed runs: a test's whole-database
    ``pg_dump`` beside another process's placing; docs/scaling.md, "The suite on the
    cluster"). Locked so, such a reader is waited for, or waits, and no cycle forms."""
    with conn.cursor(row_factory=tuple_row) as cursor:
        tables = cursor.execute(
            "SELECT n.nspname, c.relname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind IN ('r', 'p')"
            " AND NOT EXISTS (SELECT 1 FROM pg_dist_partition d WHERE d.logicalrelid = c.oid)"
            " ORDER BY c.oid",
            (schema,),
        ).fetchall()
    if tables:
        names = sql.SQL(", ").join(
            sql.SQL("ONLY {}").format(sql.Identifier(str(n), str(r))) for n, r in tables
        )
        conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(names))
