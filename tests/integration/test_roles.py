"""Roles: what each may do, and the reader's row-level security by organization."""

from __future__ import annotations

import io
import uuid

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import ConnectionPool

from ledger import api
from ledger.config import Settings
from ledger.database.connections import connect
from ledger.database.roles import role_names
from ledger.reading.tables import tenant
from ledger.upkeep.rebuild import rebuild
from tests.runtime_roles import (
    Conn,
    as_role,
    drop_roles,
    roles,
    seed,
)
from tests.support import (
    CONTENT,
    ORG,
    ORG_2,
    append,
    complete,
)
from tests.support import (
    cli as cli_run,
)

__all__ = ["roles"]  # the fixture, from tests/runtime_roles.py


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
