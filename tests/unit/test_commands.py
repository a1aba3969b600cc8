"""Command validation: strict types, bounds, currencies, offsets; fingerprints and identities."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.commands import MAX_INT, parse_command
from ledger.domain.errors import Rejected

CONTENT = "33333333-3333-4333-8333-333333333333"
START = {
    "type": "purchase.start",
    "stripe_payment_intent_id": "pi_1",
    "customer_id": "alice",
    "content_id": CONTENT,
    "amount_paid_cents": 1000,
    "currency": "usd",
}


def rejection(payload: Any) -> tuple[str, str | None]:
    with pytest.raises(Rejected) as caught:
        parse_command(payload if isinstance(payload, str) else json.dumps(payload))
    return caught.value.code, caught.value.field


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount_paid_cents": "1000"}, "amount_paid_cents"),
        ({"amount_paid_cents": 1000.0}, "amount_paid_cents"),
        ({"amount_paid_cents": True}, "amount_paid_cents"),
        ({"amount_paid_cents": None}, "amount_paid_cents"),
        ({"amount_paid_cents": 0}, "amount_paid_cents"),
        ({"amount_paid_cents": MAX_INT + 1}, "amount_paid_cents"),
        ({"currency": "XYZ"}, "currency"),
        ({"currency": "us"}, "currency"),
        ({"content_id": "not-a-uuid"}, "content_id"),
        ({"customer_id": ""}, "customer_id"),
        ({"customer_id": "x" * 256}, "customer_id"),
        ({"customer_id": "a\u0000b"}, "customer_id"),
        ({"occurred_at": "2026-01-01T00:00:00"}, "occurred_at"),
        ({"occurred_at": "yesterday"}, "occurred_at"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"surprise": 1}, "surprise"),
        ({"type": "purchase.explode"}, "type"),
    ],
)
def test_strict_validation_names_the_field(change: dict[str, Any], field: str) -> None:
    assert rejection(START | change) == ("validation_error", field)


@pytest.mark.parametrize("line", ["", "{", "[1]", "null", '"text"', "{'single': 'quotes'}"])
def test_malformed_lines(line: str) -> None:
    assert rejection(line)[0] == "validation_error"


def test_missing_fields_and_rules_across_fields() -> None:
    assert rejection({"type": "purchase.start"})[0] == "validation_error"
    complete = START | {
        "type": "purchase.complete",
        "platform_fee_cents": 1,
        "organization_fee_cents": 1,
        "creator_payout_cents": 1,
    }
    assert rejection(complete) == ("validation_error", "amount_paid_cents")
    play = {
        "type": "playback.progress",
        "user_id": "u",
        "content_id": CONTENT,
        "position_seconds": 11,
        "duration_seconds": 10,
    }
    assert rejection(play) == ("validation_error", "position_seconds")
    assert rejection(play | {"position_seconds": 0, "duration_seconds": 0}) == (
        "validation_error",
        "duration_seconds",
    )
    grant = {
        "type": "access.grant",
        "user_id": "u",
        "content_id": CONTENT,
        "access_type": "purchased",
    }
    assert rejection(grant) == ("validation_error", "access_type")


@given(amount=st.integers(-(2**70), 2**70))
def test_amounts_are_accepted_exactly_within_bounds(amount: int) -> None:
    line = json.dumps(START | {"amount_paid_cents": amount})
    if 1 <= amount <= MAX_INT:
        assert parse_command(line).amount_paid_cents == amount  # type: ignore[attr-defined]
    else:
        assert rejection(line) == ("validation_error", "amount_paid_cents")


@given(code=st.sampled_from(["usd", "USD", "Usd", "eur", "JPY", "chf"]))
def test_currencies_in_any_case_are_stored_lower_case(code: str) -> None:
    assert parse_command(json.dumps(START | {"currency": code})).currency == code.lower()  # type: ignore[attr-defined]


def test_fingerprint_ignores_time_and_key_but_identity_does_not() -> None:
    a = parse_command(json.dumps(START | {"occurred_at": "2026-01-01T00:00:00Z"}))
    b = parse_command(
        json.dumps(
            START
            | {
                "occurred_at": "2026-01-01T01:00:00+01:00",
                "idempotency_key": "k",
                "currency": "USD",
            }
        )
    )
    c = parse_command(json.dumps(START | {"amount_paid_cents": 1001}))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert a.identity("t1") == b.identity("t1") != a.identity("t2")
    assert a.occurred("x") == b.occurred("x") == "2026-01-01T00:00:00.000000+00:00"
