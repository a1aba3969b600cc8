"""Stripe events to ledger commands: the mapping table, strict metadata, keys by event id."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.commands.fields import MAX_INT
from ledger.commands.parsing import parse_command
from ledger.commands.purchases import CompletePurchase, FailPurchase, RefundPurchase, StartPurchase
from ledger.domain.errors import ValidationFailed
from ledger.domain.provenance import Provenance
from ledger.http.stripe_events import Mapped, Unmapped, map_event, whole_number
from tests import support
from tests.stripe_support import (
    CREATED,
    charge,
    event,
    payment_intent,
    refund_object,
    split_metadata,
)

AT = "2026-01-07T12:00:00.000000+00:00"  # CREATED


def mapped(payload: dict[str, Any]) -> Mapped:
    result = map_event(json.loads(json.dumps(payload)))
    assert isinstance(result, Mapped)
    return result


def only(payload: dict[str, Any]) -> Any:
    result = mapped(payload)
    assert len(result.commands) == 1
    return result.commands[0]


def refusal(payload: dict[str, Any]) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        map_event(payload)
    return caught.value


def test_a_succeeded_payment_intent_completes_the_purchase_with_the_split() -> None:
    metadata = split_metadata(revenue_split_config_id="55555555-5555-4555-8555-555555555555")
    command = only(
        event("evt_1", "payment_intent.succeeded", payment_intent("pi_1", 1999, "usd", metadata))
    )
    assert isinstance(command, CompletePurchase)
    assert command.stripe_payment_intent_id == "pi_1"
    assert (command.customer_id, str(command.content_id)) == ("alice", support.CONTENT)
    assert (command.amount_paid_cents, command.currency) == (1999, "usd")
    assert (command.platform_fee_cents, command.organization_fee_cents) == (199, 800)
    assert command.creator_payout_cents == 1000
    assert str(command.revenue_split_config_id) == metadata["revenue_split_config_id"]
    assert command.idempotency_key == "stripe:evt_1"
    assert (
        command.occurred_at is not None
        and command.occurred_at.isoformat() == "2026-01-07T12:00:00+00:00"
    )


def test_the_webhook_command_is_the_checkout_flows_command() -> None:
    """Same payload as the JSON line the checkout flow would send (in ISO upper case):
    whichever arrives second is a duplicate."""
    command = only(
        event("evt_1", "payment_intent.succeeded", payment_intent("pi_1", currency="usd"))
    )
    line = support.complete("pi_1", currency="USD", fees=(199, 800))
    assert command.fingerprint() == parse_command(json.dumps(line)).fingerprint()


@pytest.mark.parametrize("kind", ["payment_intent.created", "payment_intent.processing"])
def test_a_created_or_processing_intent_starts_the_purchase(kind: str) -> None:
    metadata = {"customer_id": "alice", "content_id": support.CONTENT}
    command = only(event("evt_2", kind, payment_intent("pi_2", 500, "eur", metadata, "processing")))
    assert isinstance(command, StartPurchase)
    assert (command.amount_paid_cents, command.currency, command.customer_id) == (
        500,
        "eur",
        "alice",
    )
    assert command.idempotency_key == "stripe:evt_2"


def test_a_failed_intent_fails_the_purchase_with_or_without_its_metadata() -> None:
    full = only(
        event(
            "evt_3",
            "payment_intent.payment_failed",
            payment_intent("pi_3", status="requires_payment_method"),
        )
    )
    assert isinstance(full, FailPurchase)
    assert (full.customer_id, full.amount_paid_cents, full.currency) == ("alice", 1999, "usd")
    bare = only(
        event(
            "evt_4",
            "payment_intent.payment_failed",
            payment_intent("pi_3", metadata={}, status="requires_payment_method"),
        )
    )
    assert isinstance(bare, FailPurchase)
    assert (bare.customer_id, bare.content_id, bare.amount_paid_cents, bare.currency) == (
        None,
        None,
        None,
        None,
    )
    half = refusal(
        event(
            "evt_5",
            "payment_intent.payment_failed",
            payment_intent("pi_3", metadata={"customer_id": "alice"}),
        )
    )
    assert half.field == "data.object.metadata.content_id"


@pytest.mark.parametrize("kind", ["refund.created", "refund.updated"])
def test_a_succeeded_refund_refunds_by_its_own_id_and_amount(kind: str) -> None:
    command = only(event("evt_6", kind, refund_object("re_1", "pi_1", 700)))
    assert isinstance(command, RefundPurchase)
    assert (command.stripe_payment_intent_id, command.refund_id, command.amount_cents) == (
        "pi_1",
        "re_1",
        700,
    )
    assert command.reason == "requested_by_customer"
    assert command.idempotency_key == "stripe:evt_6"
    expanded = refund_object("re_1", "pi_1", 700, reason=None)
    expanded["payment_intent"] = payment_intent("pi_1")
    command = only(event("evt_7", kind, expanded))
    assert (command.stripe_payment_intent_id, command.reason) == ("pi_1", None)


@pytest.mark.parametrize("status", ["pending", "requires_action", "failed", "canceled"])
def test_a_refund_not_succeeded_records_nothing(status: str) -> None:
    result = map_event(event("evt_8", "refund.updated", refund_object("re_1", "pi_1", 700, status)))
    assert isinstance(result, Unmapped)
    assert result.outcome == "ignored"
    assert status in result.reason


def test_a_refunded_charge_gives_each_succeeded_refund_it_lists() -> None:
    refunds = [
        refund_object("re_2", "pi_1", 300),
        refund_object("re_p", "pi_1", 100, "pending"),
        refund_object("re_1", "pi_1", 700),
    ]
    commands = mapped(event("evt_9", "charge.refunded", charge("pi_1", 1999, refunds))).commands
    assert [(c.refund_id, c.amount_cents) for c in commands] == [("re_2", 300), ("re_1", 700)]
    assert [c.idempotency_key for c in commands] == ["stripe:evt_9:re_2", "stripe:evt_9:re_1"]
    # the same refund from a refund.* event: the same command for the ledger
    alone = only(event("evt_10", "refund.created", refund_object("re_1", "pi_1", 700)))
    assert alone.fingerprint() == commands[1].fingerprint()


def test_a_refunded_charge_without_its_refund_list_records_nothing() -> None:
    result = map_event(event("evt_11", "charge.refunded", charge("pi_1", 1999, None)))
    assert isinstance(result, Unmapped) and result.outcome == "ignored"
    result = map_event(
        event(
            "evt_12",
            "charge.refunded",
            charge("pi_1", 1999, [refund_object("re_1", "pi_1", 1, "pending")]),
        )
    )
    assert isinstance(result, Unmapped) and result.outcome == "ignored"


def test_a_refund_in_a_charge_takes_the_charges_intent_when_it_has_none() -> None:
    refund = refund_object("re_1", "pi_1", 700)
    refund["payment_intent"] = None
    commands = mapped(event("evt_13", "charge.refunded", charge("pi_1", 1999, [refund]))).commands
    assert commands[0].stripe_payment_intent_id == "pi_1"
    alone = refusal(event("evt_14", "refund.created", refund))
    assert alone.field == "data.object.payment_intent"


@pytest.mark.parametrize("kind", ["customer.created", "invoice.paid", "charge.succeeded"])
def test_other_types_are_unmapped(kind: str) -> None:
    result = map_event(event("evt_15", kind, {"id": "x", "object": "whatever"}))
    assert result == Unmapped("evt_15", kind, "unmapped", f"{kind} is not mapped")


@pytest.mark.parametrize(
    ("key", "value", "rule"),
    [
        ("platform_fee_cents", "+199", "digits only"),
        ("platform_fee_cents", " 199", "digits only"),
        ("platform_fee_cents", "199.0", "digits only"),
        ("platform_fee_cents", "1e2", "digits only"),
        ("platform_fee_cents", "0199", "leading zero"),
        ("platform_fee_cents", "-1", "digits only"),
        ("organization_fee_cents", "", "required"),
        ("creator_payout_cents", "٣", "digits only"),
        ("creator_payout_cents", "2147483648", "at most 2147483647"),
        ("customer_id", " alice", "whitespace"),
        ("content_id", "not-a-uuid", "UUID"),
        ("revenue_split_config_id", "nope", "UUID"),
    ],
)
def test_bad_metadata_names_the_field(key: str, value: str, rule: str) -> None:
    metadata = split_metadata()
    metadata[key] = value
    error = refusal(
        event("evt_16", "payment_intent.succeeded", payment_intent("pi_1", metadata=metadata))
    )
    assert error.field == f"data.object.metadata.{key}"
    assert error.message.startswith(f"data.object.metadata.{key}: ")
    assert rule.lower() in error.message.lower()


@pytest.mark.parametrize(
    "key",
    [
        "customer_id",
        "content_id",
        "platform_fee_cents",
        "organization_fee_cents",
        "creator_payout_cents",
    ],
)
def test_missing_metadata_names_the_field(key: str) -> None:
    metadata = split_metadata()
    del metadata[key]
    error = refusal(
        event("evt_17", "payment_intent.succeeded", payment_intent("pi_1", metadata=metadata))
    )
    assert error.field == f"data.object.metadata.{key}"
    assert "required" in error.message


def test_a_split_that_does_not_add_up_names_the_metadata() -> None:
    metadata = split_metadata(fees=(199, 800, 999))
    error = refusal(
        event("evt_18", "payment_intent.succeeded", payment_intent("pi_1", metadata=metadata))
    )
    assert error.field == "data.object.metadata"
    assert "= 1998 must equal the amount 1999" in error.message


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"currency": "xxx"}, "data.object.currency"),
        ({"currency": "usdx"}, "data.object.currency"),
        ({"amount": "1999"}, "data.object.amount"),
        (
            {"amount": 0, "amount_received": 0, "metadata": split_metadata(fees=(0, 0, 0))},
            "data.object.amount",
        ),
        ({"amount_received": 1000}, "data.object.amount_received"),
        ({"id": " pi_1"}, "data.object.id"),
    ],
)
def test_bad_object_fields_are_named(change: dict[str, Any], field: str) -> None:
    intent = {**payment_intent("pi_1"), **change}
    assert refusal(event("evt_19", "payment_intent.succeeded", intent)).field == field


@pytest.mark.parametrize(
    ("envelope", "field"),
    [
        ({"id": ""}, "id"),
        ({"id": "evt_" + "x" * 200}, "id"),
        ({"type": None}, "type"),
        ({"created": "1767787200"}, "created"),
        ({"created": True}, "created"),
        ({"created": 10**12}, "created"),
        ({"created": 100}, "created"),
        ({"data": {}}, "data.object"),
    ],
)
def test_a_bad_envelope_is_named(envelope: dict[str, Any], field: str) -> None:
    payload = {**event("evt_20", "payment_intent.succeeded", payment_intent("pi_1")), **envelope}
    assert refusal(payload).field == field


def test_business_time_is_the_events_created() -> None:
    command = only(
        event("evt_21", "refund.created", refund_object("re_1", "pi_1", 5), CREATED + 3600)
    )
    assert command.occurred_at.isoformat() == "2026-01-07T13:00:00+00:00"
    assert AT.startswith("2026-01-07T12:00:00")


@given(st.integers(0, MAX_INT))
def test_every_whole_number_in_its_one_spelling_parses(number: int) -> None:
    assert whole_number(str(number)) == number


@given(
    st.one_of(
        st.text(max_size=14),
        st.from_regex(r"[ +\-0]?[0-9]{1,11}(\.0|e[0-9]| )?", fullmatch=True),
    )
)
def test_only_the_canonical_spelling_of_a_number_in_range_parses(text: str) -> None:
    canonical = re.fullmatch(r"[0-9]+", text, re.ASCII) is not None and str(int(text)) == text
    valid = canonical and int(text) <= MAX_INT
    try:
        value = whole_number(text)
    except ValueError:
        assert not valid
    else:
        assert valid and str(value) == text


def test_every_command_comes_from_stripe_and_names_its_event() -> None:
    """Provenance is outside the command: the webhook's command is still the checkout
    flow's command, the same fingerprint, and its events name the Stripe event."""
    found = mapped(
        event(
            "evt_prov",
            "payment_intent.succeeded",
            payment_intent("pi_1", metadata=split_metadata()),
        )
    )
    assert [c.provenance for c in found.commands] == [Provenance("stripe", "evt_prov")]
    plain = parse_command(found.commands[0].model_dump_json(exclude_none=True))
    assert plain.fingerprint() == found.commands[0].fingerprint()
