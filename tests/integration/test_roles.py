"""Roles: what each may do, and the reader's row-level security by organization."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool

from ledger import api
from ledger.config import Settings
from ledger.db import connect
from ledger.roles import create_roles
from ledger.tenancy import tenant
from projections.rebuild import rebuild
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

Conn = psycopg.Connection[Any]


@pytest.fixture
def roles(settings: Settings) -> Iterator[dict[str, str]]:
    prefix = f"r{uuid.uuid4().hex[:8]}"
    with connect(settings, autocommit=True) as conn:
        names = create_roles(conn, settings.schema, prefix, login=True)
    yield names
    with psycopg.connect(settings.url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(settings.schema))
        )
        for name in names.values():
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


def test_the_reader_sees_only_its_organization_and_never_the_log(
    settings: Settings, roles: dict[str, str]
) -> None:
    seed(settings, roles)
    with connect(as_role(settings, roles["reader"]), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM ledger_events")
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
    from tests.support import cli

    prefix = f"c{uuid.uuid4().hex[:8]}"
    try:
        for _ in range(2):
            done = cli(cli_env, "db", "roles", "--prefix", prefix)
            assert done.returncode == 0, done.stderr
            assert f"reader\t{prefix}_reader" in done.stdout
    finally:
        with psycopg.connect(settings.url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(settings.schema))
            )
            for kind in ("owner", "writer", "projector", "reader"):
                name = sql.Identifier(f"{prefix}_{kind}")
                conn.execute(sql.SQL("DROP OWNED BY {}").format(name))
                conn.execute(sql.SQL("DROP ROLE {}").format(name))


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
