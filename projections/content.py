"""content: one row per published content.

A deleted creator leaves the content with ``creator_id`` NULL (the foreign key's
ON DELETE SET NULL, which does not touch ``updated_at``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ledger.domain import events as ev
from projections.changes import Delete, RowChange, Update, Upsert

TABLE = "content"
# organization_id first: the table's key carries it (migration 0015, docs/scaling.md)
KEY = ("organization_id", "id")
# the events ``changes`` maps (the registry sends it no others)
EVENTS = (ev.ContentPublished, ev.ContentDeleted, ev.UserDeleted)


def changes(event: Any) -> Iterator[RowChange]:
    if isinstance(event, ev.ContentPublished):
        yield Upsert(
            TABLE,
            KEY,
            {
                "id": event.content_id,
                "organization_id": event.organization_id,
                "creator_id": event.creator_id,
                "title": event.title,
            },
            event.occurred_at,
        )
    elif isinstance(event, ev.ContentDeleted):
        yield Delete(TABLE, {"id": event.content_id})
    elif isinstance(event, ev.UserDeleted):
        yield Update(TABLE, {"creator_id": event.user_id}, {"creator_id": None}, None)
