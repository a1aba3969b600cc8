"""The projections, in foreign-key order (a table comes after the tables it references)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import Any

from ledger.domain import events as ev
from projections import content, content_access, organizations, purchases, users, video_playback
from projections.changes import RowChange

PROJECTIONS: tuple[ModuleType, ...] = (
    organizations,
    users,
    content,
    content_access,
    purchases,
    video_playback,
)

TABLES: tuple[str, ...] = tuple(module.TABLE for module in PROJECTIONS)
KEYS: dict[str, tuple[str, ...]] = {module.TABLE: module.KEY for module in PROJECTIONS}

# the events some projection maps; a rebuild reads only these from the log
PROJECTED_TOPICS: tuple[str, ...] = tuple(
    str(getattr(cls, "TOPIC"))  # noqa: B009
    for cls in (
        ev.OrganizationRegistered,
        ev.UserRegistered,
        ev.UserDeleted,
        ev.ContentPublished,
        ev.ContentDeleted,
        ev.PurchaseStarted,
        ev.PurchaseCompleted,
        ev.PurchaseFailed,
        ev.PurchaseRefunded,
        ev.AccessGranted,
        ev.AccessRevoked,
        ev.PlaybackProgressed,
    )
)

_MAPPERS: tuple[Callable[[Any], Iterator[RowChange]], ...] = tuple(
    module.changes for module in PROJECTIONS
)


def changes_for(events: Iterable[Any], only: frozenset[str] | None = None) -> list[RowChange]:
    """Every row change the events make, event by event, tables in FK order."""
    result: list[RowChange] = []
    for event in events:
        for module, mapper in zip(PROJECTIONS, _MAPPERS, strict=True):
            if only is None or module.TABLE in only:
                result.extend(mapper(event))
    return result
