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
# in this order: a reference table's foreign keys point only at reference tables made before.
# organizations stays a reference table: small (one row a tenant), written once per
# tenant, and referenced by every distributed table's rows, whose foreign keys to it are
# then checked on their own worker (docs/scaling.md, "The layout")
REFERENCE: tuple[str, ...] = ("users", "organizations")
# distributed by COLUMN and colocated with the first; in the order of their foreign keys
DISTRIBUTED: tuple[str, ...] = ("content", "purchases", "content_access")
# the migration from which every key of these tables carries the organization (Citus refuses
# a key without it): 0013 purchases and content_access, 0015 content
KEYS_MIGRATION = 15
# what a single server holds and Citus cannot on a distributed content: content ids unique
# without the organization, and video_playback's reviewed foreign key to them (it carries no
# organization). Dropped when content is distributed; the log keeps a content id to one
# content, and the projections delete its playback rows with it (docs/schema.md)
CITUS_CANNOT_HOLD: tuple[tuple[str, str], ...] = (
    ("video_playback", "video_playback_content_id_fkey"),
    ("content", "content_id_unique"),
)


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
    held: list[tuple[str, str, str]] = []  # foreign keys to content, made again at the end
    moved = [
        t for t, p in now.items() if p != "local" and wanted.get(t, "local") not in ("local", p)
    ]
    if moved:  # placed otherwise before (content a reference table, before 0015): back first
        for table in moved:
            if places(conn, schema)[table] != "local":
                conn.execute(
                    "SELECT undistribute_table(%s::regclass, cascade_via_foreign_keys => true)",
                    (sql.Identifier(schema, table).as_string(conn),),
                )
        now = places(conn, schema)
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
            if table == "content":
                held = _unhold(conn, schema)
            colocate = "default" if anchor == name else anchor
            conn.execute(
                "SELECT create_distributed_table(%s::regclass, %s, colocate_with => %s)",
                (name, COLUMN, colocate),
            )
        steps.append(Step(table, place, True))
    for owner, constraint, definition in held:  # between colocated tables now: Citus holds them
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                sql.Identifier(schema, owner), sql.Identifier(constraint), sql.SQL(definition)
            )
        )
    return steps


def _unhold(conn: psycopg.Connection[Any], schema: str) -> list[tuple[str, str, str]]:
    """Before content is distributed: drops what Citus cannot hold on it, and the foreign
    keys of the other tables to it (Citus refuses a key from a table not yet distributed to
    a distributed one); returns those keys, to be made again once their tables are
    distributed beside it."""
    for owner, constraint in CITUS_CANNOT_HOLD:
        conn.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(
                sql.Identifier(schema, owner), sql.Identifier(constraint)
            )
        )
    rows = conn.execute(
        "SELECT c.relname, k.conname, pg_get_constraintdef(k.oid) FROM pg_constraint k"
        " JOIN pg_class c ON c.oid = k.conrelid"
        " WHERE k.contype = 'f' AND k.confrelid = %s::regclass AND k.conrelid <> k.confrelid",
        (sql.Identifier(schema, "content").as_string(conn),),
    ).fetchall()
    for owner, constraint, _ in rows:
        conn.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.Identifier(schema, owner), sql.Identifier(constraint)
            )
        )
    return [(str(o), str(c), str(d)) for o, c, d in rows]


def restore(conn: psycopg.Connection[Any], schema: str, before: dict[str, Place]) -> list[Step]:
    """Puts the tables a rebuild swapped in back where the old ones were (``before``, read
    by ``places`` ahead of the switch), in the switch's transaction."""
    if all(place == "local" for place in before.values()):
        return []
    return _place(conn, schema, places(conn, schema), before)
