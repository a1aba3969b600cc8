"""Stripe's clock never refuses a payment (issue 24, finding 10), and a refund that no
delivery can ever record is ``rejected``, not ``retry_later`` (finding 7): through the
real service, with deliveries signed as Stripe signs them.

A ``purchase.start`` sent over HTTP without ``occurred_at`` is stamped "now", with
microseconds; Stripe's ``created`` is whole seconds, from another clock. Before, a
``payment_intent.succeeded`` of the same second, or a few seconds early, was refused
``invalid_state`` for ever (every redelivery carries the same ``created``) and the
customer never got access."""

from __future__ import annotations

import time
from typing import Any

import httpx
import psycopg

from ledger.config import Settings
from ledger.upkeep.rebuild import rebuild
from tests.citus_support import PlacingFromHere
from tests.serving import serve
from tests.stripe_support import (
    SECRET,
    charge,
    deliver,
    event,
    payment_intent,
    refund_object,
    split_metadata,
)
from tests.support import CONTENT, TABLES, catalogue, complete, dump, start, user

Conn = psycopg.Connection[Any]


def started_now(client: httpx.Client, intent: str, customer: str = "alice") -> str:
    """A purchase.start without occurred_at: the service stamps it now."""
    command = start(intent, customer=customer)
    del command["occurred_at"]
    assert client.post("/v1/commands", json=command).status_code == 201
    events = client.get("/v1/events?limit=1000").json()["events"]
    stamped: str = next(
        e["data"]["occurred_at"]
        for e in events
        if e["topic"] == "PurchaseStarted" and e["data"]["stripe_payment_intent_id"] == intent
    )
    return stamped


def recorded(client: httpx.Client, topic: str, intent: str) -> dict[str, Any]:
    events = client.get("/v1/events?limit=1000").json()["events"]
    data: dict[str, Any] = next(
        e["data"]
        for e in events
        if e["topic"] == topic and e["data"]["stripe_payment_intent_id"] == intent
    )
    return data


def test_same_second_and_early_stripe_facts_are_recorded_and_grant_access(
    settings: Settings, conn: Conn, placing_from_here: PlacingFromHere
) -> None:
    with serve(settings, LEDGER_STRIPE_WEBHOOK_SECRETS=SECRET) as served, served.client() as client:
        assert (
            client.post("/v1/commands/batch", json=[*catalogue(), user("carol")]).status_code == 200
        )
        # the same second as the start (Stripe's created is its floor)
        began = started_now(client, "pi_same")
        same_second = int(time.time())
        paid = deliver(
            served.url,
            event("evt_same", "payment_intent.succeeded", payment_intent("pi_same"), same_second),
        )
        assert paid.status_code == 200, paid.text
        assert paid.json()["outcome"] == "accepted"
        assert client.get(f"/v1/access/alice/{CONTENT}").json()["allowed"] is True
        completed = recorded(client, "PurchaseCompleted", "pi_same")
        assert completed["occurred_at"] >= began
        assert completed["processor_occurred_at"].startswith(
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(same_second))
        )
        # seconds early (a start recorded after Stripe's call returned, confirm=true)
        # Stripe's second taken before the start: earlier than it however long the start
        # takes on a loaded machine
        early = int(time.time()) - 7
        began = started_now(client, "pi_early", customer="bob")
        paid = deliver(
            served.url,
            event(
                "evt_early",
                "payment_intent.succeeded",
                payment_intent("pi_early", metadata=split_metadata(customer="bob")),
                early,
            ),
        )
        assert paid.status_code == 200, paid.text
        assert paid.json()["outcome"] == "accepted"
        assert client.get(f"/v1/access/bob/{CONTENT}").json()["allowed"] is True
        completed = recorded(client, "PurchaseCompleted", "pi_early")
        assert completed["occurred_at"] == began  # the later of the two: the start's
        assert completed["processor_occurred_at"] < began
        # a refund Stripe dates before the completion the ledger recorded
        refunded = deliver(
            served.url,
            event(
                "evt_refund",
                "refund.created",
                refund_object("re_early", "pi_early", 500),
                early - 3,
            ),
        )
        assert refunded.status_code == 200, refunded.text
        assert refunded.json()["outcome"] == "accepted"
        refund = recorded(client, "PurchaseRefunded", "pi_early")
        assert refund["occurred_at"] == began
        assert refund["newest"] is True
        # a failure Stripe dates before the start
        before_start = int(time.time()) - 30
        began = started_now(client, "pi_failed", customer="carol")
        failed = deliver(
            served.url,
            event(
                "evt_failed",
                "payment_intent.payment_failed",
                payment_intent(
                    "pi_failed",
                    metadata=split_metadata(customer="carol"),
                    status="requires_payment_method",
                ),
                before_start,
            ),
        )
        assert failed.status_code == 200, failed.text
        assert recorded(client, "PurchaseFailed", "pi_failed")["occurred_at"] == began
        # a completion from any other source still may not be dated before its start
        late = complete("pi_cli", at="2026-01-02T12:00:00+00:00")
        first = start("pi_cli", at="2026-01-02T13:00:00+00:00")
        assert client.post("/v1/commands", json=first).status_code == 201
        refused = client.post("/v1/commands", json=late)
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "invalid_state"
        assert refused.json()["error"]["field"] == "occurred_at"
        # the revenue counts the completions at their business time
        totals = client.get("/v1/revenue").json()["totals"]
        assert [(t["purchases"], t["refunds"]) for t in totals] == [(2, 1)]
    # a rebuild reproduces every row
    before = {table: dump(conn, table) for table in TABLES}
    placing_from_here()
    with open("/dev/null", "w") as quiet:
        rebuild(settings, stream=quiet)
    assert {table: dump(conn, table) for table in TABLES} == before


def test_a_refund_of_a_fully_refunded_purchase_is_rejected_not_retried(
    settings: Settings,
) -> None:
    with serve(settings, LEDGER_STRIPE_WEBHOOK_SECRETS=SECRET) as served, served.client() as client:
        assert (
            client.post("/v1/commands/batch", json=[*catalogue(), complete("pi_1")]).status_code
            == 200
        )
        full = deliver(
            served.url, event("evt_1", "refund.created", refund_object("re_1", "pi_1", 1999))
        )
        assert full.json()["outcome"] == "accepted", full.text
        again = deliver(
            served.url, event("evt_2", "refund.created", refund_object("re_2", "pi_1", 100))
        )
        assert again.status_code == 409
        assert again.json()["outcome"] == "rejected"
        assert "retry-after" not in again.headers
        assert again.json()["results"][0]["error"]["code"] == "invalid_state"
        # the same through a charge.refunded that lists a new refund
        listed = deliver(
            served.url,
            event(
                "evt_3",
                "charge.refunded",
                charge(
                    "pi_1",
                    1999,
                    [refund_object("re_3", "pi_1", 1), refund_object("re_1", "pi_1", 1999)],
                ),
            ),
        )
        assert listed.json()["outcome"] == "rejected"
        assert "retry-after" not in listed.headers
        # over HTTP, the same refund is invalid_state on its amount
        direct = client.post(
            "/v1/commands",
            json={
                "type": "purchase.refund",
                "stripe_payment_intent_id": "pi_1",
                "refund_id": "re_4",
                "amount_cents": 1,
            },
        )
        assert direct.status_code == 409
        assert direct.json()["error"]["field"] == "amount_cents"
