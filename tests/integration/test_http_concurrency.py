"""Many concurrent clients deliver the same purchases and refunds twice, in shuffled
order, retrying what the service asks them to retry (404 for a refund that arrived before
its purchase, 503): each command is accepted exactly once, and refunds never pass the
amount paid."""

from __future__ import annotations

import asyncio
import collections
import random
from typing import Any

import httpx
import psycopg

from ledger.config import Settings
from tests.serving import TOKEN, serve
from tests.support import CONTENT, catalogue, complete, refund, user

Conn = psycopg.Connection[Any]
PURCHASES = 24
CLIENTS = 16
REFUND = 800  # three of them pass the 1999 paid: one is always refused


def deliveries() -> list[tuple[str, dict[str, Any]]]:
    commands: list[tuple[str, dict[str, Any]]] = []
    for n in range(PURCHASES):
        commands.append((f"pi_{n}", complete(f"pi_{n}", customer=f"c{n}")))
        for r in "abc":
            commands.append((f"re_{n}_{r}", refund(f"pi_{n}", f"re_{n}_{r}", REFUND)))
    twice = commands * 2
    random.Random(17).shuffle(twice)
    return twice


async def deliver(
    url: str, queue: asyncio.Queue[tuple[str, dict[str, Any]]], seen: dict[str, list[int]]
) -> None:
    """Takes deliveries until none is left; one the service asks to retry (its purchase
    is not there yet, or it is busy) goes back to the end of the queue, as Stripe
    delivers it again later."""
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
    ) as client:
        while True:
            try:
                key, command = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            answer = await client.post("/v1/commands", json=command)
            if answer.status_code in (404, 503):
                queue.put_nowait((key, command))
                await asyncio.sleep(0.01)
                continue
            seen[key].append(answer.status_code)


async def run_clients(url: str) -> dict[str, list[int]]:
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
    for item in deliveries():
        queue.put_nowait(item)
    seen: dict[str, list[int]] = collections.defaultdict(list)
    await asyncio.gather(*(deliver(url, queue, seen) for _ in range(CLIENTS)))
    return seen


def test_concurrent_redeliveries_are_each_accepted_once(settings: Settings, conn: Conn) -> None:
    with serve(settings) as served, served.client() as client:
        setup = [*catalogue(), *(user(f"c{n}") for n in range(PURCHASES))]
        assert {a["status"] for a in client.post("/v1/commands/batch", json=setup).json()} == {
            "accepted"
        }
        seen = asyncio.run(run_clients(served.url))
    for n in range(PURCHASES):
        assert sorted(seen[f"pi_{n}"]) == [200, 201], n
        refunds = [sorted(seen[f"re_{n}_{r}"]) for r in "abc"]
        assert sorted(refunds) == [[200, 201], [200, 201], [409, 409]], (n, refunds)
    rows = conn.execute(
        "SELECT amount_paid_cents, refunded_amount_cents, status FROM purchases WHERE content_id = %s",
        (CONTENT,),
    ).fetchall()
    assert rows == [(1999, 2 * REFUND, "completed")] * PURCHASES
    topics = dict(
        conn.execute("SELECT topic, count(*) FROM ledger_events GROUP BY topic").fetchall()
    )
    assert topics["PurchaseCompleted"] == PURCHASES
    assert topics["PurchaseRefunded"] == 2 * PURCHASES
