"""Operator commands never touch what is not theirs, never race each other into a state
that only hand-written SQL repairs, and answer every database state in one line."""

from __future__ import annotations

import io
import json
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from ledger.commands import demo
from ledger.config import Settings
from ledger.database import distribution, migrations
from ledger.database.connections import connect
from ledger.service import Ledger
from ledger.upkeep.rebuild import rebuild
from ledger.upkeep.verify import verify
from projections.registry import PROJECTED_TOPICS
from tests import forkserve
from tests.support import answers, cli, dump_all, load_history

Conn = psycopg.Connection[Any]


def load(app: Ledger, purchases: int = 40) -> None:
    load_history(app, purchases)


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one line stderr holds besides progress lines."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = [x for x in done.stderr.strip().splitlines() if not x.startswith("rebuild: ")]
    assert len(lines) == 1, done.stderr
    return lines[0]


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


# --- one line for every state ----------------------------------------------------------


def test_rebuild_progress_counts_events_not_positions(
    ledger_app: Ledger, conn: Conn, cli_env: dict[str, str]
) -> None:
    load(ledger_app, 20)
    projected = conn.execute(
        "SELECT count(*) FROM ledger_events WHERE topic = ANY(%s)", (list(PROJECTED_TOPICS),)
    ).fetchone()
    head = conn.execute("SELECT max(notification_id) FROM ledger_events").fetchone()
    assert projected is not None and head is not None and projected[0] < head[0]
    done = cli(cli_env, "projections", "rebuild")
    assert done.returncode == 0, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"rebuild: {projected[0]}/{projected[0]} events"), last


@pytest.mark.parametrize("target", ["foo", "99", "-1", "", "\u0663", "0002"])
def test_downgrade_to_an_unknown_target_is_a_usage_error(
    cli_env: dict[str, str], conn: Conn, target: str
) -> None:
    before = conn.execute("SELECT count(*) FROM ledger_schema_migrations").fetchone()
    done = cli(cli_env, "db", "downgrade", "--to", target)
    if target == "0002" and not distribution.is_distributed(conn, cli_env["LEDGER_SCHEMA"]):
        assert done.returncode == 0, done.stderr  # distributed: test_downgrade_on_citus.py
        return
    assert done.returncode == 2
    assert "--to" in one_line(done)
    assert conn.execute("SELECT count(*) FROM ledger_schema_migrations").fetchone() == before


@pytest.mark.parametrize(
    "args",
    [
        ("projections", "status"),
        ("projections", "verify"),
        ("projections", "rebuild"),
        ("audit", "verify"),
        ("audit", "revenue"),
        ("db", "roles", "--prefix", "never_migrated"),
        ("db", "downgrade", "--to", "base"),
    ],
)
def test_a_never_migrated_database_says_run_upgrade(
    empty_settings: Settings, args: tuple[str, ...]
) -> None:
    import os

    env = dict(
        os.environ, LEDGER_DATABASE_URL=empty_settings.url, LEDGER_SCHEMA=empty_settings.schema
    )
    done = cli(env, *args)
    if args[1] == "downgrade":
        assert done.returncode == 0 and "nothing to roll back" in done.stdout
    else:
        assert done.returncode == 2, done.stdout
        assert "run `ledger db upgrade`" in one_line(done)
    with psycopg.connect(empty_settings.url) as conn:  # and nothing was created
        assert conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (empty_settings.schema,)
        ).fetchone() == (0,)
        assert conn.execute(
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'never\\_migrated\\_%'"
        ).fetchone() == (0,)


def test_verify_of_a_log_altered_by_a_superuser_is_a_finding(
    ledger_app: Ledger, conn: Conn, cli_env: dict[str, str]
) -> None:
    """An event edited so that its purchase's fees no longer sum up: the fold breaks a
    CHECK. It used to be a raw check-constraint error with exit 2. The superuser's edit
    goes past the log's triggers on both layouts: on a distributed log Citus alters them only
    with its unsafe triggers allowed (on a single server the setting is a mere placeholder)."""
    load(ledger_app, 10)
    with conn.transaction():
        conn.execute("SELECT set_config('citus.enable_unsafe_triggers', 'on', true)")
        conn.execute("ALTER TABLE ledger_events DISABLE TRIGGER ALL")
        # the edited state read first, then written as a value to the one row, by its
        # chain: Citus calls no STABLE function (convert_from) on a distributed table's
        # column in an UPDATE, and routes a write by its distribution column
        edited = conn.execute(
            "SELECT organization_id, notification_id, convert_to(jsonb_set(convert_from(state,"
            " 'UTF8')::jsonb, '{platform_fee_cents}', '1000000')::text, 'UTF8')"
            " FROM ledger_events WHERE topic = 'PurchaseCompleted'"
            " ORDER BY notification_id LIMIT 1"
        ).fetchone()
        assert edited is not None
        conn.execute(
            "UPDATE ledger_events SET state = %s"
            " WHERE organization_id = %s AND notification_id = %s",
            (edited[2], edited[0], edited[1]),
        )
        conn.execute("ALTER TABLE ledger_events ENABLE TRIGGER ALL")
    done = cli(cli_env, "projections", "verify")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("the log does not fold into valid tables (")
    assert "purchases_fees_sum_to_amount" in lines[0] and "ledger audit verify" in lines[0]


def test_audit_verify_with_the_projected_tables_missing_runs_every_check(
    ledger_app: Ledger, cli_env: dict[str, str]
) -> None:
    load(ledger_app, 10)
    assert cli(cli_env, "db", "downgrade", "--to", "base").returncode == 0
    done = cli(cli_env, "audit", "verify")
    assert done.returncode == 1, done.stderr
    # the checks, then audit verify's notes (``note identities``: docs/privacy.md)
    lines = [line for line in done.stdout.splitlines() if not line.startswith("note identities")]
    checks = [line.split(":")[0].split()[-1] for line in lines]
    # one log line per chain (docs/audit.md): the platform's and each organization's
    assert checks[0] == "log" and checks[checks.index("events") - 1] == "log"
    assert checks[checks.index("events") :] == ["events", "guards", "anchors", "projections"]
    assert lines[-1].startswith("FAIL projections: the purchases table is missing")
    assert "ledger db upgrade" in lines[-1]


def test_revenue_of_an_unknown_organization_says_so(
    ledger_app: Ledger, cli_env: dict[str, str]
) -> None:
    load(ledger_app, 10)
    unknown = str(uuid.uuid4())
    done = cli(cli_env, "audit", "revenue", "--organization", unknown, "--format", "json")
    assert done.returncode == 0
    assert json.loads(done.stdout) == {"rows": [], "totals": []}
    assert f"no organization {unknown} is registered in the log" in one_line(done)
    known = demo._uuid("org", "0")
    registered = cli(cli_env, "audit", "revenue", "--organization", known)
    assert registered.returncode == 0 and registered.stderr == ""


@pytest.mark.parametrize("content", ["", "\n\n", "# anchors of the ledger\n\n# none yet\n"])
def test_an_anchors_file_without_an_anchor_fails(
    ledger_app: Ledger, cli_env: dict[str, str], tmp_path: Path, content: str
) -> None:
    load(ledger_app, 5)
    anchors = tmp_path / "anchors.txt"
    anchors.write_text(content)
    done = cli(cli_env, "audit", "verify", "--anchors", str(anchors))
    assert done.returncode == 1, done.stderr
    failed = [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1 and failed[0].startswith(
        f"FAIL anchors: --anchors {anchors} holds no anchor"
    )
    checks = [line for line in done.stdout.splitlines() if not line.startswith("note identities")]
    named = [line.split(":")[0].split()[-1] for line in checks]
    assert named[named.index("events") :] == ["events", "guards", "anchors", "projections"]
    assert set(named[: named.index("events")]) == {"log"}  # the other checks ran


def test_a_non_utf8_anchors_file_names_the_file_and_the_flag(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    anchors = tmp_path / "anchors.bin"
    anchors.write_bytes(b"12:\xff\xfe\x00garbage\n")
    done = cli(cli_env, "audit", "verify", "--anchors", str(anchors))
    assert done.returncode == 2
    line = one_line(done)
    assert f"--anchors {anchors}" in line and "UTF-8" in line


def test_projections_status_exit_codes_and_appends_after_roundtrip(
    ledger_app: Ledger, cli_env: dict[str, str]
) -> None:
    """After the round trip that used to leave lag 0 over empty tables."""
    load(ledger_app, 5)
    assert cli(cli_env, "db", "downgrade", "--to", "base").returncode == 0
    status = cli(cli_env, "projections", "status", "--format", "json")
    assert status.returncode == 0
    rows = json.loads(status.stdout)["projections"]
    assert all(r["exists"] is False and r["stale"] is True and r["lag"] is None for r in rows)
    refused = cli(cli_env, "append", stdin='{"type": "user.register", "user_id": "x"}')
    assert refused.returncode == 2 and answers(refused.stdout) == []
