"""The distributed layout on a Citus coordinator (``ledger db distribute``, docs/scaling.md).

No rule of the ledger spans two organizations, so the tables of the money side are split by
``organization_id``: each organization's rows live on one worker, colocated (a purchase, its
access rows and, later, its events on the same worker, so one organization's work is one
worker's). What every organization shares is a reference table, a copy on every node:
``users`` (a customer buys from many organizations), ``organizations`` and ``content`` (the
reviewed foreign keys of ``video_playback`` point at content, and ``video_playback`` carries
no organization: it stays on the coordinator, as a Citus local table, until the playback
store replaces it). The log and its bookkeeping stay on the coordinator in this layout; the
log's split into per-organization chains is the next step (docs/scaling.md, "What is left").

The layout is a step of its own, never a side effect of ``ledger db upgrade``: a schema is
the same on every server, and only the placement of its rows differs. Distributing is safe
to run again (a table already in place is left alone) and refused, in one line, on a server
without Citus. A rebuild swaps in fresh tables: it puts each back in the place the old one had
(``restore``), in the transaction of its switch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg import sql

from ledger.database import migrations
from ledger.errors import ConfigurationError

Place = Literal["reference", "distributed", "local"]

COLUMN = "organization_id"
# in this order: a reference table's foreign keys point only at reference tables made before
REFERENCE: tuple[str, ...] = ("users", "organizations", "content")
# distributed by COLUMN and colocated with the first
DISTRIBUTED: tuple[str, ...] = ("purchases", "content_access")
# the migration whose keys carry the organization (Citus refuses a key without it)
KEYS_MIGRATION = 13


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


def citus_version(conn: psycopg.Connection[Any]) -> str | None:
    """The Citus extension's version in this database, or None without Citus."""
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'citus'").fetchone()
    return None if row is None else str(row[0])


def places(conn: psycopg.Connection[Any], schema: str) -> dict[str, Place]:
    """Where each table of the layout is now (``local``: on the coordinator alone, as on a
    single server)."""
    found: dict[str, Place] = {t: "local" for t in (*REFERENCE, *DISTRIBUTED)}
    if citus_version(conn) is None:
        return found
    rows = conn.execute(
        "SELECT c.relname, p.partmethod, p.repmodel FROM pg_dist_partition p"
        " JOIN pg_class c ON c.oid = p.logicalrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = ANY(%s)",
        (schema, list(found)),
    ).fetchall()
    for table, method, model in rows:
        # 'h': hash-distributed; 'n' replicated ('t') to every node: reference. A Citus local
        # table ('n', 's': its one shard on the coordinator) counts as local here.
        if method == "h":
            found[str(table)] = "distributed"
        elif method == "n" and model == "t":
            found[str(table)] = "reference"
    return found


def is_distributed(conn: psycopg.Connection[Any], schema: str) -> bool:
    """Whether any table of the schema is in its distributed place."""
    return any(place != "local" for place in places(conn, schema).values())


def distribute(conn: psycopg.Connection[Any], schema: str) -> list[Step]:
    """Puts every table of the layout in its place, in the caller's transaction; returns
    what it did and what was in place already. Takes the schema's migration lock, so no
    upgrade or rebuild runs meanwhile."""
    if citus_version(conn) is None:
        raise NoCitus()
    migrations.lock(conn, schema)
    migrations.require_log(conn, schema)
    if any(m.version <= KEYS_MIGRATION for m in migrations.pending(conn, schema)):
        raise ConfigurationError(
            f"schema {schema!r} is not migrated up to {KEYS_MIGRATION:04d} (keys that carry "
            "the organization): run `ledger db upgrade` first"
        )
    missing = [t for t in (*REFERENCE, *DISTRIBUTED) if not migrations.has_table(conn, schema, t)]
    if missing:
        raise ConfigurationError(
            f"schema {schema!r} has no {', '.join(missing)}: run `ledger db upgrade` first"
        )
    return _place(conn, schema, places(conn, schema), _wanted())


def _wanted() -> dict[str, Place]:
    wanted: dict[str, Place] = {t: "reference" for t in REFERENCE}
    wanted.update({t: "distributed" for t in DISTRIBUTED})
    return wanted


def _place(
    conn: psycopg.Connection[Any],
    schema: str,
    now: dict[str, Place],
    wanted: dict[str, Place],
) -> list[Step]:
    steps: list[Step] = []
    anchor: str | None = None  # the first distributed table: the others colocate with it
    for table in (*REFERENCE, *DISTRIBUTED):
        place = wanted.get(table, "local")
        name = sql.Identifier(schema, table).as_string(conn)
        if place == "distributed" and anchor is None:
            anchor = name
        if place == "local":
            continue
        if now.get(table) == place:
            steps.append(Step(table, place, False))
            continue
        if place == "reference":
            conn.execute("SELECT create_reference_table(%s::regclass)", (name,))
        else:
            colocate = "default" if anchor == name else anchor
            conn.execute(
                "SELECT create_distributed_table(%s::regclass, %s, colocate_with => %s)",
                (name, COLUMN, colocate),
            )
        steps.append(Step(table, place, True))
    return steps


def restore(conn: psycopg.Connection[Any], schema: str, before: dict[str, Place]) -> list[Step]:
    """Puts the tables a rebuild swapped in back where the old ones were (``before``, read
    by ``places`` ahead of the switch), in the switch's transaction."""
    if all(place == "local" for place in before.values()):
        return []
    return _place(conn, schema, places(conn, schema), before)
