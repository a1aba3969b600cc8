"""The golden log of version 3 (the payment processor's money facts with their own time),
and a log of version 2 continued by the current version.

``tests/fixtures/golden/v3`` was written by the version that added
``processor_occurred_at`` (``python -m tests.fixtures.golden.make v3``): its Stripe
completion, refund and failure dated before their purchase's last event were lifted to
it and keep their own time. Its stored rows must chain to the hashes they had and rebuild
to the rows it projected. A log of v2 continued by the current version must take a
Stripe completion dated before its start, rebuild to the rows the appends made, and read
v2's money facts with ``processor_occurred_at`` null (their upcaster).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psycopg

import ledger
from ledger import api
from ledger.commands.parsing import parse_command
from ledger.config import Settings
from ledger.database.connections import connect
from tests.citus_support import PlacingFromHere
from tests.integration.test_golden_log import _by_id, _load, environment, golden_tables, placed
from tests.integration.test_golden_v2 import GOLDEN, quiet_rebuild, stored, tables
from tests.support import TABLES, append, cli, statuses

MONEY = ("PurchaseCompleted", "PurchaseFailed", "PurchaseRefunded")


def test_the_v3_golden_log_chains_and_rebuilds_to_its_rows(
    settings: Settings, conn: psycopg.Connection[Any], placing_from_here: PlacingFromHere
) -> None:
    events = stored("v3")
    states = [(e["topic"], json.loads(e["state"])) for e in events]
    assert {s["class_version"] for t, s in states if t in MONEY} == {3}
    assert {s["class_version"] for t, s in states if t not in MONEY} == {2}
    processor = [s for t, s in states if t in MONEY and s["processor_occurred_at"] is not None]
    assert {s["source"] for s in processor} == {"stripe"}
    assert {s["source"] for t, s in states if t in MONEY} - {"stripe"}, "other sources too"
    lifted = [s for s in processor if s["processor_occurred_at"] != s["occurred_at"]]
    assert {s["processor_occurred_at"] < s["occurred_at"] for s in lifted} == {True}
    assert len(lifted) == 3  # a completion, a refund and a failure, each dated early
    assert _load(conn, events) == [e["hash"] for e in events]
    placing_from_here()
    quiet_rebuild(settings)
    expected = golden_tables(GOLDEN / "v3" / "tables.json")
    got = tables(conn)
    for table in TABLES:
        assert got[table] == _by_id(expected[table]), table


def test_a_log_of_v2_continued_by_v3_lifts_stripe_facts_rebuilds_and_verifies(
    fresh: Callable[[], Settings], placing_from_here: PlacingFromHere
) -> None:
    """v2's log loaded on a single server's schema; in a distributed run placed by
    ``ledger db distribute`` after, as a real upgrade does (``test_golden_log.placed``):
    loaded into a distributed log, its events would sit in the platform's chain with no
    claims, and the commands on its aggregates were answered ``not_found``."""
    settings = fresh()
    with connect(settings, autocommit=True) as conn:
        _v2_continued(settings, conn, environment(settings), placing_from_here)


def _v2_continued(
    settings: Settings,
    conn: psycopg.Connection[Any],
    cli_env: dict[str, str],
    placing: Callable[[], None],
) -> None:
    v2 = stored("v2")
    _load(conn, v2)
    placing()  # the rebuild's shadow tables, then ``ledger db distribute``
    quiet_rebuild(settings)
    placed(settings, conn)
    base = {"customer_id": "gold_bob", "content_id": "44444444-4444-4444-8444-444444444444"}
    base |= {"amount_paid_cents": 5, "currency": "usd"}
    more = [
        {
            "type": "purchase.start",
            "stripe_payment_intent_id": "pi_v3",
            **base,
            "occurred_at": "2026-04-01T12:00:00+00:00",
        },
        {
            "type": "purchase.complete",
            "stripe_payment_intent_id": "pi_v3",
            **base,
            "platform_fee_cents": 1,
            "organization_fee_cents": 2,
            "creator_payout_cents": 2,
            "occurred_at": "2026-04-01T11:59:59+00:00",
        },
    ]
    with api.open_ledger(settings) as app:
        results = [
            ledger.append(app, parse_command(json.dumps(c)).stamped("stripe", f"evt_v3_{n}"))
            for n, c in enumerate(more)
        ]
    assert statuses(results) == ["accepted", "accepted"]
    inline = tables(conn)
    quiet_rebuild(settings)
    assert tables(conn) == inline, "the rebuild of the mixed log gives the rows the appends made"
    records = list(ledger.read_events(settings))
    money = [r for r in records if r.topic in MONEY]
    assert {r.data["processor_occurred_at"] for r in money[:-1]} == {None}  # v2's, upcast
    assert money[-1].data["occurred_at"] == "2026-04-01T12:00:00.000000+00:00"
    assert money[-1].data["processor_occurred_at"] == "2026-04-01T11:59:59.000000+00:00"
    done = cli(cli_env, "audit", "verify")
    assert done.returncode == 0, done.stdout + done.stderr
    done = cli(cli_env, "projections", "verify")
    assert done.returncode == 0, done.stdout + done.stderr


LATE = "2026-11-01T12:00:00+00:00"


def test_a_log_of_v3_continued_revokes_by_the_whole_key_and_rebuilds(
    fresh: Callable[[], Settings], placing_from_here: PlacingFromHere
) -> None:
    """v3's log loaded on a single server's schema (in a distributed run placed by ``ledger
    db distribute`` after, as a real upgrade does: ``test_golden_log.placed``), then one of
    its accesses revoked by the current version, whose ``AccessRevoked`` (version 3, migration
    0031) names its organization: v3's revocations read with ``organization_id`` null (their
    upcaster; their rows deleted by user and content), the new one deletes by the whole key,
    and the mixed log rebuilds to the rows the appends made (docs/scaling.md, "A revocation
    on facts (i28r)")."""
    settings = fresh()
    with connect(settings, autocommit=True) as conn:
        v3 = stored("v3")
        _load(conn, v3)
        placing_from_here()
        quiet_rebuild(settings)
        placed(settings, conn)
        row = conn.execute(
            "SELECT user_id, content_id::text, organization_id::text FROM content_access"
            " ORDER BY user_id, content_id LIMIT 1"
        ).fetchone()
        assert row is not None
        user_id, content_id, organization_id = row
        revoke = {"type": "access.revoke", "user_id": user_id, "content_id": content_id}
        with api.open_ledger(settings) as app:
            assert statuses(append(app, revoke | {"occurred_at": LATE})) == ["accepted"]
        gone = conn.execute(
            "SELECT count(*) FROM content_access WHERE user_id = %s AND content_id = %s",
            (user_id, content_id),
        ).fetchone()
        assert gone == (0,)
        inline = tables(conn)
        quiet_rebuild(settings)
        assert tables(conn) == inline, (
            "the rebuild of the mixed log gives the rows the appends made"
        )
        records = [r for r in ledger.read_events(settings) if r.topic == "AccessRevoked"]
        assert len(records) > 1
        assert {r.data["organization_id"] for r in records[:-1]} == {None}  # v3's, upcast
        assert records[-1].data["organization_id"] == organization_id
        env = environment(settings)
        for check in (["audit", "verify"], ["projections", "verify"]):
            done = cli(env, *check)
            assert done.returncode == 0, done.stdout + done.stderr
