"""`ledger db downgrade` of a schema in the distributed layout (docs/operations.md,
"Downgrading"): a rollback through the log's migrations is refused in one line (exit 2)
before any down file runs, so nothing changes; the same rollback of a schema of the
single-server layout on the same coordinator runs, as the rule is the layout's.

Before the rule: `cannot create constraint on "playback_heartbeats"`, a raw error from the
middle of the down files (0022's keys without organization_id on a distributed store)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from ledger import api
from ledger.config import Settings
from ledger.database import distribution
from ledger.database.connections import connect
from tests.support import append, catalogue, cli, complete, play, statuses

pytestmark = pytest.mark.citus
Conn = psycopg.Connection[Any]


def _env(settings: Settings) -> dict[str, str]:
    import os

    return {**os.environ, "LEDGER_DATABASE_URL": settings.url, "LEDGER_SCHEMA": settings.schema}


def _state(conn: Conn, schema: str) -> tuple[Any, ...]:
    """What a downgrade would change: the migrations applied, the tables and their
    places, every constraint's definition, the rows of the log and of the store."""
    applied = conn.execute(
        "SELECT array_agg(version ORDER BY version) FROM ledger_schema_migrations"
    ).fetchone()
    constraints = conn.execute(
        "SELECT array_agg(c.conrelid::regclass::text || ' ' || c.conname || ' '"
        " || pg_get_constraintdef(c.oid) ORDER BY 1) FROM pg_constraint c"
        " JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = %s",
        (schema,),
    ).fetchone()
    rows = conn.execute(
        "SELECT (SELECT count(*) FROM ledger_events), (SELECT count(*) FROM playback_heartbeats)"
    ).fetchone()
    return (
        applied,
        constraints,
        rows,
        distribution.places(conn, schema),
        distribution.log_places(conn, schema),
    )


def _history(settings: Settings) -> None:
    with api.open_ledger(settings) as app:
        results = append(app, *catalogue(), complete("pi_1"), play("alice", 10))
    assert set(statuses(results)) == {"accepted"}


@pytest.mark.parametrize("target", ["0024", "0002", "13"])
def test_a_rollback_of_the_logs_migrations_on_a_distributed_schema_is_refused_writing_nothing(
    settings: Settings, conn: Conn, target: str
) -> None:
    with connect(settings) as placing:
        distribution.distribute(placing, settings.schema)  # safe to run again
        placing.commit()
    _history(settings)
    before = _state(conn, settings.schema)
    assert before[3]["content"] == "distributed"
    done = cli(_env(settings), "db", "downgrade", "--to", target)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("ledger: --to: ") and "is distributed" in line, line
    # why (the newest of the log's migrations it would roll back) and what to do
    assert "0025_playback_record_distinct" in line and "--to base" in line, line
    assert _state(conn, settings.schema) == before
    # the projected tables' rollback is still open to it, and leaves the log as it was
    down = cli(_env(settings), "db", "downgrade", "--to", "0025")
    assert down.returncode == 0, down.stderr
    # (0029's down replaces a function, 0027's, 0028's, 0030's, 0034's and 0035's drop what
    # they added, 0031's a catalogue row, 0033's a reference table, a column and a function:
    # they run on Citus too)
    assert down.stdout == (
        "rolled back 0035_playback_key_owner\n"
        "rolled back 0034_playback_key_moment\n"
        "rolled back 0033_legacy_versions\n"
        "rolled back 0031_revocation_organization\n"
        "rolled back 0030_log_marks_on_coordinator\n"
        "rolled back 0029_playback_in_flight\nrolled back 0028_claim_lease\n"
        "rolled back 0027_playback_heads\n"
        "rolled back 0026_playback_by_organization\n"
    )
    assert distribution.log_places(conn, settings.schema) == before[4]


def test_the_same_rollback_of_a_single_server_schema_on_the_coordinator_runs(
    fresh: Callable[[], Settings],
) -> None:
    settings = fresh()  # the single-server layout, on the Citus coordinator
    _history(settings)
    # 0014: the lowest a log of events chained per organization goes (0014's own rule)
    done = cli(_env(settings), "db", "downgrade", "--to", "0014")
    assert done.returncode == 0, done.stderr
    assert "rolled back 0025_playback_record_distinct" in done.stdout
    with connect(settings, autocommit=True) as conn:
        applied = conn.execute("SELECT max(version) FROM ledger_schema_migrations")
        assert applied.fetchone() == (14,)
