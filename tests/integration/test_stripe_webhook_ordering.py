"""POST /v1/webhooks/stripe: events out of order (a refund before its payment, a late start or
failure), refunds of a charge each once, and rejections that wait or keep their status (the
order's and the rejections' part of ``test_stripe_webhook.py``).
"""

from __future__ import annotations

from typing import Any

import psycopg

from ledger.http.stripe_webhook import RETRY_AFTER_SECONDS
from tests import support
from tests.stripe_support import (
    charge,
    event,
    payment_intent,
    refund_object,
    split_metadata,
)
from tests.stripe_webhooks import Webhook, purchase, serve, succeeded, webhook

__all__ = ["serve", "webhook"]  # the fixtures, from tests/stripe_webhooks.py


def test_a_refund_before_its_payment_is_409_with_retry_after_then_recorded(
    webhook: Webhook, conn: psycopg.Connection[Any]
) -> None:
    refund = event("evt_ref_1", "refund.created", refund_object("re_1", "pi_1", 700))
    early = webhook.post(refund)
    assert early.status_code == 409
    assert early.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert early.json()["outcome"] == "retry_later"
    assert early.json()["results"][0]["error"]["code"] == "not_found"
    assert purchase(conn, "pi_1") is None
    assert webhook.post(succeeded("evt_pay_3", "pi_1")).status_code == 200
    later = webhook.post(refund)  # Stripe's retry
    assert (later.status_code, later.json()["outcome"]) == (200, "accepted")
    assert "Retry-After" not in later.headers
    assert purchase(conn, "pi_1") == ("completed", 1999, "usd", 199, 800, 1000, 700)
    assert webhook.outcomes == [
        ("refund.created", "retry_later"),
        ("payment_intent.succeeded", "accepted"),
        ("refund.created", "accepted"),
    ]


def test_a_refund_of_a_pending_purchase_waits_for_the_payment(
    webhook: Webhook, conn: psycopg.Connection[Any]
) -> None:
    metadata = {"customer_id": "alice", "content_id": support.CONTENT}
    created = event(
        "evt_start_1",
        "payment_intent.created",
        payment_intent("pi_1", metadata=metadata, status="requires_payment_method"),
    )
    assert webhook.post(created).json()["outcome"] == "accepted"
    assert purchase(conn, "pi_1")[0] == "pending"  # type: ignore[index]
    processing = event(
        "evt_start_2",
        "payment_intent.processing",
        payment_intent("pi_1", metadata=metadata, status="processing"),
    )
    assert webhook.post(processing).json()["outcome"] == "duplicate"
    refund = event("evt_ref_2", "refund.created", refund_object("re_1", "pi_1", 1999))
    early = webhook.post(refund)
    assert (early.status_code, early.json()["outcome"]) == (409, "retry_later")
    assert "Retry-After" in early.headers
    assert webhook.post(succeeded("evt_pay_4", "pi_1")).status_code == 200
    assert webhook.post(refund).json()["outcome"] == "accepted"
    assert purchase(conn, "pi_1")[0] == "refunded"  # type: ignore[index]
    access = conn.execute("SELECT count(*) FROM content_access WHERE user_id = 'alice'").fetchone()
    assert access == (0,)


def test_a_late_start_or_failure_after_the_payment_is_superseded(
    webhook: Webhook, conn: psycopg.Connection[Any]
) -> None:
    assert webhook.post(succeeded("evt_pay_5", "pi_1")).status_code == 200
    rows = support.dump_all(conn)
    created = event(
        "evt_late_1",
        "payment_intent.created",
        payment_intent("pi_1", status="requires_payment_method"),
    )
    failed = event(
        "evt_late_2",
        "payment_intent.payment_failed",
        payment_intent("pi_1", status="requires_payment_method"),
    )
    for late in (created, failed):
        answer = webhook.post(late)
        assert (answer.status_code, answer.json()["outcome"]) == (200, "superseded")
        assert answer.json()["results"][0]["error"]["code"] == "invalid_state"
    assert support.dump_all(conn) == rows


def test_a_failure_then_a_success_records_both(
    webhook: Webhook, conn: psycopg.Connection[Any]
) -> None:
    failed = event(
        "evt_fail_1",
        "payment_intent.payment_failed",
        payment_intent("pi_1", status="requires_payment_method"),
    )
    assert webhook.post(failed).json()["outcome"] == "accepted"
    assert purchase(conn, "pi_1")[0] == "failed"  # type: ignore[index]
    bare = event(
        "evt_fail_2",
        "payment_intent.payment_failed",
        payment_intent("pi_2", metadata={}, status="requires_payment_method"),
    )
    unknown = webhook.post(bare)
    assert (unknown.status_code, unknown.json()["outcome"]) == (409, "retry_later")
    assert (
        webhook.post(succeeded("evt_pay_6", "pi_1", metadata=split_metadata())).status_code == 200
    )
    assert purchase(conn, "pi_1")[0] == "completed"  # type: ignore[index]


def test_a_refunded_charge_records_each_refund_once(
    webhook: Webhook, conn: psycopg.Connection[Any]
) -> None:
    assert webhook.post(succeeded("evt_pay_7", "pi_1")).status_code == 200
    first = refund_object("re_1", "pi_1", 500)
    assert webhook.post(event("evt_ref_3", "refund.created", first)).json()["outcome"] == "accepted"
    second = refund_object("re_2", "pi_1", 300)
    refunded = event("evt_ch_1", "charge.refunded", charge("pi_1", 1999, [second, first]))
    answer = webhook.post(refunded)
    assert (answer.status_code, answer.json()["outcome"]) == (200, "accepted")
    assert [r["status"] for r in answer.json()["results"]] == ["accepted", "duplicate"]
    assert purchase(conn, "pi_1")[6] == 800  # type: ignore[index]
    again = webhook.post(refunded)
    assert (again.status_code, again.json()["outcome"]) == (200, "duplicate")
    updated = event("evt_ref_4", "refund.updated", second)
    assert webhook.post(updated).json()["outcome"] == "duplicate"
    assert purchase(conn, "pi_1")[6] == 800  # type: ignore[index]


def test_bad_metadata_is_422_naming_the_field_and_records_nothing(
    webhook: Webhook, conn: psycopg.Connection[Any]
) -> None:
    before = support.dump_all(conn), support.event_count(conn)
    metadata = split_metadata()
    metadata["platform_fee_cents"] = "+199"
    answer = webhook.post(succeeded("evt_bad_1", "pi_1", metadata=metadata))
    assert answer.status_code == 422
    body = answer.json()
    assert body["outcome"] == "bad_metadata"
    assert body["error"]["code"] == "validation_error"
    assert body["error"]["field"] == "data.object.metadata.platform_fee_cents"
    del metadata["platform_fee_cents"]
    missing = webhook.post(succeeded("evt_bad_2", "pi_1", metadata=metadata)).json()
    assert missing["error"]["field"] == "data.object.metadata.platform_fee_cents"
    assert (support.dump_all(conn), support.event_count(conn)) == before
    assert webhook.outcomes == [("payment_intent.succeeded", "bad_metadata")] * 2


def test_an_unknown_customer_or_content_waits_and_other_rejections_keep_their_status(
    webhook: Webhook, conn: psycopg.Connection[Any]
) -> None:
    stranger = succeeded("evt_who_1", "pi_1", metadata=split_metadata(customer="nobody"))
    answer = webhook.post(stranger)
    assert (answer.status_code, answer.json()["outcome"]) == (409, "retry_later")
    assert answer.json()["results"][0]["error"]["field"] == "customer_id"
    assert webhook.post(succeeded("evt_pay_8", "pi_2")).status_code == 200
    # the same payment intent with another split: a conflict, not worth a retry header
    other = succeeded("evt_pay_9", "pi_2", metadata=split_metadata(fees=(99, 900, 1000)))
    conflict = webhook.post(other)
    assert (conflict.status_code, conflict.json()["outcome"]) == (409, "rejected")
    assert conflict.json()["results"][0]["error"]["code"] == "conflict"
    assert "Retry-After" not in conflict.headers
    too_much = event("evt_ref_5", "refund.created", refund_object("re_9", "pi_2", 5000))
    assert webhook.post(too_much).status_code == 409
    assert purchase(conn, "pi_2")[6] == 0  # type: ignore[index]
