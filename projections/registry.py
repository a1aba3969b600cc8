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
    dict.fromkeys(str(getattr(cls, "TOPIC")) for m in PROJECTIONS for cls in m.EVENTS)  # noqa: B009
)

# the events no table shows, on purpose: they carry an aggregate's identity or the
# aggregate's own bookkeeping, which the event that follows them in the same append
# shows (a test fails for an event class in neither this nor a projection's EVENTS)
UNPROJECTED: tuple[type[Any], ...] = (
    ev.PurchaseOpened,
    ev.AccessOpened,
    ev.PlaybackOpened,
    ev.AccessPurchaseReleased,
    ev.CommandKeyClaimed,
)

Mapper = Callable[[Any], Iterator[RowChange]]
_ROUTES: dict[tuple[type, frozenset[str] | None], tuple[Mapper, ...]] = {}


def _route(kind: type, only: frozenset[str] | None) -> tuple[Mapper, ...]:
    """The mappers, in FK order, of the projections that map events of this class."""
    found = _ROUTES.get((kind, only))
    if found is None:
        found = _ROUTES[(kind, only)] = tuple(
            module.changes
            for module in PROJECTIONS
            if (only is None or module.TABLE in only) and issubclass(kind, module.EVENTS)
        )
    return found


def changes_for(events: Iterable[Any], only: frozenset[str] | None = None) -> list[RowChange]:
    """Every row change the events make, event by event, tables in FK order.

    Each event goes only to the projections that map its class (a heartbeat to two,
    not six): on a rebuild this dispatch runs once per event of the log.
    """
    result: list[RowChange] = []
    for event in events:
        for mapper in _route(type(event), only):
            result.extend(mapper(event))
    return result
