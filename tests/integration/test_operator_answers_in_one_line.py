"""Operator commands answer every database state in one line: a downgrade to an unknown
target, a database never migrated, a log altered by a superuser, projected tables missing, an
unknown organization, an anchors file without an anchor or not UTF-8 (the one line's part of
``test_operator_safety.py``).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ledger.commands import demo
from ledger.config import Settings
from ledger.database import distribution
from ledger.service import Ledger
from projections.registry import PROJECTED_TOPICS
from tests.operator_lines import load, one_line
from tests.support import answers, cli

Conn = psycopg.Connection[Any]


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
