"""The appends connect with the database URL exactly as given, as every other command does:
its socket and role, libpq's defaults and ``PG*`` variables, ``sslmode``,
``application_name``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ledger import api
from ledger.config import ConfigurationError, Settings
from ledger.database.connections import connect
from ledger.database.roles import create_roles
from ledger.service import Ledger
from tests import citus_support
from tests.support import append, catalogue, cli, event_count, statuses, user

Conn = psycopg.Connection[Any]


def lines(*commands: dict[str, Any]) -> str:
    return "".join(json.dumps(c) + "\n" for c in commands)


@pytest.fixture
def writer(settings: Settings, conn: Conn) -> Iterator[str]:
    """A login role with the writer's privileges, and a trigger that records, for every
    users row inserted, the role that inserted it (``inserted_by``)."""
    prefix = f"u{uuid.uuid4().hex[:8]}"
    names = create_roles(conn, settings.schema, prefix, login=True)
    role = sql.Identifier(names["writer"])
    conn.execute("CREATE TABLE inserted_by (id text, role name)")
    conn.execute(sql.SQL("GRANT INSERT ON inserted_by TO {}").format(role))
    conn.execute(
        sql.SQL(
            "CREATE FUNCTION record_inserter() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN INSERT INTO {} VALUES (NEW.id, current_user); RETURN NEW; END $$"
        ).format(sql.Identifier(settings.schema, "inserted_by"))
    )
    conn.execute(
        "CREATE TRIGGER record_inserter AFTER INSERT ON users "
        "FOR EACH ROW EXECUTE FUNCTION record_inserter()"
    )
    yield names["writer"]
    conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(settings.schema)))
    for name in names.values():
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def socket_url(conn: Conn) -> str:
    """The test server's database through its unix socket, with neither host nor user."""
    row = conn.execute(
        "SELECT split_part(current_setting('unix_socket_directories'), ',', 1), "
        "current_setting('port'), current_database()"
    ).fetchone()
    assert row is not None and row[0], "the server listens on no unix socket"
    directory, port, database = row
    # a directory with a space is quoted in the setting (the embedded server quotes its own)
    return make_conninfo(dbname=database, host=directory.strip().strip('"'), port=port)


@pytest.mark.single_server(citus_support.REFERENCE_TRIGGER)
def test_appends_through_a_unix_socket_land_as_the_role_libpq_picks(
    settings: Settings, cli_env: dict[str, str], conn: Conn, writer: str
) -> None:
    """No user in the URL: libpq takes ``PGUSER``; the appends must not become TCP to
    localhost as ``postgres``."""
    url = socket_url(conn)
    assert "user" not in conninfo_to_dict(url)
    env = cli_env | {"LEDGER_DATABASE_URL": url, "PGUSER": writer}
    done = cli(env, "append", stdin=lines(*catalogue()))
    assert done.returncode == 0, done.stderr
    rows = conn.execute("SELECT id, role FROM inserted_by ORDER BY id").fetchall()
    assert rows == [("alice", writer), ("bob", writer), ("creator", writer)]


def refused_like_db_status(env: dict[str, str], settings: Settings, conn: Conn) -> None:
    """``ledger append`` fails with exactly the line of ``ledger db status``, writes
    nothing, and the write side opened directly (without the API's checks) refuses too."""
    status = cli(env, "db", "status")
    appended = cli(env, "append", stdin=lines(user("zed")))
    assert status.returncode == 2, status.stdout
    assert status.stderr.startswith("ledger: cannot connect to the database: ")
    assert len(status.stderr.splitlines()) == 1
    assert (appended.returncode, appended.stdout, appended.stderr) == (2, "", status.stderr)
    with pytest.raises(ConfigurationError) as refused:
        Ledger(Settings(url=env["LEDGER_DATABASE_URL"], schema=settings.schema))
    assert f"ledger: {refused.value}\n" == status.stderr
    assert event_count(conn) == 0


def test_sslmode_require_against_a_server_without_tls_fails_the_appends_as_db_status(
    settings: Settings, cli_env: dict[str, str], conn: Conn
) -> None:
    """No silent downgrade to a connection without TLS. Over a unix socket libpq never
    uses TLS and ignores ``sslmode``: there both commands connect alike."""
    assert conn.execute("SHOW ssl").fetchone() == ("off",)
    url = make_conninfo(settings.url, sslmode="require")
    env = cli_env | {"LEDGER_DATABASE_URL": url}
    host = str(conninfo_to_dict(settings.url).get("host") or "")
    if host and not host.startswith("/"):
        refused_like_db_status(env, settings, conn)
    else:  # the embedded server listens on a unix socket only
        assert cli(env, "db", "status").returncode == 0
        appended = cli(env, "append", stdin=lines(user("zed")))
        assert appended.returncode == 0, appended.stderr
        assert event_count(conn) == 1


def test_any_url_parameter_the_server_refuses_fails_the_appends_as_db_status(
    settings: Settings, cli_env: dict[str, str], conn: Conn
) -> None:
    """A parameter that holds on every transport: this server is a primary, and the
    URL asks for a read-only one."""
    assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
    url = make_conninfo(settings.url, target_session_attrs="read-only")
    refused_like_db_status(cli_env | {"LEDGER_DATABASE_URL": url}, settings, conn)


def test_application_name_from_the_url_names_the_writer_in_pg_stat_activity(
    settings: Settings, conn: Conn
) -> None:
    name = f"ledger-test-{uuid.uuid4().hex[:8]}"
    url = make_conninfo(settings.url, application_name=name)
    with api.open_ledger(Settings(url=url, schema=settings.schema)) as app:
        assert statuses(append(app, user("zed"))) == ["accepted"]
        datastore = app.recorder.datastore  # type: ignore[attr-defined]
        with datastore.get_connection() as pooled:
            writer_pid = pooled.info.backend_pid
        row = conn.execute(
            "SELECT application_name FROM pg_stat_activity WHERE pid = %s", (writer_pid,)
        ).fetchone()
        assert row == (name,)


def test_a_url_that_names_nothing_takes_everything_from_the_pg_variables(
    settings: Settings, cli_env: dict[str, str], conn: Conn
) -> None:
    """``postgresql://``: host, port, database and user all come from ``PG*`` variables,
    for the appends as for every other command."""
    info = conn.info
    env = cli_env | {
        "LEDGER_DATABASE_URL": "postgresql://",
        "PGHOST": info.host,
        "PGPORT": str(info.port),
        "PGDATABASE": info.dbname,
        "PGUSER": info.user,
    }
    done = cli(env, "append", stdin=lines(*catalogue()))
    assert done.returncode == 0, done.stderr
    assert event_count(conn) == 5


def test_a_connect_timeout_in_the_url_is_kept(settings: Settings) -> None:
    """The ledger adds a connect timeout only where the URL and PGCONNECT_TIMEOUT set none."""
    from ledger.database.connections import conninfo

    url = make_conninfo(settings.url, connect_timeout=3)
    assert conninfo_to_dict(conninfo(url))["connect_timeout"] == "3"
    assert conninfo_to_dict(conninfo(settings.url))["connect_timeout"] == "10"
    with connect(Settings(url=url, schema=settings.schema), autocommit=True) as probe:
        assert probe.info.get_parameters()["connect_timeout"] == "3"
