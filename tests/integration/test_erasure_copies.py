"""Every copy counts (issue 27, docs/privacy.md): a person who bought through Stripe's
webhook, was checked and played through the service, then erased over HTTP. A later
Stripe refund of their purchase is recorded and counted; afterwards neither a dump of the
whole database (idempotency records, provenance, Stripe's event ids, the playback store)
nor what the service logged names them."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from ledger.config import Settings
from tests.integration.test_erasure import pg_dump, totals, traces
from tests.serving import TOKEN, serve
from tests.stripe_support import (
    SECRET,
    charge,
    deliver,
    event,
    payment_intent,
    refund_object,
    split_metadata,
)
from tests.support import CONTENT, catalogue, play, t, user

Conn = psycopg.Connection[Any]


def test_no_copy_of_an_erased_person_survives_the_service(settings: Settings, conn: Conn) -> None:
    person = f"copied-{uuid.uuid4().hex}"
    intent = f"pi_{uuid.uuid4().hex[:12]}"
    with serve(settings, LEDGER_STRIPE_WEBHOOK_SECRETS=SECRET) as served:
        with served.client() as client:
            assert client.post("/v1/commands/batch", json=[*catalogue(), user(person)]).is_success
            paid = payment_intent(intent, metadata=split_metadata(customer=person))
            assert deliver(served.url, event("evt_paid_1", "payment_intent.succeeded", paid))
            assert conn.execute(
                "SELECT count(*) FROM purchases WHERE customer_id = %s", (person,)
            ).fetchone() == (1,)
            allowed = client.get(f"/v1/access/{person}/{CONTENT}")
            assert allowed.status_code == 200 and allowed.json()["allowed"] is True
            beat = client.post(
                "/v1/commands",
                json=play(person, 30, at=t(8)),
                headers={"Idempotency-Key": f"beat-{person}"},
            )
            assert beat.status_code == 201, beat.text
            assert client.get(f"/v1/users/{person}/export").status_code == 200
            before = totals(conn, settings.schema)
            gone = client.post(
                "/v1/commands", json={"type": "user.erase", "user_id": person, "occurred_at": t(9)}
            )
            assert gone.status_code == 201, gone.text
            assert "older_events" not in gone.json()  # a person by subject: none
            refund = refund_object("re_after_1", intent, 500)
            refunded = event("evt_refund_1", "charge.refunded", charge(intent, 1999, [refund]))
            late = deliver(served.url, refunded)
            assert late.status_code == 200 and late.json()["outcome"] == "accepted", late.text
            assert client.get(f"/v1/users/{person}/export").status_code == 404
            assert client.get(f"/v1/access/{person}/{CONTENT}").json()["allowed"] is False
        log = served.log()
    after = totals(conn, settings.schema)
    refunds = [sum(row["refunded_cents"] for row in r["totals"]) for r in (before, after)]
    assert refunds[1] - refunds[0] == 500  # the money fact outlives the person
    dumped = pg_dump(settings)
    assert [trace for trace in [*traces(person), f"beat-{person}"] if trace in dumped] == []
    assert intent.encode().hex() in dumped  # the log keeps the purchase, by its intent
    assert person not in log and TOKEN not in log  # the service logs no body and no path
