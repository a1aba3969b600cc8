"""The golden log of version 2 (events with provenance), and a log that mixes versions.

``tests/fixtures/golden/v2`` was written by the version that added provenance
(``python -m tests.fixtures.golden.make v2``). Like v1 (``test_golden_log.py``), its
stored rows must chain to the hashes they had and rebuild to the rows it projected. A
log written by v1 and continued by the current version must append (the aggregates
upcast v1's events), rebuild to the rows the appends projected, verify, and stream with
each event's provenance: the events of v1 read as ``unknown``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

import ledger
from ledger import api
from ledger.commands.parsing import parse_command
from ledger.config import Settings
from ledger.database.connections import connect
from ledger.domain.provenance import UNRECORDED
from ledger.upkeep.rebuild import rebuild
from tests.citus_support import PlacingFromHere
from tests.fixtures.golden import make
from tests.integration.test_golden_log import (
    _by_id,
    _load,
    _rows,
    environment,
    golden_tables,
    placed,
)
from tests.support import TABLES, cli, play, statuses

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden"


def stored(label: str) -> list[dict[str, Any]]:
    with (GOLDEN / label / "events.jsonl").open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def tables(conn: psycopg.Connection[Any]) -> dict[str, list[dict[str, Any]]]:
    conn.execute("SET TIME ZONE 'UTC'")  # to_jsonb renders timestamptz in the session's zone
    return {table: _by_id(_rows(conn, table)) for table in TABLES}


def quiet_rebuild(settings: Settings) -> None:
    with open("/dev/null", "w") as quiet:
        rebuild(settings, stream=quiet)


def test_the_v2_golden_log_chains_and_rebuilds_to_its_rows(
    settings: Settings, conn: psycopg.Connection[Any], placing_from_here: PlacingFromHere
) -> None:
    events = stored("v2")
    assert len(events) > 1000
    states = [json.loads(e["state"]) for e in events]
    assert {s["class_version"] for s in states} == {2}
    assert {s["source"] for s in states} == {"cli", "api", "http", "stripe"}
    hashes = _load(conn, events)
    assert hashes == [e["hash"] for e in events]
    placing_from_here()
    quiet_rebuild(settings)
    expected = golden_tables(GOLDEN / "v2" / "tables.json")
    got = tables(conn)
    for table in TABLES:
        assert got[table] == _by_id(expected[table]), table


def test_a_log_of_v1_continued_by_v2_appends_rebuilds_verifies_and_streams(
    fresh: Callable[[], Settings], placing_from_here: PlacingFromHere
) -> None:
    """v1's log loaded on a single server's schema; in a distributed run placed by
    ``ledger db distribute`` after, as a real upgrade does (``test_golden_log.placed``):
    loaded into a distributed log, its events would sit in the platform's chain with no
    claims, and the commands on its aggregates were answered ``not_found``."""
    settings = fresh()
    with connect(settings, autocommit=True) as conn:
        _v1_continued(settings, conn, environment(settings), placing_from_here)


def _v1_continued(
    settings: Settings,
    conn: psycopg.Connection[Any],
    cli_env: dict[str, str],
    placing: Callable[[], None],
) -> None:
    v1 = stored("v1")
    _load(conn, v1)
    placing()  # the rebuild's shadow tables, then ``ledger db distribute``
    quiet_rebuild(settings)
    placed(settings, conn)
    # commands on v1's aggregates: each decision loads them through the library's
    # mapper, which upcasts their v1 events
    more = [
        {
            "type": "purchase.refund",
            "stripe_payment_intent_id": "pi_gold_2",
            "refund_id": "re_gold_v2",
            "amount_cents": 999,
            "occurred_at": "2026-03-10T10:00:00+00:00",
        },
        play("gold_bob", 99, content_id=make.VIDEO, at="2026-03-10T11:00:00+00:00"),
        {
            "type": "user.delete",
            "user_id": "gold_alice",
            "occurred_at": "2026-03-10T12:00:00+00:00",
        },
    ]
    with api.open_ledger(settings) as app:
        # v1's purchases again: still recognised, whatever their source now
        replay = [json.dumps(c) for c in make._edges() if c["type"].startswith("purchase.")]
        again = [r for _, r in api.append_lines(app, replay, source="cli", name="again.jsonl")]
        results = [
            ledger.append(app, parse_command(json.dumps(c)).stamped("http", f"req-{n}"))
            for n, c in enumerate(more)
        ]
    assert statuses(results) == ["accepted"] * 3
    assert set(statuses(again)) == {"duplicate"}
    inline = tables(conn)
    quiet_rebuild(settings)
    assert tables(conn) == inline, "the rebuild of the mixed log gives the rows the appends made"

    records = list(ledger.read_events(settings))
    assert [r.position for r in records][: len(v1)] == [e["notification_id"] for e in v1]
    assert {r.data["source"] for r in records[: len(v1)]} == {UNRECORDED}
    assert {r.data["source"] for r in records[len(v1) :]} == {"http"}
    assert all("class_version" not in r.data for r in records)
    assert all({"source", "correlation_id", "idempotency_key"} <= r.data.keys() for r in records)
    unknown = cli(cli_env, "events", "--source", "unknown")
    assert unknown.returncode == 0, unknown.stderr
    assert len(unknown.stdout.splitlines()) == len(v1)

    done = cli(cli_env, "audit", "verify")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"ok   events: all {len(records)} events decode" in done.stdout
    done = cli(cli_env, "projections", "verify")
    assert done.returncode == 0, done.stdout + done.stderr
