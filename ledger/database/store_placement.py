"""The playback store's place on a Citus coordinator (docs/scaling.md, "The playback store on
Citus"), the last part of ``distribution.distribute``: a heartbeat is its content's
organization's, so its records and base row go beside that content; its keys by the key."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from ledger.database import migrations
from ledger.database.placement import COLUMN, Place, Step, places_of

# The playback store (docs/scaling.md, "The playback store on Citus"): its records and base
# rows by organization beside content (their keys led by it since 0022), its idempotency keys
# by the key itself (a key is one namespace for every organization: CONTRACT.md), its one row
# of state a reference table; each organization's positions (``playback_heads``, migration
# 0027) beside its records, so a group draws them on its organization's worker.
# video_playback, which the store writes, is placed with the money tables
# (``distribution.DISTRIBUTED``, migration 0026).
STORE_DISTRIBUTED: tuple[str, ...] = ("playback_heartbeats", "playback_base", "playback_heads")
STORE_BY_KEY: tuple[str, ...] = ("playback_keys", "playback_compacted_keys")
STORE_REFERENCE: tuple[str, ...] = ("playback_state",)
STORE_MIGRATION = 22
KEY_MOMENT_MIGRATION = 34  # playback_keys.occurred_at: a claim's moment (ledger.playback.keys)
HEADS = "playback_heads"  # migration 0027: each organization's positions
# what the log and the store colocate with: the money tables' group (``organizations`` leads
# it since i28o, a reference table on a schema placed before: ``content`` is distributed in both)
ANCHOR = "content"


def store_places(conn: psycopg.Connection[Any], schema: str) -> dict[str, Place]:
    """Where each table of the playback store is now."""
    tables = [*STORE_REFERENCE, *STORE_DISTRIBUTED, *STORE_BY_KEY]
    if not migrations.has_table(conn, schema, HEADS):
        tables.remove(HEADS)
    return places_of(conn, schema, tables)


def store_is_distributed(conn: psycopg.Connection[Any], schema: str) -> bool:
    """Whether the playback store's records are distributed: its writer then decides a
    group by statements Citus plans (``ledger.playback.distributed``)."""
    return places_of(conn, schema, STORE_DISTRIBUTED[:1])[STORE_DISTRIBUTED[0]] == "distributed"


def distribute_store(conn: psycopg.Connection[Any], schema: str) -> list[Step]:
    """Places the playback store (after the money tables, in ``distribute``'s transaction);
    a table in place is left alone. A schema not migrated to 0022 (the store's keys led by
    the organization) keeps its store on the coordinator."""
    if any(m.version <= STORE_MIGRATION for m in migrations.pending(conn, schema)):
        return []
    tables = [*STORE_REFERENCE, *STORE_DISTRIBUTED, *STORE_BY_KEY]
    if not migrations.has_table(conn, schema, HEADS):  # before 0027: the coordinator's order
        tables.remove(HEADS)
    now = places_of(conn, schema, tables)
    if now["playback_keys"] != "distributed":
        _moments_from_records(conn, schema)
    anchor = sql.Identifier(schema, ANCHOR).as_string(conn)
    keys_anchor: str | None = None
    steps: list[Step] = []
    for table in tables:
        place: Place = "reference" if table in STORE_REFERENCE else "distributed"
        name = sql.Identifier(schema, table).as_string(conn)
        if now[table] == place:
            by = "idempotency_key" if table in STORE_BY_KEY else COLUMN
            steps.append(Step(table, place, False, by))
        elif place == "reference":
            conn.execute("SELECT create_reference_table(%s::regclass)", (name,))
            steps.append(Step(table, place, True))
        elif table in STORE_DISTRIBUTED:
            conn.execute(
                "SELECT create_distributed_table(%s::regclass, %s, colocate_with => %s)",
                (name, COLUMN, anchor),
            )
            steps.append(Step(table, place, True))
        else:
            conn.execute(
                "SELECT create_distributed_table(%s::regclass, 'idempotency_key',"
                " colocate_with => %s)",
                (name, keys_anchor or "none"),
            )
            steps.append(Step(table, place, True, "idempotency_key"))
        if table in STORE_BY_KEY and keys_anchor is None:
            keys_anchor = name
    if HEADS in tables:
        _heads_from_records(conn, schema)
    return steps


def _moments_from_records(conn: psycopg.Connection[Any], schema: str) -> None:
    """Each key a single server wrote, without a moment (its statement needs none), given
    its recorded heartbeat's (the first), as migration 0034 gave the keys of before: on the
    distributed layout every delivery of a key takes its claim's moment, and a key without
    one has each of its redeliveries without ``occurred_at`` recorded again. Run while the
    keys are still the coordinator's, before they are placed; a schema before 0034 has no
    moments to give."""
    if any(m.version <= KEY_MOMENT_MIGRATION for m in migrations.pending(conn, schema)):
        return
    conn.execute(
        sql.SQL(
            "UPDATE {keys} k SET occurred_at = h.first"
            " FROM (SELECT idempotency_key, min(occurred_at) AS first FROM {records}"
            " WHERE idempotency_key IS NOT NULL GROUP BY idempotency_key) h"
            " WHERE k.idempotency_key = h.idempotency_key AND k.occurred_at IS NULL"
        ).format(
            keys=sql.Identifier(schema, "playback_keys"),
            records=sql.Identifier(schema, "playback_heartbeats"),
        )
    )


def _heads_from_records(conn: psycopg.Connection[Any], schema: str) -> None:
    """Each organization's head at least its highest stored position: a single server draws
    from the coordinator's sequence and leaves the heads as they were, so an organization's
    positions on the distributed layout go on above every record it has (a reader's cursor
    never meets one twice). Never moves a head back: safe to run again, writers running."""
    conn.execute(
        sql.SQL(
            "INSERT INTO {heads} AS h (organization_id, position)"
            " SELECT organization_id, max(position) FROM {records} GROUP BY organization_id"
            " ON CONFLICT (organization_id)"
            " DO UPDATE SET position = GREATEST(h.position, EXCLUDED.position)"
        ).format(
            heads=sql.Identifier(schema, HEADS),
            records=sql.Identifier(schema, "playback_heartbeats"),
        )
    )
