"""A synthetic log, written straight into ``ledger_events`` with COPY.

Appending a million events through the ledger would take longer than the thing
measured; instead the domain's own aggregates produce the events in memory (same
classes, same JSON, same topics) and COPY stores them (the hash-chain trigger still
runs). Purchases of many users, and many playback heartbeats per purchase.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql

from ledger.domain import events as ev
from ledger.domain import ids
from ledger.domain.aggregates import Access, Content, Organization, Playback, Purchase, User
from ledger.service import Ledger


def _events(count: int, seed: int = 1) -> Iterator[Any]:
    rng = random.Random(seed)
    organization = Organization._create(
        ev.OrganizationRegistered,
        id=ids.organization_id("bench-org"),
        organization_id="00000000-0000-4000-8000-00000000000b",
        name="Bench",
        fingerprint="x",
        occurred_at="2026-01-01T00:00:00.000000+00:00",
    )
    yield from organization.collect_events()
    creator = User._create(
        ev.UserRegistered,
        id=ids.user_id("creator"),
        user_id="creator",
        occurred_at="2026-01-01T00:00:00.000000+00:00",
    )
    yield from creator.collect_events()
    contents = []
    for n in range(50):
        content_id = f"00000000-0000-4000-8000-{n:012d}"
        content = Content._create(
            ev.ContentPublished,
            id=ids.content_id(content_id),
            content_id=content_id,
            organization_id="00000000-0000-4000-8000-00000000000b",
            creator_id="creator",
            title=f"Video {n}",
            fingerprint="x",
            occurred_at="2026-01-01T00:00:00.000000+00:00",
        )
        contents.append(content_id)
        yield from content.collect_events()
    produced = 53
    n = 0
    while produced < count:
        n += 1
        day = 1 + (n // 500) % 27
        month = 1 + (n // 13500) % 12
        at = f"2026-{month:02d}-{day:02d}T{n % 24:02d}:{n % 60:02d}:00.000000+00:00"
        user_id = f"user_{n}"
        user = User._create(
            ev.UserRegistered, id=ids.user_id(user_id), user_id=user_id, occurred_at=at
        )
        content_id = rng.choice(contents)
        intent = f"pi_bench_{n}"
        purchase = Purchase._create(
            ev.PurchaseOpened,
            id=ids.purchase_id(intent),
            stripe_payment_intent_id=intent,
            occurred_at=at,
        )
        amount = rng.choice((499, 999, 1999))
        purchase.trigger_event(
            ev.PurchaseCompleted,
            stripe_payment_intent_id=intent,
            customer_id=user_id,
            content_id=content_id,
            organization_id="00000000-0000-4000-8000-00000000000b",
            creator_id="creator",
            amount_paid_cents=amount,
            currency=rng.choice(("usd", "eur")),
            platform_fee_cents=amount // 5,
            organization_fee_cents=amount // 5,
            creator_payout_cents=amount - 2 * (amount // 5),
            revenue_split_config_id=None,
            fingerprint="x",
            occurred_at=at,
        )
        if rng.random() < 0.1:
            purchase.refund(f"re_bench_{n}", amount // 2, None, at)
        access = Access._create(
            ev.AccessOpened,
            id=ids.access_id(user_id, content_id),
            user_id=user_id,
            content_id=content_id,
            occurred_at=at,
        )
        access.grant_purchase("00000000-0000-4000-8000-00000000000b", intent, None, at)
        playback = Playback._create(
            ev.PlaybackOpened,
            id=ids.playback_id(user_id, content_id),
            user_id=user_id,
            content_id=content_id,
            occurred_at=at,
        )
        for beat in range(12):
            playback.progress(
                min(600, 50 * (beat + 1)),
                600,
                f"{n}-{beat}",
                access.changed_at,
                at[:17] + f"{beat:02d}.000000+00:00",
            )
        for aggregate in (user, purchase, access, playback):
            batch = aggregate.collect_events()
            produced += len(batch)
            yield from batch


def write_log(conn: psycopg.Connection[Any], app: Ledger, schema: str, count: int) -> int:
    """Writes about ``count`` events; returns how many."""
    written = 0
    statement = sql.SQL(
        "COPY {} (originator_id, originator_version, topic, state) FROM STDIN"
    ).format(sql.Identifier(schema, "ledger_events"))
    with conn.transaction(), conn.cursor() as cursor, cursor.copy(statement) as copy:
        for event in _events(count):
            stored = app.mapper.to_stored_event(event)
            copy.write_row(
                (stored.originator_id, stored.originator_version, stored.topic, stored.state)
            )
            written += 1
    return written
