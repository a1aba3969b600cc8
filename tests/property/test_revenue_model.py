"""The revenue report against an independent computation, over generated histories.

The expected figures are computed here from the commands alone: which commands the
ledger accepts comes from the independent contract model (tests/property/model.py),
and the money from the contract's rules, written out below (gross in the UTC period of
completion, each refund in its own period, refund shares by the cumulative rule). No
code of the ledger is used to compute an expectation.

Each history is appended in two batches; a moment between them (the database's clock)
is the ``as_of`` that must see the first batch only, although the second batch also
refunds purchases of the first and completes purchases dated before them.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from math import ceil
from typing import Any

import psycopg
from hypothesis import given
from hypothesis import strategies as st

from ledger import api
from ledger.audit.reconcile import reconcile
from ledger.audit.revenue import RevenueQuery, RevenueRow, revenue
from ledger.config import Settings
from ledger.service import Ledger
from tests.property.model import Model

ORG_A = "aaaaaaaa-0000-4000-8000-00000000000a"
ORG_B = "aaaaaaaa-0000-4000-8000-00000000000b"
# content -> (organization, creator)
CONTENT = {
    "cccccccc-0000-4000-8000-00000000000a": (ORG_A, "creator_x"),
    "cccccccc-0000-4000-8000-00000000000b": (ORG_A, "creator_y"),
    "cccccccc-0000-4000-8000-00000000000c": (ORG_B, "creator_x"),
}
CUSTOMERS = ("buyer_1", "buyer_2", "buyer_3")
T0 = "2025-12-01T00:00:00+00:00"
SETUP = [
    {"type": "organization.register", "organization_id": o, "name": "Org", "occurred_at": T0}
    for o in (ORG_A, ORG_B)
] + [
    {"type": "user.register", "user_id": u, "occurred_at": T0}
    for u in ("creator_x", "creator_y", *CUSTOMERS)
] + [
    {
        "type": "content.publish",
        "content_id": c,
        "organization_id": o,
        "creator_id": creator,
        "title": "T",
        "occurred_at": T0,
    }
    for c, (o, creator) in CONTENT.items()
]  # fmt: skip

START = datetime(2026, 1, 1, tzinfo=UTC)
OFFSETS = [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-7))]


@st.composite
def moments(draw: st.DrawFn, after: datetime = START) -> datetime:
    """A business time within ~4 months, in some offset (periods are by UTC)."""
    return after + timedelta(minutes=draw(st.integers(0, 120 * 24 * 60)))


def stamp(moment: datetime, offset: timezone) -> str:
    return moment.astimezone(offset).isoformat()


@st.composite
def stories(draw: st.DrawFn, tag: str, earlier: list[str]) -> list[dict[str, Any]]:
    """Purchases in every flow, partial and excessive refunds across months, redeliveries,
    a customer deleted on the way, and refunds of ``earlier`` purchases."""
    commands: list[dict[str, Any]] = []
    later: list[dict[str, Any]] = []
    offset = draw(st.sampled_from(OFFSETS))
    for n in range(draw(st.integers(1, 6))):
        intent = f"pi_{tag}{n}"
        amount = draw(st.integers(1, 2_000_000))
        platform = draw(st.integers(0, amount))
        organization = draw(st.integers(0, amount - platform))
        base = {
            "stripe_payment_intent_id": intent,
            "customer_id": draw(st.sampled_from(CUSTOMERS)),
            "content_id": draw(st.sampled_from(sorted(CONTENT))),
            "amount_paid_cents": amount,
            "currency": draw(st.sampled_from(["usd", "eur", "jpy", "EUR"])),
        }
        at = draw(moments())
        flow = draw(st.sampled_from(["complete", "start", "start-fail", "fail", "retry"]))
        if flow in ("start", "start-fail", "retry"):
            commands.append({"type": "purchase.start", **base, "occurred_at": stamp(at, offset)})
        if flow in ("start-fail", "retry"):
            at += timedelta(minutes=1)
            fail = {"type": "purchase.fail", "stripe_payment_intent_id": intent}
            commands.append({**fail, "occurred_at": stamp(at, offset)})
        if flow == "fail":
            commands.append({"type": "purchase.fail", **base, "occurred_at": stamp(at, offset)})
        if flow in ("complete", "start", "retry"):
            at += timedelta(minutes=1)
            completion = {
                "type": "purchase.complete",
                **base,
                "platform_fee_cents": platform,
                "organization_fee_cents": organization,
                "creator_payout_cents": amount - platform - organization,
                "occurred_at": stamp(at, offset),
            }
            commands.append(completion)
            if draw(st.booleans()):
                commands.append(completion)  # a webhook delivered twice
        left = amount
        for r in range(draw(st.integers(0, 3))):
            part = draw(st.integers(1, max(1, left + 1)))  # sometimes one cent too many
            left -= part if part <= left else 0
            at += timedelta(days=draw(st.integers(0, 45)))
            refund = {
                "type": "purchase.refund",
                "stripe_payment_intent_id": intent,
                "refund_id": f"re_{tag}{n}_{r}",
                "amount_cents": part,
                "occurred_at": stamp(at, offset),
            }
            (later if draw(st.booleans()) else commands).append(refund)
        if draw(st.integers(0, 9)) == 0:
            commands.append({"type": "user.delete", "user_id": base["customer_id"],
                             "occurred_at": stamp(at, offset)})  # fmt: skip
    for r, intent in enumerate(
        draw(st.lists(st.sampled_from(earlier), max_size=3)) if earlier else []
    ):
        refund_at = draw(moments())
        later.append({
            "type": "purchase.refund",
            "stripe_payment_intent_id": intent,
            "refund_id": f"re_{tag}_late_{r}",
            "amount_cents": draw(st.integers(1, 1_000_000)),
            "occurred_at": stamp(refund_at, offset),
        })  # fmt: skip
    return commands + later


Key = tuple[Any, str]


@dataclass
class Books:
    """The contract's revenue rules, written out independently of the ledger."""

    keep: Callable[[dict[str, Any], str], bool]  # (command, its UTC time) -> counted?
    key: Callable[[dict[str, Any], str], Any]  # (the purchase's completion, UTC time) -> row key
    rows: dict[Key, dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    purchases: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunded: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def post(self, command: dict[str, Any]) -> None:
        utc = datetime.fromisoformat(command["occurred_at"]).astimezone(UTC).isoformat()
        if command["type"] == "purchase.complete":
            intent = command["stripe_payment_intent_id"]
            self.purchases[intent] = command
            if self.keep(command, utc):
                row = self.rows[(self.key(command, utc), command["currency"].lower())]
                row["purchases"] += 1
                row["gross_cents"] += command["amount_paid_cents"]
                row["platform_fee_cents"] += command["platform_fee_cents"]
                row["organization_fee_cents"] += command["organization_fee_cents"]
                row["creator_payout_cents"] += command["creator_payout_cents"]
        elif command["type"] == "purchase.refund":
            intent = command["stripe_payment_intent_id"]
            bought = self.purchases[intent]
            amount = bought["amount_paid_cents"]
            before = self.refunded[intent]
            after = before + command["amount_cents"]
            self.refunded[intent] = after
            # after refunds totalling R: platform ceil(R*p/A), creator floor(R*c/A),
            # the organization the rest
            p, c = bought["platform_fee_cents"], bought["creator_payout_cents"]
            platform = ceil(Fraction(after * p, amount)) - ceil(Fraction(before * p, amount))
            creator = after * c // amount - before * c // amount
            organization = command["amount_cents"] - platform - creator
            if self.keep({**bought, "occurred_at": command["occurred_at"]}, utc):
                row = self.rows[(self.key(bought, utc), bought["currency"].lower())]
                row["refunds"] += 1
                row["refunded_cents"] += command["amount_cents"]
                row["platform_fee_cents"] -= platform
                row["organization_fee_cents"] -= organization
                row["creator_payout_cents"] -= creator

    def table(self) -> dict[Key, dict[str, int]]:
        out = {}
        for key, row in self.rows.items():
            figures = dict(row, net_cents=row["gross_cents"] - row["refunded_cents"])
            out[key] = {k: v for k, v in figures.items() if v}
        return out


def books(
    commands: list[dict[str, Any]],
    key: Callable[[dict[str, Any], str], Any] = lambda c, utc: None,
    keep: Callable[[dict[str, Any], str], bool] = lambda c, utc: True,
) -> dict[Key, dict[str, int]]:
    ledger = Books(keep, key)
    for command in commands:
        ledger.post(command)
    return ledger.table()


def reported(rows: list[RevenueRow], key: Callable[[RevenueRow], Any]) -> dict[Key, dict[str, int]]:
    figures = ("purchases", "gross_cents", "refunds", "refunded_cents", "net_cents",
               "platform_fee_cents", "organization_fee_cents", "creator_payout_cents")  # fmt: skip
    out: dict[Key, dict[str, int]] = {}
    for row in rows:
        assert (key(row), row.currency) not in out, "one row per key and currency"
        out[(key(row), row.currency)] = {f: getattr(row, f) for f in figures if getattr(row, f)}
    return out


def append(
    app: Ledger, model: Model, commands: list[dict[str, Any]], batch: int = 1
) -> list[dict[str, Any]]:
    """Appends (``batch`` lines a transaction: each decided and answered as alone,
    ``test_group_equivalence.py``); checks every answer against the model; returns the
    accepted commands."""
    expected = [model.apply(c) for c in commands]
    lines = [json.dumps(c) for c in commands]
    results = [r for _, r in api.append_lines(app, lines, batch=batch)]
    answers = [r.status if r.error is None else f"rejected:{r.error.code}" for r in results]
    assert answers == expected
    return [c for c, answer in zip(commands, expected, strict=True) if answer == "accepted"]


def month(row: RevenueRow) -> Any:
    return row.period


@st.composite
def windows(draw: st.DrawFn) -> tuple[datetime, datetime, str]:
    start = draw(moments())
    end = start + timedelta(hours=draw(st.integers(1, 90 * 24)))
    return start, end, draw(st.sampled_from(["day", "content", "creator", "organization"]))


@given(data=st.data())
def test_totals_months_and_as_of_equal_an_independent_computation(
    fresh: Callable[[], Settings], data: st.DataObject
) -> None:
    first = data.draw(stories("a", []), label="first batch")
    settings = fresh()
    model = Model()
    # one ledger for both batches; the catalogue, the same in every example and not what is
    # tested, in one transaction (its answers still the model's)
    with api.open_ledger(settings) as app:
        accepted_first = append(app, model, SETUP, batch=len(SETUP))
        accepted_first += append(app, model, first)
        with psycopg.connect(settings.url) as conn:
            between = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
        intents = sorted({c["stripe_payment_intent_id"] for c in first if "amount_paid_cents" in c})
        second = data.draw(stories("b", intents), label="second batch")
        accepted = accepted_first + append(app, model, second)

    def organization_of(c: dict[str, Any]) -> str:
        return CONTENT[c["content_id"]][0]

    with psycopg.connect(settings.url, autocommit=True) as conn:
        everything = revenue(conn, settings.schema, RevenueQuery())
        assert reported(everything.totals, lambda r: None) == books(accepted)
        assert everything.rows == everything.totals

        by_month = revenue(
            conn, settings.schema, RevenueQuery(organization=uuid.UUID(ORG_A), group_by="month")
        )
        assert reported(by_month.rows, month) == books(
            accepted, key=lambda c, utc: utc[:7], keep=lambda c, utc: organization_of(c) == ORG_A
        )
        assert reported(by_month.totals, lambda r: None) == books(
            accepted, keep=lambda c, utc: organization_of(c) == ORG_A
        )

        then = revenue(conn, settings.schema, RevenueQuery(as_of=between, group_by="month"))
        assert reported(then.totals, lambda r: None) == books(accepted_first)
        assert reported(then.rows, month) == books(accepted_first, key=lambda c, utc: utc[:7])

        start, end, group_by = data.draw(windows(), label="window")
        window = revenue(
            conn,
            settings.schema,
            RevenueQuery(start=start, end=end, group_by=group_by),  # type: ignore[arg-type]
        )
        groups: dict[str, Callable[[dict[str, Any], str], Any]] = {
            "day": lambda c, utc: utc[:10],
            "content": lambda c, utc: c["content_id"],
            "creator": lambda c, utc: CONTENT[c["content_id"]][1],
            "organization": lambda c, utc: organization_of(c),
        }
        assert reported(
            window.rows, (lambda r: r.period) if group_by == "day" else (lambda r: r.group)
        ) == books(
            accepted,
            key=groups[group_by],
            keep=lambda c, utc: start <= datetime.fromisoformat(utc) < end,
        )
        # and the projected purchases reconcile with this log
        assert reconcile(conn, settings.schema).problem is None
