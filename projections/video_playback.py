"""video_playback: the (user, content) playback row, for resuming.

The row shows the newest heartbeat by ``occurred_at``; the aggregate decides which
one that is and records it in the event (``newest``). An older heartbeat that arrives
late changes nothing but ``completed``, which it may turn true (never false).

The row carries its content's organization (migration 0026: its keys are led by it, so on
Citus it lives beside its content). A heartbeat the log recorded (``PlaybackProgressed``,
before the playback store: since issue 26 no heartbeat is appended to the log, so only a
rebuild meets one) names its content, not its organization: the mapping says so with
``OrganizationOf``, and the rebuild fills the organization in from data, the content's row
(``ledger.upkeep.owners``), before the change is applied. No rule is decided here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ledger.domain import events as ev
from ledger.domain import ids
from projections.changes import Delete, RowChange, Update, Upsert

TABLE = "video_playback"
# organization_id first: the table's unique key carries it (migration 0026, docs/scaling.md)
KEY = ("organization_id", "user_id", "content_id")
# the events ``changes`` maps (the registry sends it no others)
EVENTS = (ev.PlaybackProgressed, ev.UserDeleted, ev.ContentDeleted)


@dataclass(frozen=True, slots=True)
class OrganizationOf:
    """The organization of a content, a value to be filled in from the content's row."""

    content_id: str


def changes(event: Any) -> Iterator[RowChange]:
    if isinstance(event, ev.PlaybackProgressed) and not event.newest:
        if event.completed:
            match = {"user_id": event.user_id, "content_id": event.content_id}
            yield Update(TABLE, match, {"completed": True}, None)
    elif isinstance(event, ev.PlaybackProgressed):
        yield Upsert(
            TABLE,
            KEY,
            {
                "id": str(ids.playback_id(event.user_id, event.content_id)),
                "user_id": event.user_id,
                "content_id": event.content_id,
                "organization_id": OrganizationOf(str(event.content_id)),
                "position_seconds": event.position_seconds,
                "duration_seconds": event.duration_seconds,
                "completed": event.completed,
            },
            event.occurred_at,
        )
    elif isinstance(event, ev.UserDeleted):
        yield Delete(TABLE, {"user_id": event.user_id})
    elif isinstance(event, ev.ContentDeleted):
        yield Delete(TABLE, {"content_id": event.content_id})


def wanted(changes: Iterable[RowChange]) -> set[str]:
    """The content ids whose organization the changes need filled in."""
    return {
        value.content_id
        for change in changes
        if isinstance(change, Upsert) and change.table == TABLE
        for value in change.values.values()
        if isinstance(value, OrganizationOf)
    }


def with_organizations(
    changes: Iterable[RowChange], organizations: Mapping[str, str]
) -> list[RowChange]:
    """The changes with each ``OrganizationOf`` turned into the organization
    (``organizations``: content id to organization id). A row whose content is not known
    any more is dropped: the content's deletion, later in the log, removes its rows."""
    filled: list[RowChange] = []
    for change in changes:
        marker = change.values.get("organization_id") if isinstance(change, Upsert) else None
        if not isinstance(change, Upsert) or not isinstance(marker, OrganizationOf):
            filled.append(change)
            continue
        organization = organizations.get(marker.content_id)
        if organization is not None:
            values = {**change.values, "organization_id": organization}
            filled.append(replace(change, values=values))
    return filled
