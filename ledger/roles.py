"""``ledger db roles``: the owner, the writer, the projector and the reader.

Roles are cluster-wide, so they are created by this command rather than by the
per-schema migrations; the command also grants each role what it needs in the
schema and turns on row-level security for the reader:

* owner: owns the schema and every object in it (DDL, migrations, rebuilds);
* writer: appends (INSERT, and the UPDATE privilege the recorder's
  ``LOCK TABLE ... IN EXCLUSIVE MODE`` needs; the log's triggers refuse any real
  UPDATE or DELETE) and writes the projected rows in the same transaction;
* projector: reads the log, writes the projected rows and moves consumers'
  checkpoints (``ledger.run_consumer``; a consumer's own tables are granted by its owner);
* reader: reads the projected rows of the organization set for its transaction
  (``ledger.tenancy.tenant``), never the log.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from projections.registry import TABLES

KINDS = ("owner", "writer", "projector", "reader")

# table -> the reader's policy expression
TENANT_POLICIES: dict[str, str] = {
    "organizations": "id = ledger_tenant()",
    "users": "ledger_user_in_tenant(id)",
    "content": "organization_id = ledger_tenant()",
    "content_access": "organization_id = ledger_tenant()",
    "purchases": "organization_id = ledger_tenant()",
    "video_playback": "ledger_content_in_tenant(content_id)",
}


def role_names(prefix: str) -> dict[str, str]:
    return {kind: f"{prefix}_{kind}" for kind in KINDS}


def create_roles(
    conn: psycopg.Connection[Any], schema: str, prefix: str, login: bool
) -> dict[str, str]:
    """Creates (or updates) the roles and their privileges; safe to rerun."""
    names = role_names(prefix)
    s = sql.Identifier(schema)
    with conn.transaction():
        for name in names.values():
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(
                sql.SQL("{} ROLE {} {}").format(
                    sql.SQL(verb), sql.Identifier(name), sql.SQL("LOGIN" if login else "NOLOGIN")
                )
            )
        owner, writer, projector, reader = (sql.Identifier(names[k]) for k in KINDS)
        conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(owner))
        conn.execute(sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(s, owner))
        for kind, query in (
            ("TABLE", "SELECT tablename FROM pg_tables WHERE schemaname = %s"),
            ("SEQUENCE", "SELECT sequencename FROM pg_sequences WHERE schemaname = %s"),
        ):
            for (name,) in conn.execute(query, (schema,)).fetchall():
                conn.execute(
                    sql.SQL("ALTER {} {} OWNER TO {}").format(
                        sql.SQL(kind), sql.Identifier(schema, name), owner
                    )
                )
        for (signature,) in conn.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p"
            " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %s",
            (schema,),
        ).fetchall():
            conn.execute(sql.SQL("ALTER FUNCTION {} OWNER TO {}").format(sql.SQL(signature), owner))
        conn.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(s))
        conn.execute(
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}, {}, {}").format(s, writer, projector, reader)
        )
        log = sql.Identifier(schema, "ledger_events")
        conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE ON {} TO {}").format(log, writer))
        conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(log, projector))
        conn.execute(sql.SQL("GRANT USAGE ON ALL SEQUENCES IN SCHEMA {} TO {}").format(s, writer))
        conn.execute(
            sql.SQL("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {} TO {}, {}, {}").format(
                s, writer, projector, reader
            )
        )
        conn.execute(
            sql.SQL("GRANT SELECT ON {} TO {}, {}").format(
                sql.Identifier(schema, "ledger_schema_migrations"), writer, projector
            )
        )
        conn.execute(
            sql.SQL("GRANT SELECT, INSERT, UPDATE ON {} TO {}").format(
                sql.Identifier(schema, "ledger_consumer_checkpoints"), projector
            )
        )
        for table in TABLES:
            target = sql.Identifier(schema, table)
            conn.execute(
                sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}, {}").format(
                    target, writer, projector
                )
            )
            conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(target, reader))
            conn.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(target))
            for policy in ("ledger_writers", "ledger_tenant"):
                conn.execute(
                    sql.SQL("DROP POLICY IF EXISTS {} ON {}").format(sql.Identifier(policy), target)
                )
            conn.execute(
                sql.SQL(
                    "CREATE POLICY ledger_writers ON {} FOR ALL TO {}, {} "
                    "USING (true) WITH CHECK (true)"
                ).format(target, writer, projector)
            )
            conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(s))
            conn.execute(
                sql.SQL("CREATE POLICY ledger_tenant ON {} FOR SELECT TO {} USING ({})").format(
                    target,
                    reader,
                    sql.SQL(TENANT_POLICIES[table]),
                )
            )
    return names
