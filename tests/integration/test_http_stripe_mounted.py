"""The Stripe webhook is mounted on ``ledger serve``: authenticated by its signature (no
bearer token), appending through the service's writer, counted in its metrics. The webhook's
own rules are tested in test_stripe_webhook.py."""

from __future__ import annotations

import time
from typing import Any

import httpx
import psycopg

from ledger.config import Settings
from tests.serving import serve
from tests.stripe_support import SECRET, body_of, event, payment_intent, signature
from tests.support import catalogue

Conn = psycopg.Connection[Any]


def test_the_webhook_is_served_with_its_signature_and_counted(
    settings: Settings, conn: Conn
) -> None:
    with serve(settings, LEDGER_STRIPE_WEBHOOK_SECRETS=f"whsec_old, {SECRET}") as served:
        with served.client() as client:
            client.post("/v1/commands/batch", json=catalogue())
        body = body_of(event("evt_1", "payment_intent.succeeded", payment_intent("pi_1")))
        with httpx.Client(base_url=served.url) as stripe:  # no bearer token
            now = int(time.time())
            signed = stripe.post(
                "/v1/webhooks/stripe",
                content=body,
                headers={"Stripe-Signature": signature(body, SECRET, now)},
            )
            assert signed.status_code == 200, signed.text
            again = stripe.post(
                "/v1/webhooks/stripe",
                content=body,
                headers={"Stripe-Signature": signature(body, SECRET, now)},
            )
            assert again.status_code == 200
            forged = stripe.post(
                "/v1/webhooks/stripe",
                content=body,
                headers={"Stripe-Signature": signature(body, "whsec_wrong", now)},
            )
            assert forged.status_code == 400
            metrics = stripe.get("/metrics").text
    assert conn.execute("SELECT stripe_payment_intent_id FROM purchases").fetchall() == [("pi_1",)]
    counted = [
        line for line in metrics.splitlines() if line.startswith("ledger_stripe_events_total")
    ]
    assert any(
        'type="payment_intent.succeeded"' in line and line.endswith(" 1.0") for line in counted
    )
    assert len(counted) == 3, counted  # recorded, duplicate, bad signature
