"""Stripe events to ledger commands: a pure mapping, no I/O.

Each command is built as the JSON object a checkout flow would send and parsed by
``parse_command``, so it passes exactly the rules of a JSON line; an error names the
event's own field (``data.object.metadata.platform_fee_cents``), not the command's.
Every command carries ``stripe:<event id>`` as its idempotency key: a redelivered event
is a duplicate in the log, for ever, like any other key (docs/stripe.md), and comes from
source ``stripe`` with the event id as its correlation id (docs/events.md, "Provenance").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from ledger.commands.base import Command
from ledger.commands.fields import MAX_INT
from ledger.commands.parsing import parse_command
from ledger.domain import clock
from ledger.domain.errors import ValidationFailed

KEY_PREFIX = "stripe:"
MAX_EVENT_ID = 200  # with the prefix and a refund id, the key stays within 255 characters

_WHOLE = re.compile(r"0|[1-9][0-9]*", re.ASCII)

OBJECT = "data.object"
METADATA = "data.object.metadata"


@dataclass(frozen=True)
class Mapped:
    """The commands an event stands for (several only for a ``charge.refunded`` that
    lists several refunds), each with its idempotency key."""

    event_id: str
    event_type: str
    commands: tuple[Command, ...]


@dataclass(frozen=True)
class Unmapped:
    """Answered 200 and counted: ``unmapped`` for a type the ledger does not map,
    ``ignored`` for a mapped type in a state that records nothing (a pending refund)."""

    event_id: str
    event_type: str
    outcome: Literal["unmapped", "ignored"]
    reason: str


def whole_number(text: str) -> int:
    """A metadata value as a count of minor units: ASCII digits only, no sign, no
    spaces, no decimal point or exponent, and no leading zero (``"0"`` itself aside):
    one spelling per number, so ``"010"`` is not silently 10 (nor 8)."""
    if not _WHOLE.fullmatch(text):
        raise ValueError(
            "must be a whole number of minor units written in digits only "
            "(no sign, spaces, decimal point, exponent or leading zero)"
        )
    if len(text) > len(str(MAX_INT)) or int(text) > MAX_INT:
        raise ValueError(f"must be at most {MAX_INT}")
    return int(text)


def map_event(event: Any) -> Mapped | Unmapped:
    """The event's commands, ``Unmapped``, or ``ValidationFailed`` naming the field."""
    if not isinstance(event, dict):
        raise ValidationFailed("a Stripe event must be a JSON object")
    event_id = _event_id(event)
    event_type = _text(event, "type", "type")
    handler = _HANDLERS.get(event_type)
    if handler is None:
        return Unmapped(event_id, event_type, "unmapped", f"{event_type} is not mapped")
    created = _created(event)
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise ValidationFailed(f"{OBJECT}: required, an object", OBJECT)
    found = handler(_Event(event_id, event_type, created, obj))
    if isinstance(found, Unmapped):
        return found
    # provenance: every event the commands record names the Stripe event (docs/events.md)
    stamped = tuple(command.stamped("stripe", event_id) for command in found.commands)
    return replace(found, commands=stamped)


# --- the event's envelope ---------------------------------------------------------------


@dataclass(frozen=True)
class _Event:
    id: str
    type: str
    created: str
    object: dict[str, Any]

    def key(self, suffix: str | None = None) -> str:
        return f"{KEY_PREFIX}{self.id}" if suffix is None else f"{KEY_PREFIX}{self.id}:{suffix}"


def _event_id(event: dict[str, Any]) -> str:
    event_id = _text(event, "id", "id")
    if len(event_id) > MAX_EVENT_ID or event_id != event_id.strip():
        raise ValidationFailed(
            f"id: a Stripe event id of at most {MAX_EVENT_ID} characters, no surrounding "
            "whitespace",
            "id",
        )
    return event_id


def _created(event: dict[str, Any]) -> str:
    """Business time: the moment Stripe created the event (Unix seconds)."""
    created = event.get("created")
    if not isinstance(created, int) or isinstance(created, bool):
        raise ValidationFailed("created: required, a whole number of Unix seconds", "created")
    try:
        moment = datetime.fromtimestamp(created, UTC)
    except (OverflowError, OSError, ValueError):
        moment = None
    if moment is None or not clock.within_window(moment):
        raise ValidationFailed(f"created: {created} lies outside the business window", "created")
    return clock.canonical(moment)


def _text(obj: Mapping[str, Any], key: str, path: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise ValidationFailed(f"{path}: required, a non-empty string", path)
    return value


def _integer(obj: Mapping[str, Any], key: str, path: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValidationFailed(f"{path}: required, a whole number of minor units", path)
    return value


def _metadata(obj: dict[str, Any]) -> dict[str, Any]:
    metadata = obj.get("metadata")
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise ValidationFailed(f"{METADATA}: must be an object", METADATA)
    return metadata


def _meta_text(metadata: Mapping[str, Any], key: str) -> str:
    return _text(metadata, key, f"{METADATA}.{key}")


def _meta_cents(metadata: Mapping[str, Any], key: str) -> int:
    path = f"{METADATA}.{key}"
    text = _text(metadata, key, path)
    try:
        return whole_number(text)
    except ValueError as error:
        raise ValidationFailed(f"{path}: {text!r} {error}", path) from None


def _command(payload: dict[str, Any], sources: Mapping[str, str]) -> Command:
    """Parsed as a JSON line; a rejection is renamed to the event's field it came from."""
    try:
        return parse_command(orjson.dumps(payload))
    except ValidationFailed as error:
        field = sources.get(error.field or "")
        if field is None:
            raise
        message = error.message
        if error.field and message.startswith(f"{error.field}"):
            message = message.removeprefix(error.field).lstrip(".: ")
            message = f"{field}: {message}"
        raise ValidationFailed(message, field) from None


# --- payment intents ----------------------------------------------------------------------

_INTENT_SOURCES = {
    "stripe_payment_intent_id": f"{OBJECT}.id",
    "customer_id": f"{METADATA}.customer_id",
    "content_id": f"{METADATA}.content_id",
    "amount_paid_cents": f"{OBJECT}.amount",
    "currency": f"{OBJECT}.currency",
    "platform_fee_cents": f"{METADATA}.platform_fee_cents",
    "organization_fee_cents": f"{METADATA}.organization_fee_cents",
    "creator_payout_cents": f"{METADATA}.creator_payout_cents",
    "revenue_split_config_id": f"{METADATA}.revenue_split_config_id",
    "idempotency_key": "id",
    "occurred_at": "created",
}


def _intent(e: _Event, command_type: str) -> dict[str, Any]:
    """The purchase fields every payment intent event gives: the amount (not
    ``amount_received``: the split in the metadata was made for it) and the currency,
    which the ledger accepts in Stripe's lower case and stores as it does every code."""
    obj = e.object
    return {
        "type": command_type,
        "stripe_payment_intent_id": _text(obj, "id", f"{OBJECT}.id"),
        "amount_paid_cents": _integer(obj, "amount", f"{OBJECT}.amount"),
        "currency": _text(obj, "currency", f"{OBJECT}.currency"),
        "occurred_at": e.created,
        "idempotency_key": e.key(),
    }


def _started(e: _Event) -> Mapped:
    metadata = _metadata(e.object)
    payload = _intent(e, "purchase.start")
    payload["customer_id"] = _meta_text(metadata, "customer_id")
    payload["content_id"] = _meta_text(metadata, "content_id")
    return Mapped(e.id, e.type, (_command(payload, _INTENT_SOURCES),))


def _succeeded(e: _Event) -> Mapped:
    metadata = _metadata(e.object)
    payload = _intent(e, "purchase.complete")
    received = e.object.get("amount_received")
    if received is not None and received != payload["amount_paid_cents"]:
        path = f"{OBJECT}.amount_received"
        raise ValidationFailed(
            f"{path}: {received!r} differs from amount {payload['amount_paid_cents']}: a "
            "partial capture is not recorded (the split in the metadata is for the amount)",
            path,
        )
    payload["customer_id"] = _meta_text(metadata, "customer_id")
    payload["content_id"] = _meta_text(metadata, "content_id")
    split = ("platform_fee_cents", "organization_fee_cents", "creator_payout_cents")
    for key in split:
        payload[key] = _meta_cents(metadata, key)
    total = sum(payload[key] for key in split)
    if total != payload["amount_paid_cents"]:
        raise ValidationFailed(
            f"{METADATA}: {' + '.join(split)} = {total} must equal the amount "
            f"{payload['amount_paid_cents']}",
            METADATA,
        )
    if "revenue_split_config_id" in metadata:
        payload["revenue_split_config_id"] = _meta_text(metadata, "revenue_split_config_id")
    return Mapped(e.id, e.type, (_command(payload, _INTENT_SOURCES),))


def _failed(e: _Event) -> Mapped:
    """With the customer and content in the metadata the failure is recorded even for a
    purchase never started; without both, only for one the ledger knows."""
    metadata = _metadata(e.object)
    payload = _intent(e, "purchase.fail")
    given = [key for key in ("customer_id", "content_id") if key in metadata]
    if given:
        payload["customer_id"] = _meta_text(metadata, "customer_id")
        payload["content_id"] = _meta_text(metadata, "content_id")
    else:
        del payload["amount_paid_cents"], payload["currency"]
    return Mapped(e.id, e.type, (_command(payload, _INTENT_SOURCES),))


# --- refunds --------------------------------------------------------------------------------


def _refund_command(e: _Event, refund: dict[str, Any], path: str, key: str) -> Command:
    """A refund by its own id and its own amount (never the charge's cumulative
    ``amount_refunded``); the purchase's split is the ledger's, so no metadata."""
    intent = refund.get("payment_intent")
    if isinstance(intent, dict):  # expanded
        intent = intent.get("id")
    if not isinstance(intent, str) or not intent:
        intent = e.object.get("payment_intent") if path != OBJECT else None
    if not isinstance(intent, str) or not intent:
        raise ValidationFailed(
            f"{path}.payment_intent: required: the ledger records purchases by payment intent",
            f"{path}.payment_intent",
        )
    payload: dict[str, Any] = {
        "type": "purchase.refund",
        "stripe_payment_intent_id": intent,
        "refund_id": _text(refund, "id", f"{path}.id"),
        "amount_cents": _integer(refund, "amount", f"{path}.amount"),
        "occurred_at": e.created,
        "idempotency_key": key,
    }
    reason = refund.get("reason")
    if isinstance(reason, str) and reason:
        payload["reason"] = reason
    sources = {
        "stripe_payment_intent_id": f"{path}.payment_intent",
        "refund_id": f"{path}.id",
        "amount_cents": f"{path}.amount",
        "reason": f"{path}.reason",
        "idempotency_key": "id",
        "occurred_at": "created",
    }
    return _command(payload, sources)


def _refund(e: _Event) -> Mapped | Unmapped:
    status = e.object.get("status")
    if status != "succeeded":
        return Unmapped(
            e.id, e.type, "ignored", f"refund {e.object.get('id')} is {status}, not succeeded"
        )
    return Mapped(e.id, e.type, (_refund_command(e, e.object, OBJECT, e.key()),))


def _charge_refunded(e: _Event) -> Mapped | Unmapped:
    """Every succeeded refund the charge lists, each keyed by event and refund: the
    ledger's refund ids make the ones already recorded (by ``refund.*`` events or an
    earlier ``charge.refunded``) duplicates. Since API version 2022-11-15 a charge no
    longer lists its refunds: then the ``refund.*`` events record them."""
    refunds = e.object.get("refunds")
    data = refunds.get("data") if isinstance(refunds, dict) else None
    if not isinstance(data, list):
        return Unmapped(
            e.id, e.type, "ignored", "the charge does not list its refunds (refund.* record them)"
        )
    commands = []
    for index, refund in enumerate(data):
        path = f"{OBJECT}.refunds.data.{index}"
        if not isinstance(refund, dict):
            raise ValidationFailed(f"{path}: must be a refund object", path)
        if refund.get("status") == "succeeded":
            refund_id = _text(refund, "id", f"{path}.id")
            commands.append(_refund_command(e, refund, path, e.key(refund_id)))
    if not commands:
        return Unmapped(e.id, e.type, "ignored", "the charge lists no succeeded refund")
    return Mapped(e.id, e.type, tuple(commands))


_HANDLERS = {
    "payment_intent.created": _started,
    "payment_intent.processing": _started,
    "payment_intent.succeeded": _succeeded,
    "payment_intent.payment_failed": _failed,
    "charge.refunded": _charge_refunded,
    "refund.created": _refund,
    "refund.updated": _refund,
}

MAPPED_TYPES = tuple(_HANDLERS)
