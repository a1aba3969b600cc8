"""Tables created over a non-empty log are filled before anything appends to them.

``db downgrade --to base`` then ``db upgrade`` used to leave six empty tables that looked
current (lag 0) and took appends that projected onto rows no longer there. Now the upgrade
marks them stale in the transaction that creates them and fills them before it returns; a
killed upgrade leaves the mark, which status reports and appends obey.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import orjson
import psycopg
import pytest
from psycopg import sql

from ledger import api
from ledger.commands import demo
from ledger.config import ConfigurationError, Settings
from ledger.database import migrations
from ledger.database.connections import connect
from ledger.service import Ledger
from tests.citus_support import PlacingFromHere
from tests.support import TABLES, answers, cli, dump_all, event_count, load_history, refund

Conn = psycopg.Connection[Any]


def load(app: Ledger, purchases: int = 60) -> None:
    load_history(app, purchases)


def states(cli_env: dict[str, str]) -> dict[str, dict[str, Any]]:
    done = cli(cli_env, "projections", "status", "--format", "json")
    assert done.returncode == 0, done.stderr
    return {s["name"]: s for s in json.loads(done.stdout)["projections"]}


def a_refund(conn: Conn) -> str:
    row = conn.execute(
        "SELECT stripe_payment_intent_id FROM purchases WHERE status = 'completed'"
        " ORDER BY 1 LIMIT 1"
    ).fetchone()
    assert row is not None
    return json.dumps(refund(row[0], "re_after_round_trip", 1, at="2026-06-01T00:00:00+00:00"))


def test_upgrade_over_a_full_log_fills_the_tables_before_it_returns(
    ledger_app: Ledger, conn: Conn, cli_env: dict[str, str], placing_from_here: PlacingFromHere
) -> None:
    load(ledger_app)
    before = dump_all(conn)
    placing_from_here()  # the round trip drops and makes the tables
    assert cli(cli_env, "db", "downgrade", "--to", "base").returncode == 0
    done = cli(cli_env, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    assert "applied 0002_projected_tables" in done.stdout
    assert "rebuild:" in done.stderr  # progress, on stderr
    assert dump_all(conn) == before
    assert all(not s["stale"] and s["lag"] == 0 for s in states(cli_env).values())
    assert cli(cli_env, "projections", "verify").returncode == 0
    line = a_refund(conn)
    appended = cli(cli_env, "append", stdin=line)
    assert [a["status"] for a in answers(appended.stdout)] == ["accepted"], appended.stderr


def test_a_killed_upgrade_leaves_the_mark_and_appends_refuse_until_filled(
    ledger_app: Ledger,
    settings: Settings,
    conn: Conn,
    cli_env: dict[str, str],
    placing_from_here: PlacingFromHere,
) -> None:
    load(ledger_app)
    before = dump_all(conn)
    line = a_refund(conn)
    placing_from_here()
    assert cli(cli_env, "db", "downgrade", "--to", "base").returncode == 0
    # what an upgrade killed after its migrations committed leaves: the tables, empty
    with connect(settings) as other:
        migrations.upgrade(other, settings.schema)
    assert all(conn.execute(f"SELECT count(*) FROM {t}").fetchone() == (0,) for t in TABLES)
    status = states(cli_env)
    for table in TABLES:
        assert status[table]["stale"] is True, table
        assert status[table]["lag"] is None and status[table]["position"] is None
    text = cli(cli_env, "projections", "status")
    assert "stale" in text.stdout and "ledger db upgrade" in text.stderr
    # a new appender refuses with one clear line, exit 2; nothing is written
    events = conn.execute("SELECT count(*) FROM ledger_events").fetchone()
    done = cli(cli_env, "append", stdin=line)
    assert done.returncode == 2, done.stdout
    assert "do not reflect the log" in done.stderr and "ledger db upgrade" in done.stderr
    with pytest.raises(ConfigurationError, match="do not reflect the log"):
        api.open_ledger(settings)
    # an appender opened before the round trip is refused by the database itself
    with pytest.raises(Exception, match="do not reflect the log"):
        list(api.append_lines(ledger_app, [line]))
    assert conn.execute("SELECT count(*) FROM ledger_events").fetchone() == events
    # the next upgrade has no migration to apply, and fills the tables all the same
    again = cli(cli_env, "db", "upgrade")
    assert again.returncode == 0, again.stderr
    assert "up to date" in again.stdout and "rebuild:" in again.stderr
    assert dump_all(conn) == before
    assert all(not s["stale"] for s in states(cli_env).values())
    assert [a["status"] for a in answers(cli(cli_env, "append", stdin=line).stdout)] == ["accepted"]


def test_an_upgrade_killed_during_its_rebuild_is_detected(
    ledger_app: Ledger,
    settings: Settings,
    conn: Conn,
    cli_env: dict[str, str],
    placing_from_here: PlacingFromHere,
) -> None:
    """A real SIGKILL, once the upgrade's migrations have committed and its rebuild
    waits at the switch (held up by a ROW SHARE lock on the log, which only the
    switch's EXCLUSIVE lock minds)."""
    load(ledger_app, 40)
    before = dump_all(conn)
    placing_from_here()
    assert cli(cli_env, "db", "downgrade", "--to", "base").returncode == 0
    with connect(settings, autocommit=True) as holder, holder.transaction():
        holder.execute("LOCK TABLE ledger_events IN ROW SHARE MODE")
        process = subprocess.Popen(
            [sys.executable, "-m", "ledger", "db", "upgrade"],
            env=cli_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 120
            while not _waiting_for_a_lock(conn, settings.schema):
                assert process.poll() is None, "the upgrade ended before its switch"
                assert time.monotonic() < deadline, "the upgrade's switch never waited"
                time.sleep(0.05)
            process.send_signal(signal.SIGKILL)
            process.wait()
        finally:
            if process.poll() is None:
                process.kill()
    assert all(conn.execute(f"SELECT count(*) FROM {t}").fetchone() == (0,) for t in TABLES)
    assert all(s["stale"] for s in states(cli_env).values())
    register = json.dumps({"type": "user.register", "user_id": "after_the_kill"})
    assert cli(cli_env, "append", stdin=register).returncode == 2
    assert cli(cli_env, "db", "upgrade").returncode == 0
    assert dump_all(conn) == before
    assert cli(cli_env, "append", stdin=register).returncode == 0


def test_a_round_trip_to_base_leaves_the_read_check_a_fresh_upgrade_makes(
    settings: Settings, conn: Conn, placing_from_here: PlacingFromHere
) -> None:
    """The read-version check (0004, its function made routable by 0019) belongs to the log:
    ``--to base`` keeps it, so the next upgrade does not make 0004's form again over 0019's
    (its correlated subquery over ``unnest``, which Citus refuses at every append of a
    distributed log; on one server the same answers, the form a distributed log then
    inherits). A schema that went through that round trip before gets 0019's form back
    from migration 0030."""
    routable = _read_check(conn, settings.schema)
    assert "LEFT JOIN" in routable  # 0019's form, as a fresh upgrade leaves it
    conn.commit()
    placing_from_here()
    with connect(settings) as other:
        migrations.downgrade(other, settings.schema, migrations.BASE)
        kept = other.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE version = 4").format(
                sql.Identifier(settings.schema, "ledger_schema_migrations")
            )
        ).fetchone()
        assert kept == (1,)
        assert _read_check(other, settings.schema) == routable
        migrations.upgrade(other, settings.schema)
        other.commit()
    assert _read_check(conn, settings.schema) == routable
    conn.commit()
    # what the round trip left before: 0030 not yet there, 0004 rolled back and made again
    found = {m.version: m for m in migrations.discover()}
    with connect(settings) as other:
        migrations.downgrade(other, settings.schema, 29)
        with other.transaction():
            other.execute(
                sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(settings.schema))
            )
            other.execute(found[4].down.encode())
            other.execute(found[4].up.encode())
        assert _read_check(other, settings.schema) != routable
        other.commit()
        assert [m.version for m in migrations.upgrade(other, settings.schema)] == [
            v for v in sorted(found) if v > 29
        ]
        assert _read_check(other, settings.schema) == routable
        other.commit()


def _read_check(conn: Conn, schema: str) -> str:
    """The body of the read-version check in ``schema``."""
    row = conn.execute(
        "SELECT prosrc FROM pg_proc WHERE oid = to_regprocedure(%s)",
        (
            f"{sql.Identifier(schema).as_string(conn)}.ledger_assert_read_versions(uuid[], bigint[])",
        ),
    ).fetchone()
    assert row is not None
    return str(row[0])


def _waiting_for_a_lock(conn: Conn, schema: str) -> bool:
    """Whether a backend waits to lock the log of ``schema`` (a rebuild's switch)."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        " AND pid <> pg_backend_pid() AND query LIKE 'LOCK TABLE %%ledger_events%%'"
        " AND strpos(query, %s) > 0",
        (f'"{schema}"',),
    ).fetchone()
    return bool(row and row[0])


def test_an_upgrade_over_an_empty_log_marks_nothing(empty_settings: Settings) -> None:
    api.upgrade(empty_settings)
    with connect(empty_settings, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM ledger_stale_projections").fetchone() == (0,)


def test_a_database_left_empty_by_the_previous_version_is_filled_on_upgrade(
    ledger_app: Ledger,
    settings: Settings,
    conn: Conn,
    empty_settings: Settings,
    placing_from_here: PlacingFromHere,
) -> None:
    """The previous version's round trip left empty tables and no mark: the upgrade to
    this version (migration log_guards) notices that organizations are gone. The history
    holds no heartbeats: the previous version kept them in the log, and a store holding
    heartbeats refuses to be rolled back (they exist nowhere else); the upgrade of a log
    that holds heartbeats is tested in test_playback_store.py.

    The previous version's log is a single chain (and its revocations of version 2): the
    events appended here (chained per
    organization, which no down migration can undo) are copied into a schema migrated up
    to just before the chains (migration organization_chains), whose trigger chains them
    as that version did; that schema is then taken down past log_guards."""
    money = [c for c in demo.history(purchases=20) if c["type"] != "playback.progress"]
    assert len(money) > 20
    list(api.append_lines(ledger_app, [orjson.dumps(c) for c in money]))
    before = dump_all(conn)
    found = {m.name: m for m in migrations.discover()}
    guards, chains = found["log_guards"], found["organization_chains"]
    new, old = sql.Identifier(settings.schema), sql.Identifier(empty_settings.schema)
    placing_from_here()  # the previous version's schema migrated, then taken down
    with connect(empty_settings) as previous:
        migrations.upgrade(previous, empty_settings.schema, to=chains.version - 1)
        with previous.transaction():
            # a revocation as that version wrote it: version 2, no organization (0031)
            previous.execute(
                sql.SQL(
                    "INSERT INTO {}.ledger_events"
                    " (originator_id, originator_version, topic, state, recorded_at)"
                    " SELECT originator_id, originator_version, topic, CASE topic"
                    "   WHEN 'AccessRevoked' THEN convert_to((convert_from(state, 'UTF8')::jsonb"
                    "     - 'organization_id' || '{{\"class_version\": 2}}')::text, 'UTF8')"
                    "   ELSE state END, recorded_at"
                    " FROM {}.ledger_events ORDER BY notification_id"
                ).format(old, new)
            )
            previous.execute(
                sql.SQL("INSERT INTO {}.ledger_subjects SELECT * FROM {}.ledger_subjects").format(
                    old, new
                )
            )
        # the copy committed first: on Citus its read of the distributed log is a parallel
        # operation, after which the down files' DROP FUNCTION (of functions Citus keeps on
        # every node) is refused in the same transaction; the previous version had no
        # distributed log to copy from
        with previous.transaction():
            for migration in reversed(migrations.discover()):  # as the previous version left it
                if guards.version <= migration.version < chains.version:
                    previous.execute(migration.down.encode())
            previous.execute(
                "DELETE FROM ledger_schema_migrations WHERE version >= %s", (guards.version,)
            )
            previous.execute("TRUNCATE organizations, users, content CASCADE")
    env = dict(os.environ, LEDGER_DATABASE_URL=empty_settings.url)
    done = cli(dict(env, LEDGER_SCHEMA=empty_settings.schema), "db", "upgrade")
    assert done.returncode == 0, done.stderr
    with connect(empty_settings, autocommit=True) as upgraded:
        assert dump_all(upgraded) == before
        origin = upgraded.execute("SELECT events FROM ledger_chain_origin").fetchone()
    assert origin is not None and origin[0] == event_count(conn)


@pytest.mark.parametrize("budget", ["abc", "1e3", "", "0", "-5", " 12x"])
def test_a_bad_row_budget_is_one_configuration_error(
    ledger_app: Ledger, cli_env: dict[str, str], budget: str, placing_from_here: PlacingFromHere
) -> None:
    load(ledger_app, 5)
    env = dict(cli_env, LEDGER_REBUILD_ROW_BUDGET=budget)
    placing_from_here()  # a verify makes its scratch schema before it reads the budget
    for args in (("projections", "rebuild"), ("projections", "verify")):
        done = cli(env, *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stderr.strip().splitlines() == [done.stderr.strip()]
        assert "LEDGER_REBUILD_ROW_BUDGET" in done.stderr and "Traceback" not in done.stderr
    assert (
        cli(dict(cli_env, LEDGER_REBUILD_ROW_BUDGET="7"), "projections", "rebuild").returncode == 0
    )
