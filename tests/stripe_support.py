"""Stripe events in the documented shapes of Stripe's API objects, signed as Stripe signs
them, and a real uvicorn server on an ephemeral loopback port for the webhook tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson
import uvicorn
from fastapi import FastAPI

from ledger.http.stripe_signature import sign
from tests.support import CONTENT

SECRET = "whsec_test_4eC39HqLyjWDarjtT1zdp7dc"
OTHER_SECRET = "whsec_test_other_0000000000000000"
CREATED = 1767787200  # 2026-01-07T12:00:00Z


def split_metadata(
    customer: str = "alice",
    content_id: str = CONTENT,
    fees: tuple[int, int, int] = (199, 800, 1000),
    **extra: str,
) -> dict[str, str]:
    platform, organization, creator = fees
    return {
        "customer_id": customer,
        "content_id": content_id,
        "platform_fee_cents": str(platform),
        "organization_fee_cents": str(organization),
        "creator_payout_cents": str(creator),
        **extra,
    }


def payment_intent(
    intent: str,
    amount: int = 1999,
    currency: str = "usd",
    metadata: dict[str, str] | None = None,
    status: str = "succeeded",
) -> dict[str, Any]:
    """A PaymentIntent object as Stripe's API reference shows it."""
    return {
        "id": intent,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_received": amount if status == "succeeded" else 0,
        "capture_method": "automatic",
        "client_secret": f"{intent}_secret_test",
        "confirmation_method": "automatic",
        "created": CREATED - 60,
        "currency": currency,
        "customer": None,
        "description": None,
        "last_payment_error": None,
        "latest_charge": f"ch_{intent[3:]}" if status == "succeeded" else None,
        "livemode": False,
        "metadata": split_metadata() if metadata is None else metadata,
        "payment_method": "pm_card_visa",
        "payment_method_types": ["card"],
        "status": status,
    }


def refund_object(
    refund_id: str,
    intent: str,
    amount: int,
    status: str = "succeeded",
    reason: str | None = "requested_by_customer",
) -> dict[str, Any]:
    """A Refund object as Stripe's API reference shows it."""
    return {
        "id": refund_id,
        "object": "refund",
        "amount": amount,
        "balance_transaction": f"txn_{refund_id[3:]}",
        "charge": f"ch_{intent[3:]}",
        "created": CREATED,
        "currency": "usd",
        "metadata": {},
        "payment_intent": intent,
        "reason": reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": status,
        "transfer_reversal": None,
    }


def charge(intent: str, amount: int, refunds: list[dict[str, Any]] | None) -> dict[str, Any]:
    """A Charge object; ``refunds`` None leaves out the list, as API versions from
    2022-11-15 do."""
    refunded = sum(r["amount"] for r in refunds or [] if r["status"] == "succeeded")
    obj: dict[str, Any] = {
        "id": f"ch_{intent[3:]}",
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": refunded,
        "currency": "usd",
        "paid": True,
        "payment_intent": intent,
        "refunded": refunded == amount,
        "status": "succeeded",
    }
    if refunds is not None:
        obj["refunds"] = {
            "object": "list",
            "data": refunds,
            "has_more": False,
            "total_count": len(refunds),
            "url": f"/v1/charges/{obj['id']}/refunds",
        }
    return obj


def event(
    event_id: str, event_type: str, obj: dict[str, Any], created: int = CREATED
) -> dict[str, Any]:
    """An Event object: the envelope of every webhook delivery."""
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2022-08-01",
        "created": created,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def body_of(payload: dict[str, Any]) -> bytes:
    return orjson.dumps(payload)


def signature(body: bytes, secret: str = SECRET, at: int | None = None) -> str:
    timestamp = int(time.time()) if at is None else at
    return f"t={timestamp},v1={sign(body, secret, timestamp)}"


def deliver(url: str, payload: dict[str, Any]) -> httpx.Response:
    """``payload`` delivered to the service at ``url`` as Stripe delivers it: signed now with
    the test secret, no bearer token."""
    body = body_of(payload)
    with httpx.Client(base_url=url, timeout=60) as stripe:
        return stripe.post(
            "/v1/webhooks/stripe", content=body, headers={"Stripe-Signature": signature(body)}
        )


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """The app under real uvicorn on 127.0.0.1 and a port the kernel chose; its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
