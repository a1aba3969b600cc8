"""Stored events as plain JSON: what every reader of the log prints (``ledger events``,
``GET /v1/events``) and hands to consumers, decoded into their class first so an event that
does not decode stops the reader instead of being passed on."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from ledger.log.shapes import check


def decode(position: int, topic: str, state: bytes) -> dict[str, Any]:
    """A stored event's JSON, with the library's typed values (``{"_type_": ...,
    "_data_": ...}``) turned into their plain JSON form. An event that does not decode
    into its class (only a superuser can store one, with the log's shape trigger off)
    stops the reader with ``UndecodableEvent`` naming its position and topic, as every
    other reader of the log does."""
    plain = _plain(check(position, topic, state))
    assert isinstance(plain, dict)
    return plain


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        if value.keys() == {"_type_", "_data_"}:
            return _untyped(value["_type_"], _plain(value["_data_"]))
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _untyped(kind: Any, data: Any) -> Any:
    """The library's transcodings: ISO datetimes and decimal strings stay strings, a
    UUID's hex becomes its usual form; other types keep their data."""
    if kind == "uuid_hex" and isinstance(data, str):
        try:
            return str(UUID(hex=data))
        except ValueError:
            return data
    return data
