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
# of state a reference table. video_playback, which the store writes, is placed with the
# money tables (``distribution.DISTRIBUTED``, migration 0026).
STORE_DISTRIBUTED: tuple[str, ...] = ("playback_heartbeats", "playback_base")
STORE_BY_KEY: tuple[str, ...] = ("playback_keys", "playback_compacted_keys")
STORE_REFERENCE: tuple[str, ...] = ("playback_state",)
STORE_MIGRATION = 22
# the anchor of the money tables' colocation group (``distribution.DISTRIBUTED[0]``)
ANCHOR = "content"


def store_places(conn: psycopg.Connection[Any], schema: str) -> dict[str, Place]:
    """Where each table of the playback store is now."""
    return places_of(conn, schema, (*STORE_REFERENCE, *STORE_DISTRIBUTED, *STORE_BY_KEY))


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
    now = store_places(conn, schema)
    anchor = sql.Identifier(schema, ANCHOR).as_string(conn)
    keys_anchor: str | None = None
    steps: list[Step] = []
    for table in (*STORE_REFERENCE, *STORE_DISTRIBUTED, *STORE_BY_KEY):
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
    return steps
