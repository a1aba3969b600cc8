"""Roles: a login bound to one organization (``ledger db roles --organization``) sees only
its rows and never the log, whatever it sets; binding refuses a login that would see more
(the bound logins' part of ``test_roles.py``).
"""

from __future__ import annotations

import io
import uuid

import psycopg
import pytest
from psycopg import sql

from ledger.config import ConfigurationError, Settings
from ledger.database.connections import connect
from ledger.database.roles import bind_login, role_names
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
    ORG,
    ORG_2,
)
from tests.support import (
    cli as cli_run,
)

__all__ = ["roles"]  # the fixture, from tests/runtime_roles.py


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
