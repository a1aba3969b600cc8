"""Rebuilds reproduce every row, switch atomically, survive SIGKILL and concurrent appends."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from functools import partial
from typing import Any

import orjson
import psycopg
import pytest
from psycopg import sql

from ledger import api
from ledger.commands import demo
from ledger.config import Settings
from ledger.service import Ledger
from ledger.upkeep import shadow, source
from ledger.upkeep.rebuild import rebuild
from ledger.upkeep.verify import verify
from tests import forkserve, histories
from tests.citus_support import PlacingFromHere
from tests.forkserve import Forked
from tests.support import HISTORY_GROUP, TABLES, cli, complete, dump_all, t

Conn = psycopg.Connection[Any]


def load_demo(app: Ledger, purchases: int = 120) -> None:
    """The demo's history, appended as the demo means it: every line accepted but a webhook
    delivered twice (a duplicate of an earlier line) and a grant to a user who already
    bought the content (rejected, invalid_state). By group commit: each line answered as
    alone (``tests/property/test_group_equivalence.py``), in a fraction of the transactions."""
    commands = list(demo.history(purchases=purchases))
    lines = [orjson.dumps(c) for c in commands]
    for line, result in histories.append_lines(app, lines, HISTORY_GROUP):
        command = commands[line - 1]
        if result.status == "duplicate":
            assert lines[line - 1] in lines[: line - 1], command
        elif result.status == "rejected":
            assert result.error is not None and result.error.code == "invalid_state", command
            assert command["type"] == "access.grant", command
        else:
            assert result.status == "accepted", (command, result)


def quiet_rebuild(settings: Settings, only: list[str] | None = None) -> Any:
    return rebuild(settings, only, stream=io.StringIO())


def test_rebuild_reproduces_every_row(
    ledger_app: Ledger, settings: Settings, conn: Conn, placing_from_here: PlacingFromHere
) -> None:
    load_demo(ledger_app)
    before = dump_all(conn)
    assert all(before[t] for t in TABLES)
    placing_from_here()
    report = quiet_rebuild(settings)
    assert report.tables == TABLES and report.events > 0
    assert dump_all(conn) == before
    assert verify(settings) == []


DEFINITIONS = """
SELECT 'constraint', t.relname || '.' || c.conname, pg_get_constraintdef(c.oid)
  FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
 WHERE t.relnamespace = current_schema()::regnamespace AND t.relname = ANY(%(tables)s)
UNION ALL
SELECT 'index', i.relname, pg_get_indexdef(i.oid)
  FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
 WHERE t.relnamespace = current_schema()::regnamespace AND t.relname = ANY(%(tables)s)
ORDER BY 1, 2
"""


@pytest.mark.parametrize(
    ("budget", "keyed"),
    [(None, None), (None, 0), (7, None)],
    ids=["few-rows-keyed", "rows-over-the-keyed-load", "rows-spilled"],
)
def test_rebuilt_tables_are_defined_exactly_as_migrated(
    ledger_app: Ledger,
    settings: Settings,
    conn: Conn,
    monkeypatch: pytest.MonkeyPatch,
    budget: int | None,
    keyed: int | None,
    placing_from_here: PlacingFromHere,
) -> None:
    """Every constraint and index of the rebuilt tables reads as the migration's: CHECK
    constraints stay on the tables while rows load (PostgreSQL renders some of them back
    in another form than the migration wrote); the rest stay on too for a few rows loaded
    at the end (``KEYED_LOAD_ROWS``), and are otherwise dropped and re-created from their
    own definitions (more rows, or rows written out before the end)."""
    if keyed is not None:
        monkeypatch.setattr(shadow, "KEYED_LOAD_ROWS", keyed)
    migrated = conn.execute(DEFINITIONS, {"tables": list(TABLES)}).fetchall()
    assert {kind for kind, _, _ in migrated} == {"constraint", "index"}
    assert any(d.startswith("CHECK") for _, _, d in migrated)
    load_demo(ledger_app, purchases=10)
    if budget is not None:
        monkeypatch.setattr(shadow, "ROW_BUDGET", budget)
        monkeypatch.setattr(source, "BATCH", 5)
    placing_from_here()
    report = quiet_rebuild(settings)
    assert (report.spills > 1) == (budget is not None)  # the last write counts as one
    assert conn.execute(DEFINITIONS, {"tables": list(TABLES)}).fetchall() == migrated


def test_a_rebuild_with_little_memory_reproduces_every_row(
    ledger_app: Ledger,
    settings: Settings,
    conn: Conn,
    monkeypatch: pytest.MonkeyPatch,
    placing_from_here: PlacingFromHere,
) -> None:
    """Rows spilled to the tables and read back, cascades applied in SQL to spilled rows."""
    load_demo(ledger_app)
    customers = [r[0] for r in conn.execute("SELECT DISTINCT customer_id FROM purchases LIMIT 3")]
    content = conn.execute("SELECT content_id FROM video_playback LIMIT 1").fetchone()
    assert customers and content is not None
    cascades = [{"type": "user.delete", "user_id": c} for c in customers]
    cascades.append({"type": "content.delete", "content_id": str(content[0])})
    answers = [r for _, r in api.append_lines(ledger_app, [orjson.dumps(c) for c in cascades])]
    assert {a.status for a in answers} <= {"accepted", "rejected"}
    assert any(a.status == "accepted" for a in answers)
    before = dump_all(conn)
    monkeypatch.setattr(shadow, "ROW_BUDGET", 7)
    monkeypatch.setattr(source, "BATCH", 5)
    placing_from_here()
    report = quiet_rebuild(settings)
    assert report.spills > 10
    assert dump_all(conn) == before
    assert report.rows == {t: len(before[t]) for t in TABLES}


def test_rebuild_of_one_table_against_the_live_others(
    ledger_app: Ledger, settings: Settings, conn: Conn, placing_from_here: PlacingFromHere
) -> None:
    load_demo(ledger_app)
    before = dump_all(conn)
    keys = foreign_keys(conn)
    # on both layouts: since 0026 video_playback's key to content carries the organization,
    # which Citus holds between colocated tables (docs/scaling.md)
    assert len(keys) == 10
    placing_from_here()
    for table in ("content", "purchases", "users"):
        quiet_rebuild(settings, [table])
        assert dump_all(conn) == before
    # the foreign keys of the others still hold against the rebuilt table, and the rebuilt
    # table's own to the others (on Citus added in the switch, once the table is in place)
    assert foreign_keys(conn) == keys


def foreign_keys(conn: Conn) -> list[tuple[str, str]]:
    """The foreign keys of the ledger's tables (only: on a Citus coordinator, its shards of
    reference tables too carry foreign keys, in the same schema), with their definitions."""
    rows = conn.execute(
        "SELECT c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c"
        " JOIN pg_namespace n ON n.oid = c.connamespace JOIN pg_class t ON t.oid = c.conrelid"
        " WHERE c.contype = 'f' AND n.nspname = current_schema() AND t.relname = ANY(%s)"
        " ORDER BY 1",
        (list(TABLES),),
    ).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def test_a_dropped_table_comes_back(
    ledger_app: Ledger, settings: Settings, conn: Conn, placing_from_here: PlacingFromHere
) -> None:
    load_demo(ledger_app, 30)
    before = dump_all(conn)
    placing_from_here()
    conn.execute("DROP TABLE video_playback")
    assert [d.table for d in verify(settings)] == ["video_playback"]
    quiet_rebuild(settings)
    assert dump_all(conn) == before


def test_downgrade_upgrade_rebuild_round_trip(
    ledger_app: Ledger,
    cli_env: dict[str, str],
    conn: Conn,
    placing_from_here: PlacingFromHere,
) -> None:
    load_demo(ledger_app)
    before = dump_all(conn)
    events = conn.execute("SELECT count(*), max(notification_id) FROM ledger_events").fetchone()
    placing_from_here()
    assert cli(cli_env, "db", "downgrade", "--to", "base").returncode == 0
    assert conn.execute("SELECT to_regclass('purchases')").fetchone() == (None,)
    assert (
        conn.execute("SELECT count(*), max(notification_id) FROM ledger_events").fetchone()
        == events
    )
    assert cli(cli_env, "db", "upgrade").returncode == 0
    done = cli(cli_env, "projections", "rebuild")
    assert done.returncode == 0, done.stderr
    assert "rebuild" in done.stderr  # progress is shown
    assert dump_all(conn) == before
    assert cli(cli_env, "projections", "verify").returncode == 0


KILL_POINTS = ("its lock taken", "its shadow tables built", "waiting for the switch's locks")


def backend_lock(conn: Conn, name: str, granted: bool) -> bool:
    """Whether the backend of application ``name`` holds its advisory (migration) lock, or
    (``granted`` false) waits for a table's lock."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
        " WHERE a.application_name = %s AND l.granted = %s AND l.locktype = %s)",
        (name, granted, "advisory" if granted else "relation"),
    ).fetchone()
    return row == (True,)


def wait_for(condition: Any, what: str, process: Forked) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert process.poll() is None, f"the rebuild ended before {what}"
        assert time.monotonic() < deadline, f"no rebuild {what} within 60 s"
        time.sleep(0.02)


def test_sigkill_at_random_points_leaves_the_tables_whole(
    ledger_app: Ledger,
    settings: Settings,
    cli_env: dict[str, str],
    conn: Conn,
    placing_from_here: PlacingFromHere,
) -> None:
    """The rebuild is killed at each of its stages, each seen happen (its migration lock in
    pg_locks, its progress line, its backend waiting for a live table's lock), while a
    reader holds a live table, so the rebuild is certainly still running when killed."""
    load_demo(ledger_app, 200)
    before = dump_all(conn)
    seeds = int(os.environ.get("LEDGER_FAULT_RUNS", "4"))
    placing_from_here()  # each killed rebuild's shadow, then the rerun's switch
    for seed in range(seeds):
        point = KILL_POINTS[seed % len(KILL_POINTS)]
        name = f"rebuild-kill-{settings.schema}-{seed}"
        with psycopg.connect(settings.url, autocommit=True) as reader, reader.transaction():
            reader.execute(
                sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(
                    sql.Identifier(settings.schema, "purchases")
                )
            )
            # forked from a process that has imported the ledger (tests/forkserve.py): a
            # process of its own, which SIGKILL ends as it ends a new interpreter
            process = forkserve.server().start(
                ["projections", "rebuild"], dict(cli_env, PGAPPNAME=name)
            )
            assert process.stderr is not None
            if point == "its shadow tables built":
                line = process.stderr.readline()
                assert line.startswith("rebuild: "), line
            else:
                granted = point == "its lock taken"
                wait_for(partial(backend_lock, conn, name, granted), point, process)
            assert process.poll() is None, f"seed {seed}: the rebuild ended before {point}"
            process.send_signal(signal.SIGKILL)
            process.wait()
            process.stderr.close()
        assert dump_all(conn) == before, f"seed {seed}: live tables changed, killed at {point}"
    # a rerun completes, whatever the kills left behind
    done = cli(cli_env, "projections", "rebuild")
    assert done.returncode == 0, done.stderr
    assert dump_all(conn) == before
    assert cli(cli_env, "projections", "verify").returncode == 0


def test_appends_during_a_rebuild_all_end_up_in_the_rebuilt_tables(
    ledger_app: Ledger, settings: Settings, conn: Conn, placing_from_here: PlacingFromHere
) -> None:
    load_demo(ledger_app, 200)
    accepted: list[str] = []
    stop = threading.Event()

    def appender() -> None:
        with api.open_ledger(settings) as app:
            n = 0
            while not stop.is_set() and n < 400:
                intent = f"pi_during_{n}"
                command = complete(
                    intent,
                    customer="customer_001",
                    content_id=demo._uuid("content", "1"),
                    amount=999,
                    fees=(99, 300),
                    at=t(90, 1, n % 60),
                )
                _, result = next(api.append_lines(app, [orjson.dumps(command)]))
                if result.status == "accepted":
                    accepted.append(intent)
                n += 1

    thread = threading.Thread(target=appender)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not accepted:  # the appender is writing before the rebuild starts
            assert thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.01)
        placing_from_here()
        quiet_rebuild(settings)
        quiet_rebuild(settings, ["purchases"])
    finally:
        stop.set()
        thread.join()
    assert accepted
    rows = {
        r[0]
        for r in conn.execute(
            "SELECT stripe_payment_intent_id FROM purchases WHERE stripe_payment_intent_id LIKE 'pi_during_%'"
        )
    }
    assert rows == set(accepted)
    assert verify(settings) == []


def test_only_rejects_unknown_names(cli_env: dict[str, str]) -> None:
    # refused before it connects: nothing placed, no hold
    done = cli(cli_env, "projections", "rebuild", "--only", "nonsense")
    assert done.returncode == 2 and "unknown projection" in done.stderr


@pytest.mark.parametrize("table", ["purchases", "content_access"])
def test_grants_survive_the_switch(
    ledger_app: Ledger,
    settings: Settings,
    conn: Conn,
    table: str,
    placing_from_here: PlacingFromHere,
) -> None:
    load_demo(ledger_app, 20)
    placing_from_here()  # the role's DDL, carried to every node, then the rebuild
    conn.execute(
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_test_grantee') THEN CREATE ROLE ledger_test_grantee; END IF; END $$"
    )
    conn.execute(f"GRANT SELECT ON {table} TO ledger_test_grantee")
    quiet_rebuild(settings)
    granted = conn.execute(
        "SELECT has_table_privilege('ledger_test_grantee', %s, 'SELECT')",
        (f"{settings.schema}.{table}",),
    ).fetchone()
    assert granted == (True,)
