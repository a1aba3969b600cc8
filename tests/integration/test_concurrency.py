"""Several processes appending at once: nothing lost, nothing doubled, refunds bounded."""

from __future__ import annotations

import json
import multiprocessing
import random
from typing import Any

import psycopg

from ledger import api
from ledger.config import Settings
from ledger.service import Ledger
from ledger.upkeep.verify import verify
from tests.citus_support import PlacingFromHere
from tests.support import append, catalogue, complete, refund

Conn = psycopg.Connection[Any]
WRITERS = 8


def deliver(url: str, schema: str, lines: list[str]) -> list[str]:
    """One appender process: its own connections, its own ledger."""
    with api.open_ledger(Settings(url=url, schema=schema)) as app:
        return [r.status for _, r in api.append_lines(app, lines)]


def run_writers(settings: Settings, batches: list[list[str]]) -> list[list[str]]:
    context = multiprocessing.get_context("spawn")
    with context.Pool(len(batches)) as pool:
        return pool.starmap(deliver, [(settings.url, settings.schema, b) for b in batches])


def test_the_same_payments_from_eight_processes_are_accepted_exactly_once(
    ledger_app: Ledger, settings: Settings, conn: Conn, placing_from_here: PlacingFromHere
) -> None:
    append(ledger_app, *catalogue())
    payments = [
        json.dumps(complete(f"pi_{n}", customer="alice" if n % 2 else "bob")) for n in range(20)
    ]
    batches = []
    for writer in range(WRITERS):
        order = payments + payments[: writer + 1]  # some delivered twice by the same writer too
        random.Random(writer).shuffle(order)
        batches.append(order)
    results = run_writers(settings, batches)
    flat = [s for batch in results for s in batch]
    assert flat.count("accepted") == 20
    assert set(flat) == {"accepted", "duplicate"}
    assert conn.execute(
        "SELECT count(*) FROM ledger_events WHERE topic = 'PurchaseCompleted'"
    ).fetchone() == (20,)
    assert conn.execute(
        "SELECT count(*) FROM ledger_events WHERE topic = 'AccessGranted'"
    ).fetchone() == (20,)
    assert conn.execute(
        "SELECT count(*), count(DISTINCT stripe_payment_intent_id) FROM purchases"
    ).fetchone() == (20, 20)
    placing_from_here()  # verify's scratch tables
    assert verify(settings) == []


def test_concurrent_refunds_never_exceed_the_amount_paid(
    ledger_app: Ledger, settings: Settings, conn: Conn, placing_from_here: PlacingFromHere
) -> None:
    append(ledger_app, *catalogue(), complete("pi_1", amount=1000, fees=(100, 300)))
    batches = [
        [json.dumps(refund("pi_1", f"re_{w}_{k}", 150)) for k in range(2)] for w in range(WRITERS)
    ]
    results = run_writers(settings, batches)
    flat = [s for batch in results for s in batch]
    accepted = flat.count("accepted")
    assert accepted == 6  # 6 x 150 = 900; a seventh would exceed 1000
    assert flat.count("rejected") == len(flat) - accepted
    assert conn.execute("SELECT refunded_amount_cents, status FROM purchases").fetchone() == (
        900,
        "completed",
    )
    assert conn.execute(
        "SELECT count(*) FROM ledger_events WHERE topic = 'PurchaseRefunded'"
    ).fetchone() == (accepted,)
    placing_from_here()
    assert verify(settings) == []
