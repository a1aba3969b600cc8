"""Operator commands never touch what is not theirs, never race each other into a state
that only hand-written SQL repairs, and answer every database state in one line."""

from __future__ import annotations

import io
import threading
import time
from typing import Any

import psycopg
from psycopg import sql

from ledger.config import Settings
from ledger.database import migrations
from ledger.database.connections import connect
from ledger.service import Ledger
from ledger.upkeep.rebuild import rebuild
from ledger.upkeep.verify import verify
from tests import forkserve
from tests.operator_lines import load, one_line
from tests.support import cli, dump_all

Conn = psycopg.Connection[Any]


# --- rebuilds drop only what they created ---------------------------------------------


def test_a_rebuild_leaves_schemas_of_the_old_names_alone(
    ledger_app: Ledger, settings: Settings, conn: Conn, cli_env: dict[str, str]
) -> None:
    """<schema>_rebuild and <schema>_retired were dropped with CASCADE by every rebuild."""
    load(ledger_app)
    before = dump_all(conn)
    others = [f"{settings.schema}_rebuild", f"{settings.schema}_retired"]
    try:
        for name in others:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
            conn.execute(
                sql.SQL("CREATE TABLE {} AS SELECT 42 AS kept").format(
                    sql.Identifier(name, "backup")
                )
            )
        done = cli(cli_env, "projections", "rebuild")
        assert done.returncode == 0, done.stderr
        for name in others:
            assert conn.execute(
                sql.SQL("SELECT kept FROM {}").format(sql.Identifier(name, "backup"))
            ).fetchall() == [(42,)]
        assert dump_all(conn) == before
        leftovers = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s ORDER BY 1",
            (f"{settings.schema}\\_%",),
        ).fetchall()
        assert [r[0] for r in leftovers] == sorted(others)  # the rebuild left none of its own
    finally:
        for name in others:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def test_a_rebuild_never_drops_what_depends_on_the_tables(
    ledger_app: Ledger, settings: Settings, conn: Conn, cli_env: dict[str, str]
) -> None:
    """Another application's view on purchases: the rebuild refuses rather than CASCADE."""
    load(ledger_app, 10)
    before = dump_all(conn)
    theirs = f"{settings.schema}_app"
    try:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(theirs)))
        conn.execute(
            sql.SQL("CREATE VIEW {} AS SELECT count(*) AS n FROM {}").format(
                sql.Identifier(theirs, "sales"), sql.Identifier(settings.schema, "purchases")
            )
        )
        done = cli(cli_env, "projections", "rebuild")
        assert done.returncode == 2
        line = one_line(done)
        assert "cannot replace" in line and "sales" in line and "unchanged" in line
        assert conn.execute(
            sql.SQL("SELECT n FROM {}").format(sql.Identifier(theirs, "sales"))
        ).fetchone() == (len(before["purchases"]),)
        assert dump_all(conn) == before
        # a rebuild of the tables the view does not read goes through
        assert cli(cli_env, "projections", "rebuild", "--only", "video_playback").returncode == 0
    finally:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(theirs)))


# --- migrations and rebuilds share one lock --------------------------------------------


def test_a_rebuild_waits_for_a_migration_of_the_same_schema(
    ledger_app: Ledger, settings: Settings, conn: Conn
) -> None:
    load(ledger_app, 10)
    output = io.StringIO()
    finished = threading.Event()

    def run() -> None:
        rebuild(settings, stream=output)
        finished.set()

    with connect(settings, autocommit=True) as holder, holder.transaction():
        migrations.lock(holder, settings.schema)
        thread = threading.Thread(target=run)
        thread.start()
        # the event: the rebuild says it waits, and its backend waits for the advisory lock
        deadline = time.monotonic() + 60
        while not (
            "waiting for another migration or rebuild" in output.getvalue()
            and conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_locks h JOIN pg_locks w"
                " ON (w.classid, w.objid, w.objsubid) = (h.classid, h.objid, h.objsubid)"
                " WHERE h.locktype = 'advisory' AND w.locktype = 'advisory'"
                " AND h.pid = %s AND h.granted AND NOT w.granted)",
                (holder.info.backend_pid,),
            ).fetchone()
            == (True,)
        ):
            assert thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.01)
        assert not finished.is_set()
    thread.join(60)
    assert finished.is_set()


def test_a_rebuild_after_a_downgrade_refuses_and_creates_nothing(
    ledger_app: Ledger, conn: Conn, cli_env: dict[str, str]
) -> None:
    load(ledger_app, 10)
    assert cli(cli_env, "db", "downgrade", "--to", "base").returncode == 0
    tables = conn.execute(
        "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
    ).fetchone()
    done = cli(cli_env, "projections", "rebuild")
    assert done.returncode == 2 and "run `ledger db upgrade`" in one_line(done)
    assert (
        conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchone()
        == tables
    )
    assert cli(cli_env, "db", "upgrade").returncode == 0


def test_a_rebuild_racing_a_downgrade_leaves_a_state_upgrade_resolves(
    ledger_app: Ledger, conn: Conn, cli_env: dict[str, str]
) -> None:
    load(ledger_app, 60)
    before = dump_all(conn)
    # two processes of their own, forked from one that has imported the ledger already
    # (tests/forkserve.py: each start 0.06-0.08 s of CPU, not a new interpreter's 0.7 s)
    starts = forkserve.server()
    schema = _schema(conn)
    # the three orders, each made by the event: started together, the downgrade started once
    # the rebuild holds the schema's lock (or is done), the rebuild once the downgrade holds it
    for round_, first in enumerate(("together", "rebuild", "downgrade")):
        rebuild_args, downgrade_args = (
            ["projections", "rebuild"],
            ["db", "downgrade", "--to", "base"],
        )
        if first == "downgrade":
            downgrade = starts.start(downgrade_args, cli_env)
            _until_the_schema_is_locked_or_done(conn, schema, downgrade)
            rebuild_process = starts.start(rebuild_args, cli_env)
        else:
            rebuild_process = starts.start(rebuild_args, cli_env)
            if first == "rebuild":
                _until_the_schema_is_locked_or_done(conn, schema, rebuild_process)
            downgrade = starts.start(downgrade_args, cli_env)
        assert downgrade.stderr is not None and rebuild_process.stderr is not None
        downgraded_err = downgrade.stderr.read()
        assert downgrade.wait(120) == 0, downgraded_err
        rebuilt_err = rebuild_process.stderr.read()
        rebuild_process.wait(120)
        downgrade.stderr.close()
        rebuild_process.stderr.close()
        assert rebuild_process.returncode in (0, 2), rebuilt_err
        assert "Traceback" not in rebuilt_err
        pending = {
            s.migration.name for s in migrations.status(conn, _schema(conn)) if s.applied_at is None
        }
        present = {
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            )
        }
        # the migrations table tells the truth about the tables
        assert ("projected_tables" in pending) == ("purchases" not in present), round_
        upgraded = cli(cli_env, "db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        assert dump_all(conn) == before


def _until_the_schema_is_locked_or_done(conn: Conn, schema: str, process: Any) -> None:
    """Waits until a backend holds the lock migrations and rebuilds of ``schema`` share
    (``migrations.lock``: an advisory lock on ``hashtext``, in ``pg_locks`` as its high and
    low 32 bits), or ``process`` has exited."""
    deadline = time.monotonic() + 120
    while process.poll() is None:
        held = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks, (SELECT hashtext(%s)::bigint AS k) key"
            " WHERE locktype = 'advisory' AND granted AND objsubid = 1"
            " AND classid::bigint = (k >> 32) & 4294967295 AND objid::bigint = k & 4294967295)",
            (f"ledger.schema:{schema}",),
        ).fetchone()
        if held == (True,):
            return
        assert time.monotonic() < deadline, "the schema's lock was never taken"
        time.sleep(0.005)


def _schema(conn: Conn) -> str:
    row = conn.execute("SELECT current_schema()").fetchone()
    assert row is not None
    return str(row[0])


def test_verify_during_rebuilds_never_reports_a_false_difference(
    ledger_app: Ledger, settings: Settings
) -> None:
    """A REPEATABLE READ snapshot taken before a switch saw the new tables empty."""
    load(ledger_app, 60)
    stop = threading.Event()
    failures: list[BaseException] = []

    def rebuilds() -> None:
        try:
            while not stop.is_set():
                rebuild(settings, stream=io.StringIO())
        except BaseException as error:
            failures.append(error)

    thread = threading.Thread(target=rebuilds)
    thread.start()
    try:
        for _ in range(6):
            assert verify(settings) == []
    finally:
        stop.set()
        thread.join(120)
    assert not failures, failures
