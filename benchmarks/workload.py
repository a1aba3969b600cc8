"""The commands the benchmarks send, and the scratch schemas they run in.

One organization, ``VIDEOS`` videos and ``users`` customers. Purchases each buy another
(customer, video) pair, so none is a duplicate; heartbeats are playback progress of
customers who bought the first video (the "viewers"), so each is accepted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
from psycopg import sql

from ledger import api
from ledger.commands.base import Command
from ledger.commands.parsing import parse_command
from ledger.config import Settings

ORG = "00000000-0000-4000-8000-0000000000aa"
VIDEOS = 50
DURATION = 3600
HEARTBEATS_FROM = datetime(2030, 1, 1, tzinfo=UTC)


def scratch(url: str) -> Settings:
    settings = Settings(url=url, schema=f"bench_{uuid.uuid4().hex[:10]}")
    api.upgrade(settings)
    return settings


def drop(settings: Settings) -> None:
    with psycopg.connect(settings.url, autocommit=True) as conn:
        for schema in (settings.schema, settings.schema + "_copyref"):
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@contextmanager
def scratch_schema(url: str) -> Iterator[Settings]:
    """A migrated schema of its own, dropped afterwards whatever happens."""
    settings = scratch(url)
    try:
        yield settings
    finally:
        drop(settings)


def video(index: int) -> str:
    return f"00000000-0000-4000-8000-{index:012d}"


def setup_lines(users: int) -> list[bytes]:
    lines = [
        orjson.dumps({"type": "organization.register", "organization_id": ORG, "name": "Bench"}),
        orjson.dumps({"type": "user.register", "user_id": "creator"}),
    ]
    lines += [
        orjson.dumps(
            {
                "type": "content.publish",
                "content_id": video(v),
                "organization_id": ORG,
                "creator_id": "creator",
                "title": f"Video {v}",
            }
        )
        for v in range(VIDEOS)
    ]
    lines += [orjson.dumps({"type": "user.register", "user_id": f"u{n}"}) for n in range(users)]
    return lines


def purchase(n: int, prefix: str, users: int) -> dict[str, Any]:
    """The purchase of pair ``n``: customer ``n % users``, video ``n // users``."""
    return {
        "type": "purchase.complete",
        "stripe_payment_intent_id": f"{prefix}{n}",
        "customer_id": f"u{n % users}",
        "content_id": video(n // users),
        "amount_paid_cents": 1999,
        "currency": "usd",
        "platform_fee_cents": 199,
        "organization_fee_cents": 800,
        "creator_payout_cents": 1000,
    }


def purchase_lines(count: int, prefix: str, users: int, first: int = 0) -> list[bytes]:
    """``count`` purchases, each of another (customer, video) pair from pair ``first`` on."""
    assert first + count <= users * VIDEOS, "not enough distinct (customer, video) pairs"
    return [orjson.dumps(purchase(n, prefix, users)) for n in range(first, first + count)]


def purchase_commands(count: int, prefix: str, users: int, first: int = 0) -> list[Command]:
    assert first + count <= users * VIDEOS, "not enough distinct (customer, video) pairs"
    return [
        parse_command(orjson.dumps(purchase(n, prefix, users))) for n in range(first, first + count)
    ]


def heartbeat(viewer: int, beat: int) -> dict[str, Any]:
    """Viewer ``viewer`` (customer ``u<viewer>``, who bought video 0) at its ``beat``-th
    heartbeat, a second after the one before (a heartbeat has no natural key: its moment
    tells it from a redelivery). The moments lie after any purchase the set-up made."""
    return {
        "type": "playback.progress",
        "user_id": f"u{viewer}",
        "content_id": video(0),
        "position_seconds": beat % DURATION,
        "duration_seconds": DURATION,
        "occurred_at": (HEARTBEATS_FROM + timedelta(seconds=beat)).isoformat(),
    }


def heartbeat_commands(viewers: range, count: int, first_beat: int = 0) -> list[Command]:
    """``count`` heartbeats, round robin over ``viewers``."""
    width = len(viewers)
    return [
        parse_command(orjson.dumps(heartbeat(viewers[n % width], first_beat + n // width)))
        for n in range(count)
    ]


def prepare(app: Any, users: int, viewers: int) -> None:
    """Set-up (organization, videos, ``users`` customers) and the viewers' purchases of
    video 0 (pairs ``[0, viewers)``), through the ledger in one transaction (``atomic``,
    so set-up takes little of a run): its cache is then warm."""
    assert viewers <= users
    lines = setup_lines(users) + purchase_lines(viewers, "pi_view_", users)
    bad = [r for _, r in api.append_lines(app, lines, atomic=True) if r.status != "accepted"]
    assert not bad, bad[:3]
