"""users: one row per registered user, gone once the user is deleted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ledger.domain import events as ev
from projections.changes import Delete, RowChange, Upsert

TABLE = "users"
KEY = ("id",)
# the events ``changes`` maps (the registry sends it no others)
EVENTS = (ev.UserRegistered, ev.UserDeleted, ev.UserErased)


def changes(event: Any) -> Iterator[RowChange]:
    if isinstance(event, ev.UserRegistered):
        yield Upsert(TABLE, KEY, {"id": event.user_id}, event.occurred_at)
    elif isinstance(event, ev.UserDeleted):
        yield Delete(TABLE, {"id": event.user_id})
