"""A realistic, deterministic checkout history for ``ledger demo``.

Seeded, so every run generates the same commands with the same ``occurred_at``
and idempotent keys: running the demo twice appends nothing new (duplicates).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

DEMO_NAMESPACE = uuid.UUID("0b6f4c52-2f0e-4a8e-9d7b-6a3c1e5f9d20")
CURRENCIES = ("usd", "usd", "usd", "eur", "gbp")


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(DEMO_NAMESPACE, "/".join(parts)))


def history(seed: int = 7, purchases: int = 300) -> Iterator[dict[str, Any]]:
    """Commands as JSON-ready dicts, in business-time order."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    clock = start

    def tick(max_minutes: int = 600) -> str:
        nonlocal clock
        clock += timedelta(minutes=rng.randint(1, max_minutes), seconds=rng.randint(0, 59))
        return clock.isoformat()

    organizations = [
        (_uuid("org", str(i)), name)
        for i, name in enumerate(
            ("Northwind Studios", "Blue Heron Media", "Quiet Summit Films", "Lumen Academy")
        )
    ]
    for organization_id, name in organizations:
        yield {
            "type": "organization.register",
            "organization_id": organization_id,
            "name": name,
            "occurred_at": tick(30),
        }
    creators = [f"creator_{i:02d}" for i in range(8)]
    customers = [f"customer_{i:03d}" for i in range(120)]
    for user_id in creators + customers:
        yield {"type": "user.register", "user_id": user_id, "occurred_at": tick(5)}
    catalogue: list[tuple[str, str, int, str]] = []  # content, organization, price, currency
    for i in range(24):
        organization_id, _ = organizations[i % len(organizations)]
        content_id = _uuid("content", str(i))
        catalogue.append(
            (
                content_id,
                organization_id,
                rng.choice((499, 999, 1499, 1999, 2999)),
                CURRENCIES[i % 5],
            )
        )
        yield {
            "type": "content.publish",
            "content_id": content_id,
            "organization_id": organization_id,
            "creator_id": creators[i % len(creators)],
            "title": f"Lesson {i + 1}: {rng.choice(('Light', 'Sound', 'Story', 'Motion'))}",
            "occurred_at": tick(60),
        }

    for n in range(purchases):
        customer = rng.choice(customers)
        content_id, organization_id, price, currency = rng.choice(catalogue)
        intent = f"pi_demo_{n:05d}"
        base = {
            "stripe_payment_intent_id": intent,
            "customer_id": customer,
            "content_id": content_id,
            "amount_paid_cents": price,
            "currency": currency,
        }
        yield {"type": "purchase.start", **base, "occurred_at": tick(240)}
        roll = rng.random()
        if roll < 0.08:
            yield {
                "type": "purchase.fail",
                "stripe_payment_intent_id": intent,
                "occurred_at": tick(5),
            }
            continue
        if roll < 0.12:
            continue  # left pending
        platform = price * 20 // 100
        organization_fee = price * 30 // 100
        completed = {
            "type": "purchase.complete",
            **base,
            "platform_fee_cents": platform,
            "organization_fee_cents": organization_fee,
            "creator_payout_cents": price - platform - organization_fee,
            "organization_id": organization_id,
            "occurred_at": tick(5),
        }
        yield completed
        if rng.random() < 0.1:
            yield completed  # a webhook delivered twice: answered duplicate
        for beat in range(rng.randint(0, 4)):
            yield {
                "type": "playback.progress",
                "user_id": customer,
                "content_id": content_id,
                "position_seconds": min(600, (beat + 1) * rng.randint(60, 200)),
                "duration_seconds": 600,
                "occurred_at": tick(30),
            }
        refund = rng.random()
        if refund < 0.06:
            yield {
                "type": "purchase.refund",
                "stripe_payment_intent_id": intent,
                "refund_id": f"re_demo_{n:05d}_full",
                "amount_cents": price,
                "reason": "requested_by_customer",
                "occurred_at": tick(2000),
            }
        elif refund < 0.16:
            first = rng.randint(1, price - 1)
            yield {
                "type": "purchase.refund",
                "stripe_payment_intent_id": intent,
                "refund_id": f"re_demo_{n:05d}_a",
                "amount_cents": first,
                "occurred_at": tick(2000),
            }
            if rng.random() < 0.5:
                yield {
                    "type": "purchase.refund",
                    "stripe_payment_intent_id": intent,
                    "refund_id": f"re_demo_{n:05d}_b",
                    "amount_cents": price - first,
                    "occurred_at": tick(3000),
                }

    for n in range(40):
        user = rng.choice(customers)
        content_id, _, _, _ = rng.choice(catalogue)
        access_type = rng.choice(("subscription", "complimentary", "preview"))
        granted = tick(120)
        command: dict[str, Any] = {
            "type": "access.grant",
            "user_id": user,
            "content_id": content_id,
            "access_type": access_type,
            "occurred_at": granted,
            "idempotency_key": f"grant_demo_{n:03d}",
        }
        if access_type != "complimentary":
            command["expires_at"] = (clock + timedelta(days=rng.choice((1, 7, 30)))).isoformat()
        yield command  # rejected (invalid_state) when the user already purchased it
        if rng.random() < 0.2:
            yield {
                "type": "access.revoke",
                "user_id": user,
                "content_id": content_id,
                "reason": "support",
                "occurred_at": tick(60),
                "idempotency_key": f"revoke_demo_{n:03d}",
            }
