"""A log written by an earlier version still chains and rebuilds to exactly its rows.

``tests/fixtures/golden/v1`` holds every stored column of a log written by the version
of stop 11 (``events.jsonl``) and every row its projections held (``tables.json``),
made by ``tests/fixtures/golden/make.py``. The events go into a freshly migrated
schema as stored rows, with their positions and recorded times; the chaining trigger
recomputes each hash, which must be the stored one (the chain's definition has not
changed). Then the current code rebuilds the projections from that log, and every
row of every table must equal the row the old version projected: events stored
before a field was added decode with a default that reproduces what was recorded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from ledger.config import Settings
from projections.rebuild import rebuild
from tests.support import TABLES

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden" / "v1"


def _stored_events() -> list[dict[str, Any]]:
    with (GOLDEN / "events.jsonl").open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _load(conn: psycopg.Connection[Any], events: list[dict[str, Any]]) -> list[str]:
    """Inserts the stored rows in position order; returns the hashes the trigger computed."""
    hashes = []
    with conn.transaction(), conn.cursor() as cursor:
        for event in events:
            cursor.execute(
                "INSERT INTO ledger_events (originator_id, originator_version, topic, state,"
                " notification_id, recorded_at)"
                " VALUES (%s, %s, %s, convert_to(%s, 'UTF8'), %s, %s)"
                " RETURNING encode(hash, 'hex')",
                (
                    event["originator_id"],
                    event["originator_version"],
                    event["topic"],
                    event["state"],
                    event["notification_id"],
                    event["recorded_at"],
                ),
            )
            row = cursor.fetchone()
            assert row is not None
            hashes.append(row[0])
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('ledger_events', 'notification_id'),"
            " max(notification_id)) FROM ledger_events"
        )
    return hashes


def _rows(conn: psycopg.Connection[Any], table: str) -> list[dict[str, Any]]:
    query = sql.SQL("SELECT to_jsonb(t) FROM {} t ORDER BY id").format(sql.Identifier(table))
    return [row[0] for row in conn.execute(query).fetchall()]


def _by_id(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows in id order independent of the server's collation (users' ids are text)."""
    return sorted(rows, key=lambda row: str(row["id"]))


def test_the_golden_log_chains_and_rebuilds_to_the_rows_it_was_written_with(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    events = _stored_events()
    assert len(events) > 1000, "the golden log is a real history"
    positions = [e["notification_id"] for e in events]
    assert positions == sorted(positions)

    hashes = _load(conn, events)
    mismatched = [
        e["notification_id"] for e, got in zip(events, hashes, strict=True) if got != e["hash"]
    ]
    assert mismatched == [], f"the chain no longer reproduces the stored hash at {mismatched[:5]}"

    with open("/dev/null", "w") as quiet:
        rebuild(settings, stream=quiet)

    expected = json.loads((GOLDEN / "tables.json").read_text(encoding="utf-8"))
    assert set(expected) == set(TABLES)
    conn.execute("SET TIME ZONE 'UTC'")  # to_jsonb renders timestamptz in the session's zone
    for table in TABLES:
        rows = _rows(conn, table)
        want = _by_id(expected[table])
        assert len(rows) == len(want), table
        for got, wanted in zip(_by_id(rows), want, strict=True):
            assert got == wanted, (table, got["id"])
