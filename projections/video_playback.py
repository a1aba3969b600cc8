"""video_playback: the (user, content) playback row, for resuming.

The row shows the newest heartbeat by ``occurred_at``; the aggregate decides which
one that is and records it in the event (``newest``). An older heartbeat that arrives
late changes nothing but ``completed``, which it may turn true (never false).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ledger.domain import events as ev
from ledger.domain import ids
from projections.changes import Delete, RowChange, Update, Upsert

TABLE = "video_playback"
KEY = ("user_id", "content_id")
# the events ``changes`` maps (the registry sends it no others)
EVENTS = (ev.PlaybackProgressed, ev.UserDeleted, ev.ContentDeleted)


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
