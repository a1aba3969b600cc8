"""Roles: what each may do, and the reader's row-level security by organization."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool

from ledger import api
from ledger.config import ConfigurationError, Settings
from ledger.database.connections import connect
from ledger.database.roles import bind_login, create_roles, role_names
from ledger.reading.tables import tenant
from ledger.upkeep.rebuild import rebuild
from tests.support import (
    CONTENT,
    CONTENT_2,
    ORG,
    ORG_2,
    append,
    catalogue,
    complete,
    grant,
    org,
    play,
    publish,
    user,
)
from tests.support import (
    cli as cli_run,
)

Conn = psycopg.Connection[Any]


@pytest.fixture
def roles(settings: Settings) -> Iterator[dict[str, str]]:
    prefix = f"r{uuid.uuid4().hex[:8]}"
    with connect(settings, autocommit=True) as conn:
        names = create_roles(conn, settings.schema, prefix, login=True)
    yield names
    drop_roles(settings, [*names.values(), f"{prefix}_bound_a", f"{prefix}_bound_b"])


def drop_roles(settings: Settings, names: Iterable[str]) -> None:
    """The test's schema first (its objects), then the roles and what they still own,
    taking turns with ``ledger db roles`` elsewhere (both change the database's grants)."""
    with psycopg.connect(settings.url, autocommit=True) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('ledger db roles'))")
        conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(settings.schema))
        )
        for name in names:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def as_role(settings: Settings, role: str) -> Settings:
    return Settings(url=make_conninfo(settings.url, user=role), schema=settings.schema)


def seed(settings: Settings, roles: dict[str, str]) -> None:
    with api.open_ledger(as_role(settings, roles["writer"])) as app:
        results = append(
            app,
            *catalogue(),
            org(ORG_2, "Other"),
            user("carol"),
            publish(CONTENT_2, ORG_2, title="Theirs"),
            complete("pi_1"),
            complete("pi_2", customer="carol", content_id=CONTENT_2),
            grant("bob"),
            play("alice", 10),
        )
    assert {r.status for r in results} == {"accepted"}


def test_the_writer_appends_but_cannot_alter_the_log_or_the_schema(
    settings: Settings, roles: dict[str, str]
) -> None:
    seed(settings, roles)
    with connect(as_role(settings, roles["writer"]), autocommit=True) as conn:
        for statement in (
            "ALTER TABLE ledger_events ADD COLUMN forged text",
            "DROP TABLE purchases",
            "CREATE TABLE intruder (id int)",
            "UPDATE ledger_events SET topic = 'x'",
            "DELETE FROM ledger_events",
            "TRUNCATE ledger_events",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_the_writer_draws_the_stores_positions_and_the_reader_only_reads_them(
    settings: Settings, roles: dict[str, str]
) -> None:
    """On Citus a group of heartbeats draws its organization's positions by an upsert of its
    row of ``playback_heads`` (migration 0027) as the writer; a cursor's reader reads it."""
    table = sql.Identifier(settings.schema, "playback_heads")
    with connect(settings, autocommit=True) as conn:
        allowed = {
            (role, privilege): conn.execute(
                "SELECT has_table_privilege(%s, %s::regclass, %s)",
                (roles[role], table.as_string(conn), privilege),
            ).fetchone()
            for role in ("writer", "projector", "reader")
            for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE")
        }
    assert {key for key, value in allowed.items() if value == (True,)} == {
        ("writer", "SELECT"),
        ("writer", "INSERT"),
        ("writer", "UPDATE"),
        ("projector", "SELECT"),
        ("reader", "SELECT"),
    }


def test_the_projector_reads_the_log_and_cannot_append(
    settings: Settings, roles: dict[str, str]
) -> None:
    seed(settings, roles)
    with connect(as_role(settings, roles["projector"]), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) > 0 FROM ledger_events").fetchone() == (True,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO ledger_events (originator_id, originator_version, topic, state) VALUES (gen_random_uuid(), 1, 'x', '')"
            )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DROP TABLE purchases")


def test_the_reader_sees_only_its_organization_and_the_events_naming_it(
    settings: Settings, roles: dict[str, str]
) -> None:
    """Its rows of the projected tables, and of the log only the events that name its
    organization (issue 24: a token bound to one organization reads its revenue and
    events through this role); nothing without a tenant."""
    seed(settings, roles)
    with connect(as_role(settings, roles["reader"]), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM ledger_events").fetchone() == (0,)
        for organization, intent in ((ORG, "pi_1"), (ORG_2, "pi_2")):
            with tenant(conn, organization):
                named = conn.execute(
                    "SELECT DISTINCT convert_from(state, 'UTF8')::json ->> 'organization_id'"
                    " FROM ledger_events"
                ).fetchall()
                assert named == [(organization,)]
                completed = conn.execute(
                    "SELECT convert_from(state, 'UTF8')::json ->> 'stripe_payment_intent_id'"
                    " FROM ledger_events WHERE topic = 'PurchaseCompleted'"
                ).fetchall()
                assert completed == [(intent,)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute("DELETE FROM ledger_events")
        assert conn.execute("SELECT count(*) FROM purchases").fetchone() == (
            0,
        )  # no tenant: nothing
        with tenant(conn, ORG):
            assert [
                r[0] for r in conn.execute("SELECT stripe_payment_intent_id FROM purchases")
            ] == ["pi_1"]
            assert {r[0] for r in conn.execute("SELECT id::text FROM organizations")} == {ORG}
            assert {r[0] for r in conn.execute("SELECT id::text FROM content")} == {CONTENT}
            assert conn.execute("SELECT count(*) FROM content_access").fetchone() == (2,)
            assert conn.execute("SELECT count(*) FROM video_playback").fetchone() == (1,)
            assert {r[0] for r in conn.execute("SELECT id FROM users")} == {
                "alice",
                "bob",
                "creator",
            }
        with tenant(conn, ORG_2):
            assert [
                r[0] for r in conn.execute("SELECT stripe_payment_intent_id FROM purchases")
            ] == ["pi_2"]
            assert conn.execute("SELECT count(*) FROM video_playback").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute("UPDATE purchases SET status = 'failed'")


def test_a_pooled_connection_does_not_carry_a_tenant_to_the_next_borrower(
    settings: Settings, roles: dict[str, str]
) -> None:
    seed(settings, roles)
    reader = as_role(settings, roles["reader"])
    options = f"-c search_path={settings.schema}"
    with ConnectionPool(
        reader.url, min_size=1, max_size=1, kwargs={"options": options, "autocommit": True}
    ) as pool:
        with pool.connection() as conn, tenant(conn, ORG):
            assert conn.execute("SELECT count(*) FROM purchases").fetchone() == (1,)
        with pool.connection() as conn:
            assert conn.execute("SELECT count(*) FROM purchases").fetchone() == (0,)
            assert conn.execute(
                "SELECT current_setting('ledger.organization_id', true)"
            ).fetchone() in ((None,), ("",))


def test_grants_and_row_security_survive_a_rebuild(
    settings: Settings, roles: dict[str, str]
) -> None:
    seed(settings, roles)
    rebuild(settings, stream=io.StringIO())
    with connect(as_role(settings, roles["reader"]), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM purchases").fetchone() == (0,)
        with tenant(conn, ORG_2):
            assert [
                r[0] for r in conn.execute("SELECT stripe_payment_intent_id FROM purchases")
            ] == ["pi_2"]
            assert conn.execute("SELECT count(*) FROM video_playback").fetchone() == (0,)
    with api.open_ledger(as_role(settings, roles["writer"])) as app:
        assert append(app, complete("pi_3", customer="bob"))[0].status == "accepted"


def test_roles_command_is_safe_to_rerun(settings: Settings, cli_env: dict[str, str]) -> None:
    cli = cli_run
    prefix = f"c{uuid.uuid4().hex[:8]}"
    try:
        for _ in range(2):
            done = cli(cli_env, "db", "roles", "--prefix", prefix)
            assert done.returncode == 0, done.stderr
            assert f"reader\t{prefix}_reader" in done.stdout
    finally:
        drop_roles(settings, role_names(prefix).values())


def bound(settings: Settings, roles: dict[str, str], name: str, organization: str) -> Settings:
    prefix = roles["owner"].removesuffix("_owner")
    with connect(settings, autocommit=True) as conn:
        assert bind_login(conn, settings.schema, prefix, uuid.UUID(organization), name)
    return as_role(settings, name)


def test_a_bound_login_sees_only_its_organization_whatever_it_sets(
    settings: Settings, roles: dict[str, str]
) -> None:
    seed(settings, roles)
    prefix = roles["owner"].removesuffix("_owner")
    login = bound(settings, roles, f"{prefix}_bound_a", ORG)

    def visible(conn: Conn) -> tuple[list[str], set[str], int]:
        intents = [r[0] for r in conn.execute("SELECT stripe_payment_intent_id FROM purchases")]
        organizations = {r[0] for r in conn.execute("SELECT id::text FROM organizations")}
        playback = conn.execute("SELECT count(*) FROM video_playback").fetchone()
        return intents, organizations, int(playback[0]) if playback else -1

    mine = (["pi_1"], {ORG}, 1)
    with connect(login, autocommit=True) as conn:
        assert visible(conn) == mine
        assert {r[0] for r in conn.execute("SELECT id FROM users")} == {"alice", "bob", "creator"}
        conn.execute(sql.SQL("SET ledger.organization_id = {}").format(sql.Literal(ORG_2)))
        assert visible(conn) == mine
        conn.execute("SELECT set_config('ledger.organization_id', %s, false)", (ORG_2,))
        assert visible(conn) == mine
        with tenant(conn, ORG_2):  # the trusted pool's way: no effect on a bound login
            assert visible(conn) == mine
        conn.execute("RESET ledger.organization_id")
        conn.execute("RESET ALL")
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(settings.schema)))
        assert visible(conn) == mine
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(roles["tenant"])))
        assert visible(conn) == ([], set(), 0)  # the group itself is bound to nothing
        conn.execute("RESET ROLE")
        for statement in (
            "SELECT * FROM ledger_events",
            f"UPDATE ledger_tenant_logins SET organization_id = '{ORG_2}'",
            f"INSERT INTO ledger_tenant_logins (login, organization_id) VALUES ('x', '{ORG_2}')",
            "DELETE FROM ledger_tenant_logins",
            "UPDATE purchases SET status = 'failed'",
            "SELECT * FROM ledger_projection_state",
            "CREATE TABLE intruder (id int)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute(statement)
        for role in ("reader", "writer", "owner"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(roles[role])))
        # its own binding only
        assert conn.execute("SELECT login FROM ledger_tenant_logins").fetchall() == [
            (f"{prefix}_bound_a",)
        ]
    other = bound(settings, roles, f"{prefix}_bound_b", ORG_2)
    with connect(other, autocommit=True) as conn:
        assert visible(conn) == (["pi_2"], {ORG_2}, 0)
    # the policies survive a rebuild
    rebuild(settings, stream=io.StringIO())
    with connect(login, autocommit=True) as conn:
        assert visible(conn) == mine


def test_binding_refuses_a_login_that_would_see_more(
    settings: Settings, roles: dict[str, str], conn: Conn
) -> None:
    prefix = roles["owner"].removesuffix("_owner")
    for role in ("reader", "writer", "tenant"):
        with pytest.raises(ConfigurationError):
            bind_login(conn, settings.schema, prefix, uuid.UUID(ORG), roles[role])
    name = f"{prefix}_bound_a"
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    conn.execute(
        sql.SQL("GRANT {} TO {}").format(sql.Identifier(roles["reader"]), sql.Identifier(name))
    )
    with pytest.raises(ConfigurationError, match="member of"):
        bind_login(conn, settings.schema, prefix, uuid.UUID(ORG), name)
    assert conn.execute("SELECT count(*) FROM ledger_tenant_logins").fetchone() == (0,)


def test_the_cli_binds_a_login_and_checks_its_flags(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    prefix = f"c{uuid.uuid4().hex[:8]}"
    login = f"{prefix}_login"
    try:
        done = cli_run(
            cli_env, "db", "roles", "--prefix", prefix, "--organization", ORG, "--login", login
        )
        assert done.returncode == 0, done.stderr
        assert f"login\t{login}\tbound to organization {ORG}" in done.stdout
        assert "no organization" in done.stderr  # nothing registered yet: said, not refused
        with connect(settings, autocommit=True) as conn:
            assert conn.execute(
                "SELECT login, organization_id::text FROM ledger_tenant_logins"
            ).fetchall() == [(login, ORG)]
            logins = conn.execute(
                "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE %s ORDER BY 1",
                (f"{prefix}%",),
            ).fetchall()
        assert dict(logins)[login] is True
        assert not any(can for name, can in logins if name != login)  # groups stay NOLOGIN
        for args in (
            ["--organization", ORG],
            ["--organization", "not-a-uuid", "--login", login],
            ["--login", login],
        ):
            bad = cli_run(cli_env, "db", "roles", "--prefix", prefix, *args)
            assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, args
        # the old flag keeps its meaning: the group roles may log in
        assert cli_run(cli_env, "db", "roles", "--prefix", prefix, "--login").returncode == 0
        with connect(settings, autocommit=True) as conn:
            can = conn.execute(
                "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (f"{prefix}_reader",)
            ).fetchone()
        assert can == (True,)
    finally:
        drop_roles(settings, [*role_names(prefix).values(), login])


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


def test_the_owner_runs_migrations_and_rebuilds(
    settings: Settings, roles: dict[str, str], cli_env: dict[str, str]
) -> None:
    seed(settings, roles)
    owner = dict(cli_env, LEDGER_DATABASE_URL=as_role(settings, roles["owner"]).url)
    for args in (
        ("projections", "rebuild"),
        ("db", "downgrade", "--to", "base"),
        ("db", "upgrade"),
        ("projections", "verify"),
    ):
        done = cli_run(owner, *args)
        assert done.returncode == 0, (args, done.stderr)


def test_what_the_writer_can_do_to_projected_rows_verify_names(
    settings: Settings, roles: dict[str, str], cli_env: dict[str, str]
) -> None:
    """The writer must write projected rows (inline projections), so it can edit them
    directly: `projections verify` names every such row, `audit verify` the purchases."""
    seed(settings, roles)
    with connect(as_role(settings, roles["writer"]), autocommit=True) as conn:
        conn.execute(
            "UPDATE purchases SET refunded_amount_cents = 1 WHERE stripe_payment_intent_id = 'pi_1'"
        )
        conn.execute("DELETE FROM video_playback")
        conn.execute("INSERT INTO users (id) VALUES ('forged')")
    done = cli_run(cli_env, "projections", "verify")
    assert done.returncode == 1
    assert (
        f"purchases (organization_id={ORG}, stripe_payment_intent_id=pi_1): "
        "refunded_amount_cents live=1 log=0" in done.stdout
    )
    assert (
        f"video_playback (organization_id={ORG}, user_id=alice" in done.stdout
        and "missing from the live table" in done.stdout
    )
    assert "users (id=forged): extra row in the live table" in done.stdout
    audit = cli_run(cli_env, "audit", "verify")
    assert audit.returncode == 1 and "FAIL projections" in audit.stdout
    # and a rebuild puts the rows back as the log says
    assert cli_run(cli_env, "projections", "rebuild").returncode == 0
    assert cli_run(cli_env, "projections", "verify").returncode == 0


def test_the_projector_runs_a_consumer_and_moves_its_checkpoint(
    settings: Settings, roles: dict[str, str]
) -> None:
    import ledger

    seed(settings, roles)
    with connect(settings, autocommit=True) as conn:
        conn.execute("CREATE TABLE seen (position bigint PRIMARY KEY)")
        conn.execute(
            sql.SQL("GRANT SELECT, INSERT ON seen TO {}").format(sql.Identifier(roles["projector"]))
        )

    class Seen(ledger.Consumer):
        name = "seen"

        def handle(self, conn: Conn, record: ledger.EventRecord) -> None:
            conn.execute("INSERT INTO seen VALUES (%s)", (record.position,))

    projector = as_role(settings, roles["projector"])
    run = ledger.run_consumer(projector, Seen())
    assert run.handled > 0 and ledger.consumer_position(projector, "seen") == run.position
