"""``ledger db roles``: the owner, the writer, the projector, the reader, and logins
bound to one organization.

Roles are cluster-wide, so they are created by this command rather than by the
per-schema migrations; the command also grants each role what it needs in the
schema and turns on row-level security:

* owner: owns the ledger's objects (DDL, migrations, rebuilds);
* writer: appends (INSERT, and the UPDATE privilege the recorder's
  ``LOCK TABLE ... IN EXCLUSIVE MODE`` needs; the log's triggers refuse any real
  UPDATE or DELETE, and any event that does not decode) and writes the projected rows
  in the same transaction;
* projector: reads the log, writes the projected rows and moves consumers'
  checkpoints (``ledger.run_consumer``; a consumer's own tables are granted by its owner);
* reader: reads the projected rows of the organization its transaction sets
  (``ledger.reading.tables.tenant``), and the events of the log that name it (the
  service's reads for a token bound to one organization: its revenue and its events),
  nothing else of the log. The setting is the reader's own: this is defence in depth for
  a trusted application pool, not a boundary between tenants;
* tenant: the group of logins bound to one organization (``bind_login``). Their
  policies look the organization up in ``ledger_tenant_logins``, which the owner owns
  and a bound login can only read its own row of, so no setting, ``SET ROLE`` or
  ``RESET`` of theirs shows them another organization. This is the boundary.

Only the ledger's own objects change: those its migrations created
(``ledger.database.migrations.owned_objects``). Another application's tables, functions or
sequences in the same schema keep their owner and privileges, and a schema the ledger
did not create (``public``) keeps its owner and its grants to PUBLIC.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from ledger.database import distribution, migrations
from ledger.database.logins import bind_login as bind_login
from ledger.database.logins import one_at_a_time, workers_logins
from ledger.database.logins import organization_aggregate as organization_aggregate
from projections.registry import TABLES

KINDS = ("owner", "writer", "projector", "reader", "tenant")

# table -> the reader's policy expression (the transaction's setting)
TENANT_POLICIES: dict[str, str] = {
    "organizations": "id = ledger_tenant()",
    "users": "ledger_user_in_tenant(id)",
    "content": "organization_id = ledger_tenant()",
    "content_access": "organization_id = ledger_tenant()",
    "purchases": "organization_id = ledger_tenant()",
    "video_playback": "organization_id = ledger_tenant()",
}
# table -> a bound login's policy expression (its binding, looked up once per query)
_BOUND = "(SELECT ledger_bound_organization())"
BOUND_POLICIES: dict[str, str] = {
    "organizations": f"id = {_BOUND}",
    "users": f"ledger_user_in_organization(id, {_BOUND})",
    "content": f"organization_id = {_BOUND}",
    "content_access": f"organization_id = {_BOUND}",
    "purchases": f"organization_id = {_BOUND}",
    "video_playback": f"organization_id = {_BOUND}",
}
# before migration 0026 video_playback has no organization_id: its content says it
BY_CONTENT: dict[str, tuple[str, str]] = {
    "video_playback": (
        "ledger_content_in_tenant(content_id)",
        f"ledger_content_in_organization(content_id, {_BOUND})",
    ),
}
POLICIES = ("ledger_writers", "ledger_tenant", "ledger_bound")
# the reader's policy on the log: the events that name its transaction's organization
# (migration 0010); the writer and the projector read and append the whole log. The
# setting is read here, not through ledger_tenant(): the log outlives the projected
# tables' migrations (``downgrade --to base``), which that function belongs to
LOG_TENANT_POLICY = (
    "ledger_event_organization(state) = "
    "nullif(current_setting('ledger.organization_id', true), '')::uuid::text"
)


def role_names(prefix: str) -> dict[str, str]:
    return {kind: f"{prefix}_{kind}" for kind in KINDS}


def _role_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is not None


def _own(conn: psycopg.Connection[Any], schema: str, owner: sql.Identifier) -> dict[str, list[str]]:
    """Gives the ledger's own objects to the owner; returns them by kind (as SQL names)."""
    owned = migrations.owned_objects()
    found: dict[str, list[str]] = {
        kind: [
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relkind = ANY(%s) AND c.relname = ANY(%s)"
                " ORDER BY 1",
                (schema, relkinds, sorted(owned[kind.lower()])),
            ).fetchall()
        ]
        # "p": a partitioned table (the playback store's records)
        for kind, relkinds in (("TABLE", ["r", "p"]), ("SEQUENCE", ["S"]))
    }
    for kind, names in found.items():
        for name in names:
            conn.execute(
                sql.SQL("ALTER {} {} OWNER TO {}").format(
                    sql.SQL(kind), sql.Identifier(schema, name), owner
                )
            )
    found["FUNCTION"] = [
        r[0]
        for r in conn.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p"
            " JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = %s AND p.proname = ANY(%s) ORDER BY 1",
            (schema, sorted(owned["function"])),
        ).fetchall()
    ]
    for signature in found["FUNCTION"]:
        conn.execute(sql.SQL("ALTER FUNCTION {} OWNER TO {}").format(sql.SQL(signature), owner))
    for (name,) in conn.execute(
        "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
        " JOIN pg_class c ON c.oid = t.typrelid"
        " WHERE n.nspname = %s AND t.typname = ANY(%s) AND c.relkind = 'c'",
        (schema, sorted(owned["type"])),
    ).fetchall():
        conn.execute(
            sql.SQL("ALTER TYPE {} OWNER TO {}").format(sql.Identifier(schema, name), owner)
        )
    return found


def _schema_is_the_ledgers(conn: psycopg.Connection[Any], schema: str) -> bool:
    row = conn.execute(
        "SELECT obj_description(oid, 'pg_namespace') = %s FROM pg_namespace WHERE nspname = %s",
        (migrations.SCHEMA_COMMENT, schema),
    ).fetchone()
    return bool(row and row[0])


def create_roles(
    conn: psycopg.Connection[Any], schema: str, prefix: str, login: bool | None = None
) -> dict[str, str]:
    """Creates (or updates) the roles and their privileges; safe to rerun.

    ``login`` True lets the group roles log in, False makes them group roles only, None
    (binding a login) leaves existing ones as they are and creates missing ones NOLOGIN.
    """
    names = role_names(prefix)
    s = sql.Identifier(schema)
    with conn.transaction():
        one_at_a_time(conn)
        migrations.require_log(conn, schema)
        for name in names.values():
            exists = _role_exists(conn, name)
            if exists and login is None:
                continue
            conn.execute(
                sql.SQL("{} ROLE {} {}").format(
                    sql.SQL("ALTER" if exists else "CREATE"),
                    sql.Identifier(name),
                    sql.SQL("LOGIN" if login else "NOLOGIN"),
                )
            )
        if distribution.citus_version(conn) is not None:  # each may be taken by SET ROLE
            workers_logins(conn, [n for n in names.values() if not _can_log_in(conn, n)])
        owner, writer, projector, reader, tenant = (sql.Identifier(names[k]) for k in KINDS)
        conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(owner))
        if _schema_is_the_ledgers(conn, schema):
            conn.execute(sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(s, owner))
            conn.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(s))
        else:
            conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(s, owner))
        # a rebuild creates its shadow schemas: the owner may create schemas
        conn.execute(
            sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
                sql.Identifier(str(_scalar(conn, "SELECT current_database()"))), owner
            )
        )
        found = _own(conn, schema, owner)
        everyone = sql.SQL(", ").join([writer, projector, reader, tenant])
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(s, everyone))
        for signature in found["FUNCTION"]:
            conn.execute(
                sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(sql.SQL(signature), everyone)
            )
        for sequence in found["SEQUENCE"]:
            conn.execute(
                sql.SQL("GRANT USAGE ON SEQUENCE {} TO {}").format(
                    sql.Identifier(schema, sequence), writer
                )
            )

        def grant(privileges: str, table: str, *to: sql.Identifier) -> None:
            if table in found["TABLE"]:
                conn.execute(
                    sql.SQL("GRANT {} ON {} TO {}").format(
                        sql.SQL(privileges), sql.Identifier(schema, table), sql.SQL(", ").join(to)
                    )
                )

        grant("SELECT, INSERT, UPDATE", "ledger_events", writer)
        grant("SELECT", "ledger_events", projector)
        grant("SELECT", "ledger_schema_migrations", writer, projector)
        # read by the log's insert triggers, which run as the writer
        grant("SELECT", "ledger_event_catalogue", writer)
        # the chains' locks (FOR UPDATE needs UPDATE) and their genesis (migration 0014)
        grant("SELECT, INSERT, UPDATE", "ledger_chain_heads", writer)
        grant("SELECT", "ledger_chain_origin", writer, projector)
        # the log's order (migration 0018), read by its insert trigger and by readers of the
        # stream (which cursor a feed takes): the owner's to change
        grant("SELECT", "ledger_log_order", writer, projector, reader)
        grant("SELECT", "ledger_stale_projections", writer, projector)
        # the versions of before the chains (0033), read by the append's check (ledger.log.legacy)
        grant("SELECT", "ledger_legacy_versions", writer)
        # the claims of keys that are one namespace (migration 0023), written by the append
        # on a distributed log: never given back; renewed by their holder, and taken over
        # once their lease ran out with no event of the key (ledger.log.claims, 0028)
        grant("SELECT, INSERT, UPDATE", "ledger_key_claims", writer)
        grant("SELECT", "ledger_projection_state", projector)
        grant("SELECT, INSERT, UPDATE", "ledger_consumer_checkpoints", projector)
        # consumers' per-chain checkpoints, and the chains a reader of every chain finds
        # (docs/stream.md, "Reading every chain"; migration 0021)
        grant("SELECT, INSERT, UPDATE", "ledger_consumer_chains", projector)
        grant("SELECT", "ledger_chain_heads", projector, reader)
        # who each subject is: added with a registration, deleted only by an erasure
        grant("SELECT, INSERT, DELETE", "ledger_subjects", writer)
        grant("SELECT", "ledger_subjects", projector)
        grant("SELECT", "ledger_tenant_logins", tenant)  # its own row only (row security)
        # the playback store (issue 26): the writer records heartbeats, the projector folds
        # them (rebuild), the reader streams them (GET /v1/playback/events); its partitions
        # are created by playback_create_partition (as the owner) and read through the parent
        grant("SELECT, INSERT", "playback_heartbeats", writer)
        grant("SELECT, INSERT", "playback_keys", writer)
        # an erasure (user.erase, docs/privacy.md) deletes what the store keeps of the
        # person, in the append's transaction, as the writer: never an UPDATE
        for table in ("playback_heartbeats", "playback_base", "playback_keys"):
            grant("DELETE", table, writer)
        grant("SELECT, DELETE", "playback_compacted_keys", writer)
        for table in ("playback_heartbeats", "playback_base", "playback_keys", "playback_state"):
            grant("SELECT", table, writer, projector)
        grant("SELECT", "playback_heartbeats", reader)
        # on Citus each organization's positions of the store (migration 0027): drawn by the
        # writer's upsert of its row, held to the commit; where a cursor's reader starts
        grant("SELECT, INSERT, UPDATE", "playback_heads", writer)
        grant("SELECT", "playback_heads", projector, reader)
        for table in TABLES:
            if table not in found["TABLE"]:
                continue
            grant("SELECT, INSERT, UPDATE, DELETE", table, writer, projector)
            grant("SELECT", table, reader, tenant)
            _policies(conn, schema, table, names)
        if any(f.startswith("ledger_event_organization(") for f in found["FUNCTION"]):
            grant("SELECT", "ledger_events", reader)
            _log_policies(conn, schema, names)
    return names


def _log_policies(conn: psycopg.Connection[Any], schema: str, names: dict[str, str]) -> None:
    """Row security on the log: the writer and the projector see all of it, the reader
    the events naming its transaction's organization; the owner is not subject to it."""
    target = _writers_see_all(conn, schema, "ledger_events", names)
    conn.execute(
        sql.SQL("CREATE POLICY ledger_tenant ON {} FOR SELECT TO {} USING ({})").format(
            target, sql.Identifier(names["reader"]), sql.SQL(LOG_TENANT_POLICY)
        )
    )


def _writers_see_all(
    conn: psycopg.Connection[Any], schema: str, table: str, names: dict[str, str]
) -> sql.Identifier:
    """Row security on ``table``, its policies made anew: the writer and the projector see
    and write all of it (the readers' policies follow, with the schema on the search path
    for the expressions they name)."""
    target = sql.Identifier(schema, table)
    conn.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(target))
    for policy in POLICIES:
        conn.execute(
            sql.SQL("DROP POLICY IF EXISTS {} ON {}").format(sql.Identifier(policy), target)
        )
    conn.execute(
        sql.SQL(
            "CREATE POLICY ledger_writers ON {} FOR ALL TO {}, {} USING (true) WITH CHECK (true)"
        ).format(target, sql.Identifier(names["writer"]), sql.Identifier(names["projector"]))
    )
    conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
    return target


def _policies(
    conn: psycopg.Connection[Any], schema: str, table: str, names: dict[str, str]
) -> None:
    target = _writers_see_all(conn, schema, table, names)
    tenant, bound = TENANT_POLICIES[table], BOUND_POLICIES[table]
    if table in BY_CONTENT and not _has_column(conn, schema, table, "organization_id"):
        tenant, bound = BY_CONTENT[table]
    if _citus_table(conn, schema, table):
        # Citus cannot send a policy holding a subquery to its workers ("unexpected
        # non-SELECT command in SubLink"): there the binding is looked up per row
        bound = bound.replace(_BOUND, "ledger_bound_organization()")
    for policy, role, expression in (
        ("ledger_tenant", names["reader"], tenant),
        ("ledger_bound", names["tenant"], bound),
    ):
        conn.execute(
            sql.SQL("CREATE POLICY {} ON {} FOR SELECT TO {} USING ({})").format(
                sql.Identifier(policy), target, sql.Identifier(role), sql.SQL(expression)
            )
        )


def _citus_table(conn: psycopg.Connection[Any], schema: str, table: str) -> bool:
    """Whether Citus holds the table (distributed, reference, or a Citus local table)."""
    if distribution.citus_version(conn) is None:
        return False
    row = conn.execute(
        "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = to_regclass(%s)",
        (sql.Identifier(schema, table).as_string(conn),),
    ).fetchone()
    return bool(row and row[0])


def _can_log_in(conn: psycopg.Connection[Any], role: str) -> bool:
    row = conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    return bool(row and row[0])


def _has_column(conn: psycopg.Connection[Any], schema: str, table: str, column: str) -> bool:
    return bool(
        conn.execute(
            "SELECT 1 FROM pg_attribute WHERE attrelid = %s::regclass AND attname = %s"
            " AND NOT attisdropped",
            (sql.Identifier(schema, table).as_string(conn), column),
        ).fetchone()
    )


def _scalar(conn: psycopg.Connection[Any], query: str) -> Any:
    row = conn.execute(query).fetchone()
    return row[0] if row else None
