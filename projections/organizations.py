"""organizations: one row per registered organization."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ledger.domain import events as ev
from projections.changes import RowChange, Upsert

TABLE = "organizations"
KEY = ("id",)
# the events ``changes`` maps (the registry sends it no others)
EVENTS = (ev.OrganizationRegistered,)


def changes(event: Any) -> Iterator[RowChange]:
    if isinstance(event, ev.OrganizationRegistered):
        yield Upsert(
            TABLE, KEY, {"id": event.organization_id, "name": event.name}, event.occurred_at
        )
