"""Command validation: strict types, bounds, currencies, offsets; fingerprints and identities."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.commands.by_type import COMMAND_TYPES
from ledger.commands.currencies import ACTIVE
from ledger.commands.fields import MAX_INT
from ledger.commands.parsing import parse_command, validate_command
from ledger.domain import clock
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


# --- business times (issue 14) ------------------------------------------------------

USER = {"type": "user.register", "user_id": "a"}
GRANT = {
    "type": "access.grant",
    "user_id": "u",
    "content_id": CONTENT,
    "access_type": "preview",
    "occurred_at": "2026-01-01T00:00:00Z",
}


@pytest.mark.parametrize(
    "moment",
    [
        "0001-01-01T00:00:00+01:00",  # crashed with OverflowError
        "9999-12-31T23:59:59-01:00",
        "1999-12-31T23:59:59.999999Z",
        "2000-01-01T00:30:00+01:00",  # 1999-12-31T23:30Z
        "2100-01-01T00:00:00Z",
        "2099-12-31T23:30:00-01:00",  # 2100-01-01T00:30Z
    ],
)
def test_business_times_outside_the_window_name_the_field(moment: str) -> None:
    assert rejection(USER | {"occurred_at": moment}) == ("validation_error", "occurred_at")
    assert rejection(GRANT | {"expires_at": moment}) == ("validation_error", "expires_at")


@pytest.mark.parametrize(
    "moment", ["2000-01-01T00:00:00Z", "2099-12-31T23:59:59.999999Z", "2000-01-01T01:00:00+01:00"]
)
def test_the_window_s_edges_are_inside(moment: str) -> None:
    assert parse_command(json.dumps(USER | {"occurred_at": moment})).occurred("") == (
        clock.canonical(datetime.fromisoformat(moment))
    )


@given(
    moment=st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
    offset=st.integers(-23 * 60 - 59, 23 * 60 + 59),
)
def test_any_time_is_accepted_exactly_inside_the_window(moment: datetime, offset: int) -> None:
    local = moment.replace(tzinfo=timezone(timedelta(minutes=offset)))
    line = json.dumps(USER | {"occurred_at": local.isoformat()})
    inside = datetime(2000, 1, 1, tzinfo=UTC) <= local < datetime(2100, 1, 1, tzinfo=UTC)
    if inside:
        assert parse_command(line).occurred_at == local
    else:
        assert rejection(line) == ("validation_error", "occurred_at")


# --- strings (issue 14) ---------------------------------------------------------------


@pytest.mark.parametrize("char", ["\n", "\r", "\t", "\x1b", "\x00", "\x07", "\x7f", "\x85", "\x9f"])
@pytest.mark.parametrize(
    ("base", "field"),
    [
        (START, "customer_id"),
        (START, "stripe_payment_intent_id"),
        (START, "idempotency_key"),
        ({"type": "organization.register", "organization_id": CONTENT, "name": "N"}, "name"),
        (
            {
                "type": "content.publish",
                "content_id": CONTENT,
                "organization_id": CONTENT,
                "creator_id": "c",
                "title": "T",
            },
            "title",
        ),
        (
            {
                "type": "purchase.refund",
                "stripe_payment_intent_id": "pi",
                "refund_id": "re",
                "amount_cents": 1,
                "reason": "r",
            },
            "reason",
        ),
    ],
)
def test_control_characters_are_refused_in_every_text(
    base: dict[str, Any], field: str, char: str
) -> None:
    assert rejection(base | {field: f"ok{char}ok"}) == ("validation_error", field)


@pytest.mark.parametrize("value", [" ", "   ", " alice", "alice ", "\u00a0alice", "alice\u3000"])
@pytest.mark.parametrize("field", ["customer_id", "stripe_payment_intent_id", "idempotency_key"])
def test_ids_are_not_blank_nor_padded(field: str, value: str) -> None:
    assert rejection(START | {field: value}) == ("validation_error", field)


def test_inner_spaces_and_any_script_are_fine() -> None:
    command = parse_command(json.dumps(START | {"customer_id": "Zoë van Dijk 🎬"}))
    assert command.customer_id == "Zoë van Dijk 🎬"  # type: ignore[attr-defined]


# --- currencies (issue 14) --------------------------------------------------------------

NOT_MONEY = ["XXX", "XTS", "XAU", "XAG", "XPT", "XPD", "BOV", "CLF", "COU", "MXV", "UYI", "UYW"]
NOT_MONEY += ["CHE", "CHW", "USN", "XBA", "XBB", "XBC", "XBD", "XDR", "XSU", "XUA"]
WITHDRAWN = ["ANG", "CUC", "SLL", "ZWL", "HRK", "VEF"]


@pytest.mark.parametrize("code", NOT_MONEY + WITHDRAWN)
def test_only_active_currencies_are_accepted(code: str) -> None:
    assert rejection(START | {"currency": code}) == ("validation_error", "currency")
    assert rejection(START | {"currency": code.lower()}) == ("validation_error", "currency")


def test_the_active_list_is_list_one_without_funds_metals_and_units() -> None:
    assert len(ACTIVE) == 156
    assert not ACTIVE & set(NOT_MONEY + WITHDRAWN)
    for code in ("USD", "EUR", "JPY", "XCG", "SLE", "ZWG", "VED", "XAF", "XOF", "XPF", "XCD"):
        assert parse_command(json.dumps(START | {"currency": code})).currency == code.lower()  # type: ignore[attr-defined]


# --- JSON lines (issue 14) --------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        '{"type": "user.register", "user_id": "a", "user_id": "b"}',
        '{"type": "user.register", "type": "user.register", "user_id": "a"}',
        '{"type": "user.register", "user_id": "a", "x": {"k": 1, "k": 2}}',
        '{"type": "user.register", "user_id": "a", "x": [{"k": 1}, {"k": 1, "k": 1}]}',
    ],
)
def test_a_key_twice_in_one_object_is_refused(line: str) -> None:
    code, field = rejection(line)
    assert code == "validation_error"
    assert field in ("user_id", "type", None)
    with pytest.raises(Rejected, match="appears twice"):
        parse_command(line)


def test_deep_nesting_is_refused_cleanly() -> None:
    for depth in (100, 1000, 5000):
        line = '{"type": "user.register", "user_id": "a", "x": ' + "[" * depth + "]" * depth + "}"
        assert rejection(line)[0] == "validation_error"


# --- replay safety (issue 13.6) -----------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        {"type": "access.grant", "user_id": "u", "content_id": CONTENT, "access_type": "preview"},
        {"type": "access.revoke", "user_id": "u", "content_id": CONTENT},
        {
            "type": "playback.progress",
            "user_id": "u",
            "content_id": CONTENT,
            "position_seconds": 1,
            "duration_seconds": 2,
        },
    ],
)
def test_commands_without_a_natural_key_need_a_moment_or_a_key(command: dict[str, Any]) -> None:
    assert rejection(command) == ("validation_error", "occurred_at")
    parse_command(json.dumps(command | {"occurred_at": "2026-01-01T00:00:00Z"}))
    parse_command(json.dumps(command | {"idempotency_key": "k"}))
    with pytest.raises(Rejected) as caught:
        validate_command(COMMAND_TYPES[command["type"]].model_validate_json(json.dumps(command)))
    assert (caught.value.code, caught.value.field) == ("validation_error", "occurred_at")


# --- canonical fingerprints (issue 14) ----------------------------------------------------

COMPLETE = START | {
    "type": "purchase.complete",
    "platform_fee_cents": 100,
    "organization_fee_cents": 400,
    "creator_payout_cents": 500,
}
ORG = "11111111-1111-4111-8111-111111111111"


def test_a_derived_value_given_or_not_is_the_same_command() -> None:
    bare = parse_command(json.dumps(COMPLETE))
    given = parse_command(json.dumps(COMPLETE | {"organization_id": ORG}))
    other = parse_command(json.dumps(COMPLETE | {"organization_id": CONTENT}))
    derived = {"organization_id": ORG}
    assert bare.fingerprints(derived).canonical == given.fingerprints(derived).canonical
    # the canonical form of a command without the field is what v1 hashed: unchanged
    assert bare.fingerprints(derived).canonical == bare.fingerprint()
    # a fingerprint v1 recorded for the command with the field still matches both shapes
    assert bare.fingerprints(derived).matches(given.fingerprint())
    assert given.fingerprints(derived).matches(given.fingerprint())
    # a different organization is a different command
    assert not other.fingerprints(derived).matches(given.fingerprint())
    assert not other.fingerprints(derived).matches(bare.fingerprint())


@st.composite
def object_texts(draw: st.DrawFn, depth: int = 0) -> tuple[str, bool]:
    """A JSON object written by hand (keys may repeat, odd whitespace before colons,
    strings that look like keys), and whether any object in it repeats a key."""
    keys = draw(st.lists(st.sampled_from(["k", "v", 'a":', 'b"', "é"]), max_size=4))
    repeated = len(set(keys)) < len(keys)
    parts = []
    for key in keys:
        space = draw(st.sampled_from(["", " ", "\t", "\r\n "]))
        if depth < 3 and draw(st.booleans()):
            inner, inner_repeats = draw(object_texts(depth + 1))
            value = draw(st.sampled_from(["{}", "[{}]", "[{}, 1]"])).replace("{}", inner)
            repeated = repeated or inner_repeats
        else:
            value = json.dumps(draw(st.sampled_from(['"x": 1', 1, None, '":'])))
        parts.append(f"{json.dumps(key)}{space}:{space}{value}")
    return "{" + ", ".join(parts) + "}", repeated


@given(extra=object_texts())
def test_a_repeated_key_is_found_at_any_depth_and_only_then(extra: tuple[str, bool]) -> None:
    text, repeated = extra
    line = '{"type": "user.register", "user_id": "a", "x": ' + text + "}"
    with pytest.raises(Rejected) as caught:
        parse_command(line)  # "x" is an unknown field anyway
    assert ("appears twice" in caught.value.message) == repeated, caught.value.message
