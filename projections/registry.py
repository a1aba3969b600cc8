"""The projections, in foreign-key order (a table comes after the tables it references)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from types import ModuleType
from typing import Any
from uuid import UUID

from ledger.domain import events as ev
from ledger.log.chains import PLATFORM
from projections import content, content_access, organizations, purchases, users, video_playback
from projections.changes import Delete, RowChange

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


def changes_for(
    events: Iterable[Any],
    only: frozenset[str] | None = None,
    chains: Sequence[UUID] | None = None,
) -> list[RowChange]:
    """Every row change the events make, event by event, tables in FK order.

    Each event goes only to the projections that map its class (a heartbeat to two,
    not six): on a rebuild this dispatch runs once per event of the log.

    ``chains`` (the append's: each event's organization, ``ledger.service.chains``): a
    content's deletion then deletes its rows in its organization (``in_organization``).
    """
    result: list[RowChange] = []
    for index, event in enumerate(events):
        for mapper in _route(type(event), only):
            if chains and isinstance(event, ev.ContentDeleted):
                result.extend(in_organization(mapper(event), chains[index]))
            else:
                result.extend(mapper(event))
    return result


def in_organization(changes: Iterable[RowChange], chain: UUID) -> Iterator[RowChange]:
    """A content's deletion's row deletions, matched by its organization as well.

    ``ContentDeleted`` names its content alone (the event predates the organizations'
    keys, and old events cannot learn it), so its rows (``content``, ``content_access``,
    ``video_playback``) were deleted by content id, which on Citus is every shard of each
    table: every worker, so a stopped worker of other organizations failed the deletion.
    Its chain is its content's organization (``chains.chain_of``), and every row of the
    content carries it (their keys (organization_id, content_id) reference ``content``), so
    the same rows are deleted, by a statement routed to the organization's shard. The
    platform's chain names no organization: left as it is."""
    for change in changes:
        if isinstance(change, Delete) and chain != PLATFORM:
            yield replace(change, match={**change.match, "organization_id": str(chain)})
        else:
            yield change
