"""Erasing random people from random histories (issue 27, docs/privacy.md): each time,
the revenue report is the same to the cent, the log verifies, the erased person's rows are
gone, and a rebuild reproduces every row that a verify then finds exact."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import api
from ledger.audit.revenue import RevenueQuery, revenue
from ledger.audit.verify import verify as audit_verify
from ledger.config import Settings
from ledger.database.connections import connect
from ledger.upkeep.rebuild import rebuild
from ledger.upkeep.verify import verify
from tests.support import append, dump_all, t

ORG = "aaaaaaaa-0000-4000-8000-00000000000a"
VIDEOS = ("cccccccc-0000-4000-8000-00000000000a", "cccccccc-0000-4000-8000-00000000000b")
PEOPLE = ("ann", "ben", "cat", "dan")  # dan is also the creator of the second video

SETUP: list[dict[str, Any]] = [
    {"type": "organization.register", "organization_id": ORG, "name": "O", "occurred_at": t(1)},
    *({"type": "user.register", "user_id": p, "occurred_at": t(1)} for p in PEOPLE),
    *(
        {
            "type": "content.publish",
            "content_id": video,
            "organization_id": ORG,
            "creator_id": creator,
            "title": "T",
            "occurred_at": t(1),
        }
        for video, creator in zip(VIDEOS, ("ann", "dan"), strict=True)
    ),
]


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    commands: list[dict[str, Any]] = []
    for number in range(draw(st.integers(1, 8))):
        person = draw(st.sampled_from(PEOPLE))
        video = draw(st.sampled_from(VIDEOS))
        day = 2 + number
        intent = f"pi_{number}"
        amount = draw(st.integers(100, 5000))
        commands.append(
            {
                "type": "purchase.complete",
                "stripe_payment_intent_id": intent,
                "customer_id": person,
                "content_id": video,
                "amount_paid_cents": amount,
                "currency": "usd",
                "platform_fee_cents": amount // 10,
                "organization_fee_cents": amount // 5,
                "creator_payout_cents": amount - amount // 10 - amount // 5,
                "occurred_at": t(day),
            }
        )
        if draw(st.booleans()):
            commands.append(
                {
                    "type": "purchase.refund",
                    "stripe_payment_intent_id": intent,
                    "refund_id": f"re_{number}",
                    "amount_cents": draw(st.integers(1, amount)),
                    "occurred_at": t(day, 13),
                }
            )
        if draw(st.booleans()):
            commands.append(
                {
                    "type": "playback.progress",
                    "user_id": person,
                    "content_id": video,
                    "position_seconds": draw(st.integers(0, 100)),
                    "duration_seconds": 100,
                    "occurred_at": t(day, 14),
                }
            )
    return commands


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories(), erased=st.lists(st.sampled_from(PEOPLE), min_size=1, max_size=3))
def test_erasing_random_people_keeps_money_chain_and_rebuild(
    fresh: Callable[[], Settings], history: list[dict[str, Any]], erased: list[str]
) -> None:
    where = fresh()
    ledger = api.open_ledger(where)
    try:
        append(ledger, *SETUP, *history)
        with connect(where, autocommit=True) as conn:
            before = revenue(conn, where.schema, RevenueQuery()).as_dict()
            for number, person in enumerate(erased):
                answer = append(
                    ledger, {"type": "user.erase", "user_id": person, "occurred_at": t(20, number)}
                )[0]
                if person in erased[:number]:  # erased already: the id names no one
                    assert answer.error is not None and answer.error.code == "not_found"
                else:
                    assert answer.status == "accepted", answer
                assert revenue(conn, where.schema, RevenueQuery()).as_dict() == before
                assert audit_verify(conn, where.schema).ok
                for table, column in (("users", "id"), ("purchases", "customer_id")):
                    query = f"SELECT count(*) FROM {table} WHERE {column} = %s"
                    assert conn.execute(query, (person,)).fetchone() == (0,)
                rows = dump_all(conn)
                rebuild(where, None, stream=io.StringIO())
                assert dump_all(conn) == rows
                assert verify(where) == []
    finally:
        ledger.close()
