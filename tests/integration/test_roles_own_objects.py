"""Roles: ``ledger db roles`` takes over only the ledger's own objects (another application's
in the same schema keep their owner and grants), and ``db downgrade --to base`` still works
after it (the objects' part of ``test_roles.py``).
"""

from __future__ import annotations

import uuid

import psycopg
from psycopg import sql

from ledger import api
from ledger.config import Settings
from ledger.database.connections import connect
from ledger.database.roles import create_roles, role_names
from ledger.reading.tables import tenant
from tests.runtime_roles import (
    Conn,
    as_role,
    drop_roles,
    roles,
    seed,
)
from tests.support import (
    ORG,
    append,
    complete,
)
from tests.support import (
    cli as cli_run,
)

__all__ = ["roles"]  # the fixture, from tests/runtime_roles.py


def test_roles_change_only_the_ledgers_own_objects(database_url: str) -> None:
    """Another application shares the schema (created before the ledger's, like public):
    its objects, the schema's owner and PUBLIC's grants stay as they were."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    prefix = f"o{uuid.uuid4().hex[:8]}"
    other = f"{prefix}_app"
    settings = Settings(url=database_url, schema=schema)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(other)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO PUBLIC").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        conn.execute("CREATE TABLE their_orders (id serial PRIMARY KEY)")
        conn.execute("CREATE FUNCTION their_function() RETURNS int LANGUAGE sql AS 'SELECT 1'")
        conn.execute("CREATE TYPE their_type AS (a int)")
        conn.execute("GRANT SELECT ON their_orders TO PUBLIC")
        for statement in (
            "ALTER TABLE their_orders OWNER TO {}",
            "ALTER FUNCTION their_function() OWNER TO {}",
            "ALTER TYPE their_type OWNER TO {}",
        ):
            conn.execute(sql.SQL(statement).format(sql.Identifier(other)))
    try:
        api.upgrade(settings)
        with connect(settings, autocommit=True) as conn:
            before = _owners_and_grants(conn, schema)
            names = create_roles(conn, settings.schema, prefix)
            after = _owners_and_grants(conn, schema)
            ledger_owned = conn.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tableowner <> %s",
                (schema, names["owner"]),
            ).fetchone()
        theirs = {k: v for k, v in before.items() if "their" in k[1]}
        assert len(theirs) == 4 and {k: after[k] for k in theirs} == theirs
        assert ledger_owned == (1,)  # their_orders only
        # the schema keeps its owner and every grant it had (PUBLIC's usage included);
        # only grants to the ledger's roles are added
        (owner_before, acl_before), (owner_after, acl_after) = (
            before[("schema", schema)],
            after[("schema", schema)],
        )
        kept, added = set(acl_before.strip("{}").split(",")), set(acl_after.strip("{}").split(","))
        assert owner_after == owner_before and kept <= added
        assert any(entry.startswith("=U") for entry in added)  # PUBLIC keeps its usage
        assert all(entry.startswith(prefix) for entry in added - kept)
    finally:
        drop_roles(settings, [*role_names(prefix).values(), other])


def _owners_and_grants(conn: Conn, schema: str) -> dict[tuple[str, str], tuple[str, str]]:
    """Owner and ACL of the schema and of every table, sequence, function and type in it."""
    rows = conn.execute(
        "SELECT 'schema', nspname, nspowner::regrole::text, coalesce(nspacl::text, '')"
        "  FROM pg_namespace WHERE nspname = %(s)s"
        " UNION ALL SELECT 'class', c.relname, c.relowner::regrole::text,"
        "  coalesce(c.relacl::text, '') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        "  WHERE n.nspname = %(s)s AND c.relkind IN ('r', 'S')"
        " UNION ALL SELECT 'function', p.proname, p.proowner::regrole::text,"
        "  coalesce(p.proacl::text, '') FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        "  WHERE n.nspname = %(s)s"
        " UNION ALL SELECT 'type', t.typname, t.typowner::regrole::text, coalesce(t.typacl::text, '')"
        "  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
        "  WHERE n.nspname = %(s)s AND t.typtype = 'c' AND t.typrelid IN"
        "  (SELECT oid FROM pg_class WHERE relkind = 'c')",
        {"s": schema},
    ).fetchall()
    return {(r[0], r[1]): (r[2], r[3]) for r in rows}


def test_the_migrations_create_exactly_the_objects_roles_may_take_over(conn: Conn) -> None:
    from ledger.database import migrations

    owned = migrations.owned_objects()
    found = {
        kind: {r[0] for r in conn.execute(query)}
        for kind, query in (
            ("table", "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"),
            (
                "sequence",
                "SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema()",
            ),
            (
                "function",
                "SELECT proname FROM pg_proc WHERE pronamespace = current_schema()::regnamespace",
            ),
            (
                "type",
                "SELECT typname FROM pg_type t JOIN pg_class c ON c.oid = t.typrelid"
                " WHERE t.typnamespace = current_schema()::regnamespace AND c.relkind = 'c'",
            ),
        )
    }
    assert found == {kind: set(names) for kind, names in owned.items()}


def test_downgrade_to_base_works_after_roles(
    settings: Settings, roles: dict[str, str], cli_env: dict[str, str]
) -> None:
    seed(settings, roles)
    down = cli_run(cli_env, "db", "downgrade", "--to", "base")
    assert down.returncode == 0, down.stderr
    assert "rolled back 0002_projected_tables" in down.stdout
    up = cli_run(cli_env, "db", "upgrade")
    assert up.returncode == 0, up.stderr
    # the new tables have no grants yet: rerunning roles restores them, policies included
    prefix = roles["owner"].removesuffix("_owner")
    assert cli_run(cli_env, "db", "roles", "--prefix", prefix, "--login").returncode == 0
    with api.open_ledger(as_role(settings, roles["writer"])) as app:
        assert append(app, complete("pi_3", customer="bob"))[0].status == "accepted"
    with connect(as_role(settings, roles["reader"]), autocommit=True) as conn, tenant(conn, ORG):
        assert {r[0] for r in conn.execute("SELECT stripe_payment_intent_id FROM purchases")} == {
            "pi_1",
            "pi_3",
        }
