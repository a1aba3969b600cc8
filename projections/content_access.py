"""content_access: the (user, content) access row.

A grant (or a completed purchase) upserts the row, a revoke (or the full refund of
the purchase behind it) removes it, the newest heartbeat stamps ``last_accessed_at``
(an older one arriving late does not: it never moves back); rows of a deleted user or
content leave with them (ON DELETE CASCADE). A purchase's grant dated before the row's
latest change (``newest`` false) leaves ``updated_at`` as it is.

A revocation names its organization since version 3 of ``AccessRevoked``, and its row is
deleted by the whole key (on a distributed log: on that organization's shard alone); an
older one, upcast with ``organization_id = None``, by (user, content), as it was written
(only a rebuild replays it). The row is the same either way: one (user, content) has one
content, of one organization.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ledger.domain import events as ev
from ledger.domain import ids
from projections.changes import Delete, RowChange, Update, Upsert

TABLE = "content_access"
# organization_id first: the table's unique keys carry it (migration 0013, docs/scaling.md)
KEY = ("organization_id", "user_id", "content_id")
# the events ``changes`` maps (the registry sends it no others)
EVENTS = (
    ev.AccessGranted,
    ev.AccessRevoked,
    ev.PlaybackProgressed,
    ev.UserDeleted,
    ev.UserLeftOrganization,
    ev.ContentDeleted,
)


def revoked(event: ev.AccessRevoked) -> dict[str, Any]:
    """The match of a revocation's row: the whole key when the event names its
    organization, else (user, content)."""
    match = {"user_id": event.user_id, "content_id": event.content_id}
    if event.organization_id is None:
        return match
    return {"organization_id": event.organization_id, **match}


def changes(event: Any) -> Iterator[RowChange]:
    if isinstance(event, ev.AccessGranted):
        yield Upsert(
            TABLE,
            KEY,
            {
                "id": str(ids.access_id(event.user_id, event.content_id)),
                "user_id": event.user_id,
                "content_id": event.content_id,
                "organization_id": event.organization_id,
                "access_type": event.access_type,
                "granted_at": event.occurred_at,
                "expires_at": event.expires_at,
            },
            event.occurred_at,
            touch=event.newest,
        )
    elif isinstance(event, ev.AccessRevoked):
        yield Delete(TABLE, revoked(event))
    elif isinstance(event, ev.PlaybackProgressed) and event.newest:
        yield Update(
            TABLE,
            {"user_id": event.user_id, "content_id": event.content_id},
            {"last_accessed_at": event.occurred_at},
            event.occurred_at if event.access_newest else None,
        )
    elif isinstance(event, ev.UserDeleted):
        yield Delete(TABLE, {"user_id": event.user_id})
    elif isinstance(event, ev.UserLeftOrganization):  # one organization's part of it
        yield Delete(TABLE, {"user_id": event.user_id, "organization_id": event.organization_id})
    elif isinstance(event, ev.ContentDeleted):
        yield Delete(TABLE, {"content_id": event.content_id})
