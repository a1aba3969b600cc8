"""The revenue report against an independent computation from the commands themselves."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg import sql

from ledger import api
from ledger.audit.revenue import RevenueQuery, revenue
from ledger.config import Settings

ORGS = ["aaaaaaaa-0000-4000-8000-00000000000a", "aaaaaaaa-0000-4000-8000-00000000000b"]
CONTENT = {
    "cccccccc-0000-4000-8000-00000000000a": ORGS[0],
    "cccccccc-0000-4000-8000-00000000000b": ORGS[1],
}
SETUP = (
    [{"type": "organization.register", "organization_id": o, "name": "Org"} for o in ORGS]
    + [{"type": "user.register", "user_id": u} for u in ("creator", "buyer")]
    + [
        {
            "type": "content.publish",
            "content_id": c,
            "organization_id": o,
            "creator_id": "creator",
            "title": "T",
        }
        for c, o in CONTENT.items()
    ]
)


@st.composite
def sales(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Valid purchases and partial refunds spread over months and currencies."""
    commands: list[dict[str, Any]] = []
    for n in range(draw(st.integers(1, 6))):
        amount = draw(st.integers(1, 100_000))
        platform = draw(st.integers(0, amount))
        organization = draw(st.integers(0, amount - platform))
        month = draw(st.integers(1, 4))
        content = draw(st.sampled_from(sorted(CONTENT)))
        commands.append(
            {
                "type": "purchase.complete",
                "stripe_payment_intent_id": f"pi_{n}",
                "customer_id": "buyer",
                "content_id": content,
                "amount_paid_cents": amount,
                "currency": draw(st.sampled_from(["usd", "eur", "jpy"])),
                "platform_fee_cents": platform,
                "organization_fee_cents": organization,
                "creator_payout_cents": amount - platform - organization,
                "occurred_at": f"2026-{month:02d}-{draw(st.integers(1, 28)):02d}T10:00:00+00:00",
            }
        )
        left = amount
        for r in range(draw(st.integers(0, 3))):
            if left == 0:
                break
            part = draw(st.integers(1, left))
            left -= part
            month = min(month + draw(st.integers(0, 2)), 6)
            commands.append(
                {
                    "type": "purchase.refund",
                    "stripe_payment_intent_id": f"pi_{n}",
                    "refund_id": f"re_{n}_{r}",
                    "amount_cents": part,
                    "occurred_at": f"2026-{month:02d}-28T{10 + r:02d}:00:00+00:00",
                }
            )
    return commands


def expected(
    commands: list[dict[str, Any]], key: Any, include: Any = lambda c: True
) -> dict[tuple[Any, str], dict[str, int]]:
    """Totals per (key(command, its purchase), currency), from the commands alone.

    Refund shares follow each purchase's whole refund history (the cumulative rule),
    and only the commands ``include`` accepts are counted.
    """
    out: dict[tuple[Any, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    purchases: dict[str, dict[str, Any]] = {}
    refunded: dict[str, int] = defaultdict(int)
    for c in commands:
        if c["type"] == "purchase.complete":
            purchases[c["stripe_payment_intent_id"]] = c
            if not include(c):
                continue
            row = out[(key(c, c), c["currency"])]
            row["purchases"] += 1
            row["gross_cents"] += c["amount_paid_cents"]
            row["platform_fee_cents"] += c["platform_fee_cents"]
            row["organization_fee_cents"] += c["organization_fee_cents"]
            row["creator_payout_cents"] += c["creator_payout_cents"]
        elif c["type"] == "purchase.refund":
            p = purchases[c["stripe_payment_intent_id"]]
            a, before = p["amount_paid_cents"], refunded[c["stripe_payment_intent_id"]]
            after = before + c["amount_cents"]
            refunded[c["stripe_payment_intent_id"]] = after
            if not include(c):
                continue
            plat = after * p["platform_fee_cents"] // a - before * p["platform_fee_cents"] // a
            org = (
                after * p["organization_fee_cents"] // a - before * p["organization_fee_cents"] // a
            )
            row = out[(key(c, p), p["currency"])]
            row["refunds"] += 1
            row["refunded_cents"] += c["amount_cents"]
            row["platform_fee_cents"] -= plat
            row["organization_fee_cents"] -= org
            row["creator_payout_cents"] -= c["amount_cents"] - plat - org
    for row in out.values():
        row["net_cents"] = row["gross_cents"] - row["refunded_cents"]
    return {k: dict(v) for k, v in out.items()}


def reported(rows: list[Any], by: str) -> dict[tuple[Any, str], dict[str, int]]:
    fields = (
        "purchases",
        "gross_cents",
        "refunds",
        "refunded_cents",
        "net_cents",
        "platform_fee_cents",
        "organization_fee_cents",
        "creator_payout_cents",
    )
    return {
        (getattr(r, by) if by else None, r.currency): {
            f: getattr(r, f) for f in fields if getattr(r, f)
        }
        for r in rows
    }


def nonzero(table: dict[tuple[Any, str], dict[str, int]]) -> dict[tuple[Any, str], dict[str, int]]:
    return {k: {f: v for f, v in row.items() if v} for k, row in table.items()}


@pytest.fixture
def fresh(database_url: str) -> Iterator[Any]:
    made: list[str] = []

    def make() -> Settings:
        settings = Settings(url=database_url, schema=f"t_{uuid.uuid4().hex[:16]}")
        made.append(settings.schema)
        api.upgrade(settings)
        return settings

    yield make
    with psycopg.connect(database_url, autocommit=True) as conn:
        for schema in made:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def append(settings: Settings, commands: list[dict[str, Any]]) -> None:
    with api.open_ledger(settings) as app:
        results = [r for _, r in api.append_lines(app, [json.dumps(c) for c in commands])]
    assert all(r.status != "rejected" for r in results), [r.error for r in results if r.error]


@given(first=sales(), second=sales())
def test_totals_months_and_as_of_equal_an_independent_computation(
    fresh: Any, first: list[dict[str, Any]], second: list[dict[str, Any]]
) -> None:
    settings = fresh()
    append(settings, SETUP + first)
    with psycopg.connect(settings.url) as conn:
        between = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
    renamed = [
        dict(c, stripe_payment_intent_id="b" + c["stripe_payment_intent_id"])
        | ({"refund_id": "b" + c["refund_id"]} if "refund_id" in c else {})
        for c in second
    ]
    append(settings, renamed)
    everything = first + renamed
    with psycopg.connect(settings.url, autocommit=True) as conn:
        totals = revenue(conn, settings.schema, RevenueQuery())
        assert reported(totals.totals, "") == nonzero(expected(everything, lambda c, p: None))
        month = revenue(
            conn, settings.schema, RevenueQuery(organization=uuid.UUID(ORGS[0]), group_by="month")
        )
        purchases = {
            c["stripe_payment_intent_id"]: c for c in everything if c["type"] == "purchase.complete"
        }

        def of_org(c: dict[str, Any]) -> bool:
            return CONTENT[purchases[c["stripe_payment_intent_id"]]["content_id"]] == ORGS[0]

        assert reported(month.rows, "period") == nonzero(
            expected(everything, lambda c, p: c["occurred_at"][:7], of_org)
        )
        as_of = revenue(conn, settings.schema, RevenueQuery(as_of=between))
        assert reported(as_of.totals, "") == nonzero(expected(first, lambda c, p: None))
        window = revenue(
            conn,
            settings.schema,
            RevenueQuery(
                start=datetime.fromisoformat("2026-02-01T00:00:00+00:00"),
                end=datetime.fromisoformat("2026-04-01T00:00:00+00:00"),
                group_by="content",
            ),
        )
        assert reported(window.rows, "group") == nonzero(
            expected(
                everything,
                lambda c, p: p["content_id"],
                lambda c: "2026-02" <= c["occurred_at"][:7] <= "2026-03",
            )
        )
