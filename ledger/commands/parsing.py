"""One JSON Lines line to a command, or a ``ValidationFailed`` naming the field and the
rule; and the same rules for a command built in Python.

Besides each field's own rule: no key twice in one object (a JSON parser would keep
the last value silently), and the rules across fields (``_check_rules``).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from pydantic import ValidationError

from ledger.commands.access import GrantAccess, RecordPlayback, RevokeAccess
from ledger.commands.base import Command
from ledger.commands.by_type import COMMAND_TYPES
from ledger.commands.fields import MAX_INT, check_id
from ledger.domain import clock
from ledger.domain.errors import ValidationFailed
from ledger.domain.provenance import Provenance

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
    costs a regular expression instead of a second parse. Each ending holds a colon of its
    own, so a text with no more colons than keys has no more endings either: counting
    colons (a heartbeat without ``occurred_at`` has one a key) spares even the expression.
    """
    keys = _key_count(parsed)
    if line.count(":" if isinstance(line, str) else b":") <= keys:  # type: ignore[arg-type]
        return
    endings = _KEY_END_BYTES if isinstance(line, bytes) else _KEY_END
    if len(endings.findall(line)) <= keys:  # type: ignore[arg-type]
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


def parse_command(
    line: str | bytes, source: str | None = None, correlation_id: str | None = None
) -> Command:
    """One JSON object (a JSON Lines line) to a command, or ``ValidationFailed``. Given a
    ``source``, the command comes from it, answering ``correlation_id``
    (``Command.stamped``, checked after the line: a bad line is named first), stamped on
    the new command itself rather than on a copy of it (a copy is a tenth of a
    heartbeat's CPU in the service)."""
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
    if source is not None:
        private = command.__pydantic_private__
        assert private is not None
        private["_provenance"] = Provenance(source, correlation_id)
    return command


def validate_command(command: Command) -> Command:
    """Re-checks a command built in Python (the typed API) by the same rules.

    A heartbeat whose fields all pass their rules as they are is returned as it is
    (``valid_heartbeat``): re-validating it through pydantic (a dump, then a validation)
    was a quarter of a heartbeat's CPU in its caller (docs/performance.md). Anything
    else, and every heartbeat that fails a rule, takes the full validation, so the
    answer and the error are the full validation's."""
    if command.__class__ is RecordPlayback and valid_heartbeat(command):
        return command
    return validated_in_full(command)


def validated_in_full(command: Command) -> Command:
    """Every rule, through pydantic (a dump, then a validation): what the fast path of
    ``validate_command`` is held to (tests/property/test_heartbeat_fast_path.py)."""
    try:
        checked = type(command).model_validate(command.model_dump())
    except ValidationError as error:
        raise _rejection(error, getattr(command, "type", "")) from None
    _check_rules(checked)
    checked._provenance = command.provenance
    return checked


_HEARTBEAT_FIELDS = frozenset(RecordPlayback.model_fields)


def valid_heartbeat(command: RecordPlayback) -> bool:
    """Whether every rule of ``RecordPlayback`` holds for the values the object holds,
    each of exactly the type strict validation keeps (so the full validation would give
    an equal command back). ``False`` says only "not sure": the caller then validates in
    full, which names the rule (a command made by ``model_construct`` or ``model_copy``
    may hold anything). tests/property/test_heartbeat_fast_path.py holds it to the full
    validation for every input."""
    values = command.__dict__
    if values.keys() != _HEARTBEAT_FIELDS:
        return False
    user, content = values["user_id"], values["content_id"]
    position, duration = values["position_seconds"], values["duration_seconds"]
    at, key = values["occurred_at"], values["idempotency_key"]
    if not (
        values["type"].__class__ is str
        and values["type"] == "playback.progress"
        and user.__class__ is str
        and content.__class__ is UUID
        and position.__class__ is int
        and duration.__class__ is int
        and 0 <= position <= duration <= MAX_INT
        and duration >= 1
        and (at is not None or key is not None)  # the rule across fields (_check_rules)
    ):
        return False
    try:  # a tzinfo of the caller's may raise anything: then the full validation says what
        if at is not None and not (
            at.__class__ is datetime and at.utcoffset() is not None and clock.within_window(at)
        ):
            return False
        check_id(user)
        if key is not None:
            if key.__class__ is not str:
                return False
            check_id(key)
    except Exception:
        return False
    return True


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
