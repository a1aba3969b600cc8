"""The checkout flow's commands, as strict pydantic models.

Strict means: no coercion ("1000" is not 1000, 1000.0 is not 1000, true is not 1),
no unknown fields, bounds from the contract, ISO 4217 currencies, timestamps with an
offset. ``parse_command`` turns one JSON Lines line into a command or a
``ValidationFailed`` naming the field and the rule.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from ledger.currencies import ISO_4217
from ledger.domain import clock
from ledger.domain.errors import ValidationFailed

MAX_INT = 2_147_483_647


def _storable(text: str) -> str:
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return text


def _currency(code: str) -> str:
    if code.upper() not in ISO_4217:
        raise ValueError(f"{code!r} is not an ISO 4217 currency code")
    return code.lower()


Text255 = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_storable)]
Text500 = Annotated[str, Field(min_length=1, max_length=500), AfterValidator(_storable)]
Text1000 = Annotated[str, Field(min_length=1, max_length=1000), AfterValidator(_storable)]
Amount = Annotated[int, Field(ge=1, le=MAX_INT)]
Fee = Annotated[int, Field(ge=0, le=MAX_INT)]
Seconds = Annotated[int, Field(ge=0, le=MAX_INT)]
Duration = Annotated[int, Field(ge=1, le=MAX_INT)]
Currency = Annotated[str, Field(min_length=3, max_length=3), AfterValidator(_currency)]


class Command(BaseModel):
    """Fields every command may carry."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    occurred_at: AwareDatetime | None = None
    idempotency_key: Text255 | None = None

    def fingerprint(self) -> str:
        """Identity of the payload: equal for a redelivery, different for any other
        command. ``occurred_at`` and ``idempotency_key`` are left out: a redelivered
        command whose time was defaulted to "now" is still the same command."""
        payload = {
            name: clock.canonical(value) if isinstance(value, datetime) else value
            for name, value in self.model_dump(exclude={"occurred_at", "idempotency_key"}).items()
            if value is not None
        }
        digest = hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS))
        return digest.hexdigest()

    def identity(self, occurred_at: str) -> str:
        """The command's payload at its moment: what a redelivery repeats exactly.
        Commands without a natural key (grant, revoke, playback) are deduplicated
        by it."""
        return hashlib.sha256(f"{self.fingerprint()}@{occurred_at}".encode()).hexdigest()

    def occurred(self, default: str) -> str:
        return clock.canonical(self.occurred_at) if self.occurred_at is not None else default


class RegisterOrganization(Command):
    type: Literal["organization.register"] = "organization.register"
    organization_id: UUID
    name: Text255


class RegisterUser(Command):
    type: Literal["user.register"] = "user.register"
    user_id: Text255


class DeleteUser(Command):
    type: Literal["user.delete"] = "user.delete"
    user_id: Text255


class PublishContent(Command):
    type: Literal["content.publish"] = "content.publish"
    content_id: UUID
    organization_id: UUID
    creator_id: Text255
    title: Text500


class DeleteContent(Command):
    type: Literal["content.delete"] = "content.delete"
    content_id: UUID


class StartPurchase(Command):
    type: Literal["purchase.start"] = "purchase.start"
    stripe_payment_intent_id: Text255
    customer_id: Text255
    content_id: UUID
    amount_paid_cents: Amount
    currency: Currency


class CompletePurchase(Command):
    type: Literal["purchase.complete"] = "purchase.complete"
    stripe_payment_intent_id: Text255
    customer_id: Text255
    content_id: UUID
    amount_paid_cents: Amount
    currency: Currency
    platform_fee_cents: Fee
    organization_fee_cents: Fee
    creator_payout_cents: Fee
    revenue_split_config_id: UUID | None = None
    organization_id: UUID | None = None

    @model_validator(mode="after")
    def _split_adds_up(self) -> CompletePurchase:
        total = self.platform_fee_cents + self.organization_fee_cents + self.creator_payout_cents
        if total != self.amount_paid_cents:
            raise ValueError(
                "platform_fee_cents + organization_fee_cents + creator_payout_cents "
                f"= {total} must equal amount_paid_cents = {self.amount_paid_cents}"
            )
        return self


class FailPurchase(Command):
    type: Literal["purchase.fail"] = "purchase.fail"
    stripe_payment_intent_id: Text255
    customer_id: Text255 | None = None
    content_id: UUID | None = None
    amount_paid_cents: Amount | None = None
    currency: Currency | None = None


class RefundPurchase(Command):
    type: Literal["purchase.refund"] = "purchase.refund"
    stripe_payment_intent_id: Text255
    refund_id: Text255
    amount_cents: Amount
    reason: Text1000 | None = None


class GrantAccess(Command):
    type: Literal["access.grant"] = "access.grant"
    user_id: Text255
    content_id: UUID
    access_type: Literal["subscription", "complimentary", "preview"]
    expires_at: AwareDatetime | None = None


class RevokeAccess(Command):
    type: Literal["access.revoke"] = "access.revoke"
    user_id: Text255
    content_id: UUID
    reason: Text1000 | None = None


class RecordPlayback(Command):
    type: Literal["playback.progress"] = "playback.progress"
    user_id: Text255
    content_id: UUID
    position_seconds: Seconds
    duration_seconds: Duration

    @model_validator(mode="after")
    def _position_within_video(self) -> RecordPlayback:
        if self.position_seconds > self.duration_seconds:
            raise ValueError(
                f"position_seconds {self.position_seconds} lies beyond "
                f"duration_seconds {self.duration_seconds}"
            )
        return self


AnyCommand = Annotated[
    RegisterOrganization
    | RegisterUser
    | DeleteUser
    | PublishContent
    | DeleteContent
    | StartPurchase
    | CompletePurchase
    | FailPurchase
    | RefundPurchase
    | GrantAccess
    | RevokeAccess
    | RecordPlayback,
    Field(discriminator="type"),
]

COMMAND_TYPES: dict[str, type[Command]] = {
    "organization.register": RegisterOrganization,
    "user.register": RegisterUser,
    "user.delete": DeleteUser,
    "content.publish": PublishContent,
    "content.delete": DeleteContent,
    "purchase.start": StartPurchase,
    "purchase.complete": CompletePurchase,
    "purchase.fail": FailPurchase,
    "purchase.refund": RefundPurchase,
    "access.grant": GrantAccess,
    "access.revoke": RevokeAccess,
    "playback.progress": RecordPlayback,
}

# the field a model-level rule is about, for the error's "field"
_MODEL_RULE_FIELDS: dict[str, str] = {
    "purchase.complete": "amount_paid_cents",
    "playback.progress": "position_seconds",
}

_ANY_COMMAND: TypeAdapter[Any] = TypeAdapter(AnyCommand)


def parse_command(line: str | bytes) -> Command:
    """One JSON object (a JSON Lines line) to a command, or ``ValidationFailed``."""
    try:
        raw = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        raise ValidationFailed(f"malformed JSON: {error}") from None
    if not isinstance(raw, dict):
        raise ValidationFailed("a command must be a JSON object")
    command_type = raw.get("type")
    if not isinstance(command_type, str) or command_type not in COMMAND_TYPES:
        allowed = ", ".join(COMMAND_TYPES)
        raise ValidationFailed(f"type must be one of: {allowed}", "type")
    model = COMMAND_TYPES[command_type]
    try:
        command = model.model_validate_json(line)
    except ValidationError as error:
        raise _rejection(error, command_type) from None
    _check_times(command)
    return command


def validate_command(command: Command) -> Command:
    """Re-checks a command built in Python (the typed API) by the same rules."""
    try:
        checked = type(command).model_validate(command.model_dump())
    except ValidationError as error:
        raise _rejection(error, getattr(command, "type", "")) from None
    _check_times(checked)
    return checked


def _check_times(command: Command) -> None:
    if isinstance(command, GrantAccess) and command.expires_at is not None:
        occurred = command.occurred_at or datetime.now(command.expires_at.tzinfo)
        if command.expires_at <= occurred:
            raise ValidationFailed("expires_at must lie after occurred_at", "expires_at")


def _rejection(error: ValidationError, command_type: str) -> ValidationFailed:
    first = error.errors(include_url=False)[0]
    location = [str(part) for part in first["loc"]]
    field = location[0] if location else _MODEL_RULE_FIELDS.get(command_type)
    message = first["msg"]
    if message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    label = ".".join(location) if location else field
    return ValidationFailed(f"{label}: {message}" if label else message, field)
