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
import os
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from ledger import api
from ledger.audit.revenue import RevenueQuery, revenue
from ledger.commands import demo
from ledger.config import Settings
from ledger.database import distribution, legacy
from ledger.database.connections import connect
from ledger.upkeep.rebuild import rebuild
from tests import citus_support
from tests.citus_support import PlacingFromHere
from tests.fixtures.golden import make
from tests.support import TABLES, statuses

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden" / "v1"


def _stored_events() -> list[dict[str, Any]]:
    with (GOLDEN / "events.jsonl").open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _load(conn: psycopg.Connection[Any], events: list[dict[str, Any]]) -> list[str]:
    """Inserts the stored rows in position order; returns the hashes the trigger computed.

    Each in its chain: a log of v4 on names it (``organization_id``); one written before the
    chains (v1-v3, before migration 0014) does not, and is inserted as it was (the column's
    default puts its events in the platform's chain, where migration 0014 left them; a schema
    migrated to before 0014 has no such column). The trigger draws each event's position in
    its chain, and a log of v4 on says which it had (``position``), for the caller to compare
    (``SELECT position ... ORDER BY notification_id``)."""
    hashes = []
    with conn.transaction(), conn.cursor() as cursor:
        for event in events:
            chained = "organization_id" in event
            cursor.execute(
                _CHAINED if chained else _UNCHAINED,
                (
                    event["originator_id"],
                    event["originator_version"],
                    event["topic"],
                    event["state"],
                    event["notification_id"],
                    event["recorded_at"],
                    *([event["organization_id"]] if chained else []),
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


_UNCHAINED = (
    "INSERT INTO ledger_events (originator_id, originator_version, topic, state,"
    " notification_id, recorded_at)"
    " VALUES (%s, %s, %s, convert_to(%s, 'UTF8'), %s, %s)"
    " RETURNING encode(hash, 'hex')"
)
_CHAINED = (
    "INSERT INTO ledger_events (originator_id, originator_version, topic, state,"
    " notification_id, recorded_at, organization_id)"
    " VALUES (%s, %s, %s, convert_to(%s, 'UTF8'), %s, %s, %s)"
    " RETURNING encode(hash, 'hex')"
)


def _rows(conn: psycopg.Connection[Any], table: str) -> list[dict[str, Any]]:
    query = sql.SQL("SELECT to_jsonb(t) FROM {} t ORDER BY id").format(sql.Identifier(table))
    return [row[0] for row in conn.execute(query).fetchall()]


def golden_tables(path: Path) -> dict[str, list[dict[str, Any]]]:
    """The rows a golden log's version projected (``tables.json``), as the tables hold them
    now: a ``video_playback`` row carries its content's organization (migration 0026),
    which the rebuild takes from the content, so the expectation is made from the content
    rows of the same file."""
    tables: dict[str, list[dict[str, Any]]] = json.loads(path.read_text(encoding="utf-8"))
    organization = {row["id"]: row["organization_id"] for row in tables["content"]}
    tables["video_playback"] = [
        {**row, "organization_id": organization[row["content_id"]]}
        for row in tables["video_playback"]
    ]
    return tables


def _by_id(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows in id order independent of the server's collation (users' ids are text)."""
    return sorted(rows, key=lambda row: str(row["id"]))


def test_the_golden_log_chains_and_rebuilds_to_the_rows_it_was_written_with(
    settings: Settings, conn: psycopg.Connection[Any], placing_from_here: PlacingFromHere
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

    placing_from_here()
    with open("/dev/null", "w") as quiet:
        rebuild(settings, stream=quiet)

    expected = golden_tables(GOLDEN / "tables.json")
    assert set(expected) == set(TABLES)
    conn.execute("SET TIME ZONE 'UTC'")  # to_jsonb renders timestamptz in the session's zone
    for table in TABLES:
        rows = _rows(conn, table)
        want = _by_id(expected[table])
        assert len(rows) == len(want), table
        for got, wanted in zip(_by_id(rows), want, strict=True):
            assert got == wanted, (table, got["id"])


def _golden(
    settings: Settings,
    conn: psycopg.Connection[Any],
    placing: Callable[[], None] | None = None,
) -> None:
    """The golden log loaded and rebuilt; ``placing`` called between (``placing_from_here``:
    the load appends, the rebuild places its shadow tables)."""
    _load(conn, _stored_events())
    if placing is not None:
        placing()
    with open("/dev/null", "w") as quiet:
        rebuild(settings, stream=quiet)


def test_redeliveries_of_the_commands_v1_recorded_change_nothing(
    fresh: Callable[[], Settings], placing_from_here: PlacingFromHere
) -> None:
    """The fingerprints and identities v1 stored still recognise its commands: the
    whole history that wrote the golden log, delivered again, is not applied twice;
    and a completion v1 recorded with ``organization_id`` is the same command without
    it, or the other way round (the canonical fingerprint).

    The log is loaded on the single-server layout; in a distributed run it is then placed
    by ``ledger db distribute``, as a real upgrade does (the keys' claims of the events it
    holds are written then: ``distribution.distribute_log``)."""
    settings = fresh()
    with connect(settings, autocommit=True) as conn:
        _golden(settings, conn, placing_from_here)
        if placed(settings, conn):
            # v1's organizations and access live in the platform's chain: claimed there
            assert legacy.legacy_claimed(conn, settings.schema)
        _redelivered(settings, conn)


def placed(settings: Settings, conn: psycopg.Connection[Any]) -> bool:
    """In a distributed run, the schema (a single server's, from ``fresh``, its old log
    loaded) placed by ``ledger db distribute`` after, as a real upgrade does: the keys'
    claims of the events it holds are written then. Whether it was."""
    if not (citus_support.distribute_requested() and distribution.citus_version(conn)):
        return False
    with connect(settings) as placing:
        distribution.distribute(placing, settings.schema)
        placing.commit()
    assert distribution.log_is_distributed(conn, settings.schema)
    return True


def environment(settings: Settings) -> dict[str, str]:
    """The ``ledger`` command's environment for ``settings``' schema (``cli_env``'s)."""
    return {**os.environ, "LEDGER_DATABASE_URL": settings.url, "LEDGER_SCHEMA": settings.schema}


def _redelivered(settings: Settings, conn: psycopg.Connection[Any]) -> None:
    events = conn.execute("SELECT count(*) FROM ledger_events").fetchone()
    history = [*demo.history(purchases=120), *make._edges()]
    with api.open_ledger(settings) as app:
        answers = statuses([r for _, r in api.append_lines(app, map(json.dumps, history))])
        assert "accepted" not in answers
        assert answers.count("duplicate") > len(history) * 0.9
        given = next(c for c in make._edges() if c.get("stripe_payment_intent_id") == "pi_gold_2")
        assert "organization_id" in given
        without = {k: v for k, v in given.items() if k != "organization_id"}
        keyless = {k: v for k, v in without.items() if k != "idempotency_key"}
        completion = next(
            c for c in demo.history(purchases=120) if c["type"] == "purchase.complete"
        )
        assert "organization_id" in completion
        bare = {k: v for k, v in completion.items() if k != "organization_id"}
        replays = [without, keyless, bare]
        assert (
            statuses([r for _, r in api.append_lines(app, map(json.dumps, replays))])
            == ["duplicate"] * 3
        )
    assert conn.execute("SELECT count(*) FROM ledger_events").fetchone() == events


def test_the_3_cent_purchase_of_v1_never_shows_a_negative_payout(
    settings: Settings, conn: psycopg.Connection[Any], placing_from_here: PlacingFromHere
) -> None:
    """pi_gold_1: 3 cents split (2, 1, 0), refunded 1 cent on 2026-03-03 at 10:00, then
    2 at 11:00. v1 recorded the first refund's shares as (0, 0, 1): the creator, paid
    nothing, "returned" a cent. The audit recomputes every refund's shares by the
    current rule (platform ceil, creator floor, organization the rest): (1, 0, 0)."""
    _golden(settings, conn, placing_from_here)
    stored = conn.execute(
        "SELECT convert_from(state, 'UTF8')::json ->> 'creator_refund_cents' FROM ledger_events"
        " WHERE topic = 'PurchaseRefunded'"
        " AND convert_from(state, 'UTF8')::json ->> 'refund_id' = 're_gold_1'"
    ).fetchone()
    assert stored == ("1",), "the golden log holds the earlier rule's shares"
    query = RevenueQuery(
        organization=UUID(make.ORG),
        end=datetime(2026, 3, 3, 10, 30, tzinfo=UTC),
        group_by="content",
    )
    rows = {(r.group, r.currency): r for r in revenue(conn, settings.schema, query).rows}
    gold = rows[(make.VIDEO, "usd")]  # only pi_gold_1 is in usd on this video
    assert (gold.purchases, gold.gross_cents, gold.refunds, gold.refunded_cents) == (1, 3, 1, 1)
    assert (gold.platform_fee_cents, gold.organization_fee_cents, gold.creator_payout_cents) == (
        1,
        1,
        0,
    )
    # after the second refund every party has returned exactly its share
    whole = revenue(conn, settings.schema, replace(query, end=None)).rows
    gold = {(r.group, r.currency): r for r in whole}[(make.VIDEO, "usd")]
    assert (gold.net_cents, gold.platform_fee_cents, gold.organization_fee_cents) == (0, 0, 0)
    assert gold.creator_payout_cents == 0
