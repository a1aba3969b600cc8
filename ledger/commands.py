"""The checkout flow's commands, as strict pydantic models.

Strict means: no coercion ("1000" is not 1000, 1000.0 is not 1000, true is not 1),
no unknown fields, no key twice in one object, bounds from the contract, active ISO
4217 currencies, timestamps with an offset inside the business window, no control
characters in text, ids without surrounding whitespace. ``parse_command`` turns one
JSON Lines line into a command or a ``ValidationFailed`` naming the field and the rule.
"""

from __future__ import annotations

import functools
import hashlib
import json
import operator
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, Self
from uuid import UUID

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from ledger.currencies import ACTIVE
from ledger.domain import clock
from ledger.domain.errors import ValidationFailed
from ledger.domain.provenance import DEFAULT, Provenance

MAX_INT = 2_147_483_647


# C0 controls (newline, ESC, NUL...), DEL and C1 controls; lone surrogates cannot be stored
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _storable(text: str) -> str:
    control = _CONTROL.search(text)
    if control is not None:
        raise ValueError(
            f"must not contain control characters (U+{ord(control.group()):04X} at "
            f"character {control.start() + 1})"
        )
    if _SURROGATE.search(text) is not None:
        raise ValueError("must be valid Unicode (no lone surrogates)")
    return text


def _identifier(text: str) -> str:
    """Ids are compared exactly: " alice" would be another user than "alice", and an id
    holding an invisible or bidirectional format character (Unicode Cf: U+200B, U+202E)
    would look like another, or like nothing at all."""
    if not text.strip():
        raise ValueError("must not be blank")
    if text != text.strip():
        raise ValueError("must not begin or end with whitespace")
    if not text.isprintable():  # C: the rare id that is not is looked at closely
        for at, char in enumerate(text, start=1):
            if unicodedata.category(char) == "Cf":
                raise ValueError(
                    f"must not contain format characters (U+{ord(char):04X} at character {at})"
                )
    return text


def check_id(text: str) -> str:
    """An id (a user's, a payment intent's...) by the rules of a command's id field:
    1 to 255 characters, no control or format character, not blank, no surrounding
    whitespace; ``ValueError`` says which rule it breaks."""
    if not 1 <= len(text) <= 255:
        raise ValueError("must be 1 to 255 characters")
    return _identifier(_storable(text))


def _currency(code: str) -> str:
    if code.upper() not in ACTIVE:
        raise ValueError(
            f"{code!r} is not an active ISO 4217 currency (funds, metals, XTS and XXX are not)"
        )
    return code.lower()


def _business_time(moment: datetime) -> datetime:
    if not clock.within_window(moment):
        raise ValueError(f"{moment.isoformat()} lies outside the business window, {clock.WINDOW}")
    return moment


Id = Annotated[
    str,
    Field(min_length=1, max_length=255),
    AfterValidator(_storable),
    AfterValidator(_identifier),
]
Text255 = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_storable)]
Text500 = Annotated[str, Field(min_length=1, max_length=500), AfterValidator(_storable)]
Text1000 = Annotated[str, Field(min_length=1, max_length=1000), AfterValidator(_storable)]
Amount = Annotated[int, Field(ge=1, le=MAX_INT)]
Fee = Annotated[int, Field(ge=0, le=MAX_INT)]
Seconds = Annotated[int, Field(ge=0, le=MAX_INT)]
Duration = Annotated[int, Field(ge=1, le=MAX_INT)]
Currency = Annotated[str, Field(min_length=3, max_length=3), AfterValidator(_currency)]
BusinessTime = Annotated[AwareDatetime, AfterValidator(_business_time)]


@dataclass(frozen=True)
class Fingerprint:
    """A command's payload identity, and the forms a redelivery may match.

    ``canonical`` (recorded in the events) leaves out every optional field whose value
    the ledger derives anyway (``organization_id`` equal to the content's
    organization...), so a command and its redelivery with that field added are the
    same command. ``forms`` also holds the payload as given and with the derived values
    filled in: a fingerprint recorded by an earlier version, which hashed the payload as
    given, still recognises its redeliveries in either shape.
    """

    canonical: str
    forms: frozenset[str]

    def matches(self, recorded: str) -> bool:
        return recorded in self.forms


def _digest(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return clock.canonical(value)
    if isinstance(value, UUID):
        return str(value)  # what orjson writes for a UUID: the digest is unchanged
    return value


class Command(BaseModel):
    """Fields every command may carry."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    occurred_at: BusinessTime | None = None
    idempotency_key: Id | None = None
    # where the command came from: not a field, so neither its JSON nor its fingerprint
    _provenance: Provenance = PrivateAttr(default=DEFAULT)

    @property
    def provenance(self) -> Provenance:
        return self._provenance

    def stamped(self, source: str, correlation_id: str | None) -> Self:
        """A copy of the command that came from ``source`` (``cli``, ``api``, ``http``,
        ``stripe``), answering ``correlation_id``; ``ValidationFailed`` names a bad one.
        Every event the command records carries both."""
        copy = self.model_copy()
        copy._provenance = Provenance(source, correlation_id)
        return copy

    def payload(self) -> dict[str, Any]:
        """The fields given, as plain JSON values, without ``occurred_at`` and
        ``idempotency_key``: a redelivered command whose time was defaulted to "now" is
        still the same command."""
        return {
            name: _plain(value)
            for name, value in self.model_dump(exclude={"occurred_at", "idempotency_key"}).items()
            if value is not None
        }

    def fingerprint(self) -> str:
        """Identity of the payload as given: equal for a redelivery, different for any
        other command (for commands with no derived field, the canonical one)."""
        return _digest(self.payload())

    def fingerprints(self, derived: Mapping[str, Any] | None = None) -> Fingerprint:
        """The canonical fingerprint given the values the ledger derives for this
        command's optional fields (``derived``, plain JSON values), and its forms."""
        given = self.payload()
        if not derived:
            digest = _digest(given)
            return Fingerprint(digest, frozenset((digest,)))
        dropped = {k: v for k, v in given.items() if not (k in derived and derived[k] == v)}
        filled = {**derived, **given}
        canonical = _digest(dropped)
        return Fingerprint(canonical, frozenset((canonical, _digest(filled), _digest(given))))

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
    user_id: Id


class DeleteUser(Command):
    type: Literal["user.delete"] = "user.delete"
    user_id: Id


class PublishContent(Command):
    type: Literal["content.publish"] = "content.publish"
    content_id: UUID
    organization_id: UUID
    creator_id: Id
    title: Text500


class DeleteContent(Command):
    type: Literal["content.delete"] = "content.delete"
    content_id: UUID


class StartPurchase(Command):
    type: Literal["purchase.start"] = "purchase.start"
    stripe_payment_intent_id: Id
    customer_id: Id
    content_id: UUID
    amount_paid_cents: Amount
    currency: Currency


class CompletePurchase(Command):
    type: Literal["purchase.complete"] = "purchase.complete"
    stripe_payment_intent_id: Id
    customer_id: Id
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
    stripe_payment_intent_id: Id
    customer_id: Id | None = None
    content_id: UUID | None = None
    amount_paid_cents: Amount | None = None
    currency: Currency | None = None


class RefundPurchase(Command):
    type: Literal["purchase.refund"] = "purchase.refund"
    stripe_payment_intent_id: Id
    refund_id: Id
    amount_cents: Amount
    reason: Text1000 | None = None


class GrantAccess(Command):
    type: Literal["access.grant"] = "access.grant"
    user_id: Id
    content_id: UUID
    access_type: Literal["subscription", "complimentary", "preview"]
    expires_at: BusinessTime | None = None


class RevokeAccess(Command):
    type: Literal["access.revoke"] = "access.revoke"
    user_id: Id
    content_id: UUID
    reason: Text1000 | None = None


class RecordPlayback(Command):
    type: Literal["playback.progress"] = "playback.progress"
    user_id: Id
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


def _command_types() -> dict[str, type[Command]]:
    """Every command class by its ``type``, in the order they are defined above: a
    command is registered by being defined (its handler registers in ledger.service)."""
    found: dict[str, type[Command]] = {}
    for model in Command.__subclasses__():
        name = model.model_fields["type"].default
        if name in found:
            raise TypeError(f"two commands are named {name!r}")
        found[name] = model
    return found


COMMAND_TYPES: dict[str, type[Command]] = _command_types()

AnyCommand: Any = Annotated[
    functools.reduce(operator.or_, COMMAND_TYPES.values()), Field(discriminator="type")
]
"""Any command, told apart by its ``type`` (for pydantic, as a field of another model)."""

# the field a model-level rule is about, for the error's "field"
_MODEL_RULE_FIELDS: dict[str, str] = {
    "purchase.complete": "amount_paid_cents",
    "playback.progress": "position_seconds",
}


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


# the end of a key: its closing quote, then the colon (JSON whitespace between)
_KEY_END = re.compile(r'"[ \t\n\r]*:')
_KEY_END_BYTES = re.compile(rb'"[ \t\n\r]*:')


_CONTAINERS = frozenset((dict, list))  # what orjson parses objects and arrays into


def _key_count(parsed: dict[str, Any]) -> int:
    """Keys in every object of a parsed command (iterative: nesting may be deep; a
    command is usually flat, so that case costs one pass over its values)."""
    count = len(parsed)
    pending = [v for v in parsed.values() if v.__class__ in _CONTAINERS]
    while pending:
        item = pending.pop()
        values = item.values() if item.__class__ is dict else item
        if item.__class__ is dict:
            count += len(item)
        pending.extend(v for v in values if v.__class__ in _CONTAINERS)
    return count


def _check_unique_keys(line: str | bytes, parsed: dict[str, Any]) -> None:
    """No object, at any depth, names a key twice (a JSON parser would keep the last
    value silently, so the command would not be the one the sender meant).

    Every key in the text ends with a quote and a colon, so when the text holds no more
    such endings than the parsed objects hold keys, no key was dropped: the common case
    costs a regular expression instead of a second parse.
    """
    endings = _KEY_END_BYTES if isinstance(line, bytes) else _KEY_END
    if len(endings.findall(line)) <= _key_count(parsed):  # type: ignore[arg-type]
        return
    try:
        json.loads(line, object_pairs_hook=_unique_keys)
    except _DuplicateKey as duplicate:
        raise ValidationFailed(
            f"{duplicate.key}: the key appears twice in one object",
            duplicate.key if duplicate.key in parsed else None,
        ) from None
    except RecursionError:
        raise ValidationFailed("malformed JSON: nested too deeply") from None


def parse_command(line: str | bytes) -> Command:
    """One JSON object (a JSON Lines line) to a command, or ``ValidationFailed``."""
    try:
        raw = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        raise ValidationFailed(f"malformed JSON: {error}") from None
    if not isinstance(raw, dict):
        raise ValidationFailed("a command must be a JSON object")
    _check_unique_keys(line, raw)
    command_type = raw.get("type")
    if not isinstance(command_type, str) or command_type not in COMMAND_TYPES:
        allowed = ", ".join(COMMAND_TYPES)
        raise ValidationFailed(f"type must be one of: {allowed}", "type")
    model = COMMAND_TYPES[command_type]
    try:
        command = model.model_validate_json(line)
    except ValidationError as error:
        raise _rejection(error, command_type) from None
    _check_rules(command)
    return command


def validate_command(command: Command) -> Command:
    """Re-checks a command built in Python (the typed API) by the same rules."""
    try:
        checked = type(command).model_validate(command.model_dump())
    except ValidationError as error:
        raise _rejection(error, getattr(command, "type", "")) from None
    _check_rules(checked)
    checked._provenance = command.provenance
    return checked


# no natural key: a redelivery is recognised by its moment or its idempotency key only
_WITHOUT_NATURAL_KEY: tuple[type[Command], ...] = (GrantAccess, RevokeAccess, RecordPlayback)


def _check_rules(command: Command) -> None:
    """Rules across fields, checked after the fields themselves."""
    if (
        isinstance(command, _WITHOUT_NATURAL_KEY)
        and command.occurred_at is None
        and command.idempotency_key is None
    ):
        raise ValidationFailed(
            f"occurred_at: {getattr(command, 'type', '')} has no natural key, so it needs "
            "occurred_at (or an idempotency_key): without either, a replayed file would "
            "apply it again",
            "occurred_at",
        )
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
