"""The distributed layout on a Citus coordinator (``ledger db distribute``, docs/scaling.md).

No rule of the ledger spans two organizations, so the tables of the money side are split by
``organization_id``: each organization's rows live on one worker, colocated (a purchase, its
access rows and, later, its events on the same worker, so one organization's work is one
worker's). What every organization shares is a reference table, a copy on every node:
``users`` (a customer buys from many organizations). ``organizations`` is distributed by
its id (i28o), ``content``, ``purchases``, ``content_access`` and ``video_playback`` (which
carries its content's organization since migration 0026) by ``organization_id``. The log follows
(``distribute_log``, the last part of ``distribute``): its events and its chains' lock rows
by organization beside the money tables, the tables its triggers read as reference tables,
and the claims of the keys that are one namespace across
organizations by the key itself (docs/scaling.md, "The log on Citus").

The layout is a step of its own, never a side effect of ``ledger db upgrade``: a schema is
the same on every server, and only the placement of its rows differs. Distributing is safe
to run again (a table already in place is left alone) and refused, in one line, on a server
without Citus. A rebuild swaps in fresh tables: it puts each back in the place the old one had
(``restore``), in the transaction of its switch.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from ledger.database import legacy, migrations, placement
from ledger.database.legacy import CLAIMS as CLAIMS
from ledger.database.placement import COLUMN, NoCitus, Place, Step, citus_version, places_of
from ledger.database.store_placement import ANCHOR, distribute_store
from ledger.errors import ConfigurationError
from ledger.log import chains

__all__ = ["COLUMN", "NoCitus", "Place", "Step", "citus_version"]
# in this order: a reference table's foreign keys point only at reference tables made before
REFERENCE: tuple[str, ...] = ("users",)
# distributed by COLUMN (``BY``: another column) and colocated with the first; in the order of
# their foreign keys. organizations by its id (i28o): a reference table was written on every
# node, so any stopped worker failed every registration; by its id, beside its own rows, a
# registration writes its organization's worker alone, and the money tables' foreign keys to
# it (their organization_id) are still checked on their own worker (docs/scaling.md)
DISTRIBUTED: tuple[str, ...] = (
    "organizations",
    "content",
    "purchases",
    "content_access",
    "video_playback",
)
BY: dict[str, str] = {"organizations": "id"}
# the migration from which every key of these tables carries the organization (Citus refuses
# a key without it): 0013 purchases and content_access, 0015 content, 0026 video_playback
KEYS_MIGRATION = 26
# what a single server holds and Citus cannot on a distributed content: content ids unique
# without the organization. Dropped when content is distributed; the log keeps a content id
# to one content (docs/schema.md)
CITUS_CANNOT_HOLD: tuple[tuple[str, str], ...] = (("content", "content_id_unique"),)


def places(conn: psycopg.Connection[Any], schema: str) -> dict[str, Place]:
    """Where each table of the layout is now (``local``: on the coordinator alone, as on a
    single server)."""
    return places_of(conn, schema, (*REFERENCE, *DISTRIBUTED))


def layout_place(table: str) -> Place:
    """Where ``distribute`` puts ``table``: a rebuild puts a table that was dropped back
    there, since ``places`` cannot say where a missing table was."""
    return _wanted().get(table, "local")


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
    needed = max(LOG_MIGRATION, KEYS_MIGRATION)
    if any(m.version <= needed for m in migrations.pending(conn, schema)):
        raise ConfigurationError(
            f"schema {schema!r} is not migrated up to {needed:04d} (keys that carry "
            "the organization, the log's routable chain and claims): run `ledger db upgrade` first"
        )
    missing = [t for t in (*REFERENCE, *DISTRIBUTED) if not migrations.has_table(conn, schema, t)]
    if missing:
        raise ConfigurationError(
            f"schema {schema!r} has no {', '.join(missing)}: run `ledger db upgrade` first"
        )
    placement.lock_local(conn, schema)
    steps = _place(conn, schema, places(conn, schema), _wanted())
    _add_missing_keys(conn, schema, steps)
    return [*steps, *distribute_log(conn, schema), *distribute_store(conn, schema)]


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
    held: list[tuple[str, str, str]] = []  # keys to what is placed, made again at the end
    placing = False
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
        column = BY.get(table, COLUMN) if place == "distributed" else COLUMN
        if now.get(table) == place:
            steps.append(Step(table, place, False, column))
            continue
        if not placing:
            placing = True
            # one connection per worker from here to the end of the transaction, as Citus
            # itself switches to when it distributes a table keyed to a reference table:
            # the keys to ``users`` held below come back after the tables were placed, which
            # Citus refuses after a parallel placement ("cannot modify table ... because there
            # was a parallel operation on a distributed table in the transaction")
            conn.execute("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'")
        # every table is placed while it is still the migration's own local table
        held += _unhold(conn, schema, table, place)
        if place == "reference":
            conn.execute("SELECT create_reference_table(%s::regclass)", (name,))
        else:
            colocate = "default" if anchor == name else anchor
            conn.execute(
                "SELECT create_distributed_table(%s::regclass, %s, colocate_with => %s)",
                (name, column, colocate),
            )
        steps.append(Step(table, place, True, column))
    for owner, constraint, definition in held:  # between placed tables now: Citus holds them
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                sql.Identifier(schema, owner), sql.Identifier(constraint), sql.SQL(definition)
            )
        )
    return steps


# the keys to content a table placed beside it may lack: migration 0026 leaves
# video_playback's to `ledger db distribute` where content was distributed already (Citus
# takes no key from the coordinator's table to a distributed one); not in a rebuild's
# ``restore``, whose switch adds the keys it deferred itself
KEYS_TO_CONTENT: dict[str, tuple[str, str]] = {
    "video_playback": (
        "video_playback_content_id_fkey",
        "FOREIGN KEY (organization_id, content_id) REFERENCES {} (organization_id, id)"
        " ON DELETE CASCADE",
    ),
}


def _add_missing_keys(conn: psycopg.Connection[Any], schema: str, steps: list[Step]) -> None:
    placed = {step.table for step in steps if step.done and step.place == "distributed"}
    for owner, (constraint, definition) in KEYS_TO_CONTENT.items():
        if owner not in placed:
            continue
        exists = conn.execute(
            "SELECT 1 FROM pg_constraint WHERE conrelid = %s::regclass AND conname = %s",
            (sql.Identifier(schema, owner).as_string(conn), constraint),
        ).fetchone()
        if exists is None:
            conn.execute(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                    sql.Identifier(schema, owner),
                    sql.Identifier(constraint),
                    sql.SQL(definition).format(sql.Identifier(schema, "content")),
                )
            )


def _unhold(
    conn: psycopg.Connection[Any], schema: str, table: str, place: Place
) -> list[tuple[str, str, str]]:
    """Before ``table`` is placed: drops what Citus cannot hold on it, and the foreign keys
    of the other tables to it; returns those keys, to be made again once their tables are
    placed beside it. To a distributed table: Citus refuses a key from a table not yet
    distributed. To a reference table (``users``): Citus would take the local tables that
    key to it into its metadata (Citus local tables), and ``create_distributed_table`` then
    makes such a table again from a copy of a transient name (``content_3841110697``): its
    NOT NULL constraints named after the copy (PostgreSQL 18) and its CHECKs as Citus
    re-parsed them, where a rebuild of that table alone swaps in the migration's
    (docs/scaling.md, "The migration's names on the cluster")."""
    for owner, constraint in CITUS_CANNOT_HOLD:
        if owner != table or place != "distributed":
            continue
        conn.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(
                sql.Identifier(schema, owner), sql.Identifier(constraint)
            )
        )
    rows = conn.execute(
        "SELECT c.relname, k.conname, pg_get_constraintdef(k.oid) FROM pg_constraint k"
        " JOIN pg_class c ON c.oid = k.conrelid"
        " WHERE k.contype = 'f' AND k.confrelid = %s::regclass AND k.conrelid <> k.confrelid",
        (sql.Identifier(schema, table).as_string(conn),),
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


# The log on Citus (issue 28, docs/scaling.md "The log on Citus"): the last part of
# ``distribute`` (`ledger db distribute`), once the money tables are in place.
# the chain trigger routable (0019), the keys' claims (0023), the routed read check (0024)
LOG_MIGRATION = 24
# read on the workers (the log's insert triggers, row security): a copy on every node
LOG_REFERENCE: tuple[str, ...] = (
    "ledger_event_catalogue",
    "ledger_chain_origin",
    "ledger_log_order",
    "ledger_stale_projections",
    # the bound logins' organizations (``ledger db roles --organization``), read by their
    # row security where Citus evaluates it: on the workers (docs/scaling.md, "Roles on
    # Citus")
    "ledger_tenant_logins",
)
# each chain's lock row beside its events, colocated with the money tables
LOG_DISTRIBUTED: tuple[str, ...] = ("ledger_chain_heads", "ledger_events")
# the claims of keys that are one namespace across organizations (migration 0023, ``CLAIMS``),
# each distributed by the key's own id, with no organization: ``distribute_log``
CLAIMS_COLUMN = "claim_id"


def log_places(conn: psycopg.Connection[Any], schema: str) -> dict[str, Place]:
    """Where each table of the log is now."""
    return places_of(conn, schema, (*LOG_REFERENCE, *LOG_DISTRIBUTED, CLAIMS))


def log_is_distributed(conn: psycopg.Connection[Any], schema: str) -> bool:
    """Whether the log is placed on Citus (``distribute_log``): its appends then need
    ``citus.multi_shard_modify_mode`` sequential, as the events' insert and the reference
    tables' rows written after it in one transaction must use one connection per node.
    Any row factory (the recorder's connections make dicts)."""
    return log_places(conn, schema)["ledger_events"] == "distributed"


def distribute_log(conn: psycopg.Connection[Any], schema: str) -> list[Step]:
    """Places the log by organization beside the money tables, in the caller's transaction
    (after ``distribute``), and switches it to the ``organization`` order; safe to run again.

    What the log's keys need on Citus, made here and only on Citus (a single server keeps
    one global uniqueness of each aggregate's versions and of notification ids): the primary
    key (organization_id, originator_id, originator_version) in place of (originator_id,
    originator_version), which stays an index for the lookups by aggregate; notification ids
    unique per chain. The triggers fire on the shards (``citus.enable_unsafe_triggers`` for
    the placement; each trigger's statements touch only its organization's colocated row of
    ``ledger_chain_heads`` and the reference tables)."""
    if citus_version(conn) is None:
        raise NoCitus()
    migrations.lock(conn, schema)
    if any(m.version <= LOG_MIGRATION for m in migrations.pending(conn, schema)):
        raise ConfigurationError(
            f"schema {schema!r} is not migrated up to {LOG_MIGRATION:04d}: run `ledger db upgrade`"
        )
    if places(conn, schema).get(ANCHOR) != "distributed":
        raise ConfigurationError("the money tables are not distributed: run `ledger db distribute`")
    now = log_places(conn, schema)
    steps: list[Step] = []
    conn.execute("SET LOCAL citus.enable_unsafe_triggers TO on")
    for table in LOG_REFERENCE:
        if now[table] == "reference":
            steps.append(Step(table, "reference", False))
            continue
        name = sql.Identifier(schema, table).as_string(conn)
        conn.execute("SELECT create_reference_table(%s::regclass)", (name,))
        steps.append(Step(table, "reference", True))
    _bound_lookup_nested(conn, schema)
    anchor = sql.Identifier(schema, ANCHOR).as_string(conn)
    for table in LOG_DISTRIBUTED:
        if now[table] == "distributed":
            steps.append(Step(table, "distributed", False))
            continue
        if table == "ledger_events":
            _log_keys(conn, schema)
        name = sql.Identifier(schema, table).as_string(conn)
        conn.execute(
            "SELECT create_distributed_table(%s::regclass, %s, colocate_with => %s)",
            (name, COLUMN, anchor),
        )
        steps.append(Step(table, "distributed", True))
    if now[CLAIMS] == "distributed":
        steps.append(Step(CLAIMS, "distributed", False, CLAIMS_COLUMN))
    else:  # by the key itself: one namespace, whichever organization claims a key
        name = sql.Identifier(schema, CLAIMS).as_string(conn)
        # the keys the log claimed before (on one server its primary key held them)
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (claim_id, organization_id) SELECT originator_id, organization_id"
                " FROM {} WHERE originator_version = 1 AND topic = ANY(%s)"
            ).format(sql.Identifier(schema, CLAIMS), sql.Identifier(schema, "ledger_events")),
            (sorted(chains.CLAIMED_TOPICS),),
        )
        conn.execute(
            "SELECT create_distributed_table(%s::regclass, %s, colocate_with => 'none')",
            (name, CLAIMS_COLUMN),
        )
        steps.append(Step(CLAIMS, "distributed", True, CLAIMS_COLUMN))
    legacy.claim_legacy(conn, schema)
    if chains.order(conn, schema) != "organization":
        chains.set_order(conn, schema, "organization")
    legacy.keep_mark(conn, schema)  # on the order's row, which the coordinator reads alone
    legacy.keep_versions(conn, schema)  # their versions there, a reference table (0033)
    return steps


def _bound_lookup_nested(conn: psycopg.Connection[Any], schema: str) -> None:
    """A bound login's policies call ``ledger_bound_organization()`` (migration 0007) on
    the workers, inside the query on a shard, where its read of ``ledger_tenant_logins`` (a
    reference table, the worker's own copy, read locally) is a query Citus refuses as
    nested ("cannot execute a distributed query from a query on a shard") unless the
    function allows it for its own duration. A read of a reference table's local copy
    in the shard query's transaction: none of the nested execution's hazards (a write, or
    a shard on another node) applies. Safe to run again."""
    function = sql.Identifier(schema, "ledger_bound_organization")
    if conn.execute(
        "SELECT to_regprocedure(%s)", (f"{function.as_string(conn)}()",)
    ).fetchone() == (None,):
        return
    conn.execute(
        sql.SQL("ALTER FUNCTION {}() SET citus.allow_nested_distributed_execution = on").format(
            function
        )
    )


def _log_keys(conn: psycopg.Connection[Any], schema: str) -> None:
    """The log's unique keys led by the organization, as Citus requires of a distributed
    table; the lookups by aggregate keep an index of their own."""
    log = sql.Identifier(schema, "ledger_events")
    for statement in (
        "ALTER TABLE {log} DROP CONSTRAINT ledger_events_pkey",
        "ALTER TABLE {log} ADD CONSTRAINT ledger_events_pkey"
        " PRIMARY KEY (organization_id, originator_id, originator_version)",
        "CREATE INDEX ledger_events_aggregate_idx ON {log} (originator_id, originator_version)",
        "DROP INDEX {notification}",
        "CREATE UNIQUE INDEX ledger_events_notification_id_idx"
        " ON {log} (organization_id, notification_id)",
    ):
        conn.execute(
            sql.SQL(statement).format(
                log=log,
                notification=sql.Identifier(schema, "ledger_events_notification_id_idx"),
            )
        )
