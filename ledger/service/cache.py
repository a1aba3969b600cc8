"""The aggregates kept between decisions, and what the cache needs of the store."""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Mapper, StoredEvent

from ledger.log.chains import Route


class DecisionStore(Protocol):
    """What deciding reads from the store besides the aggregates' own events: the
    write side's only reads, so that a store in memory can stand in for PostgreSQL
    (``ledger.log.recorder.LedgerRecorder``, ``ledger.service.memory.MemoryRecorder``)."""

    def events_after(
        self, versions: Mapping[UUID, int], route: Route | None = None
    ) -> Sequence[StoredEvent]:
        """Every event of these aggregates after the versions given, in order. ``route``:
        where a distributed log reads them (``ledger.log.chains.Route``)."""

    def has_purchase_rows(
        self, content_id: str, organization_id: str, excluding: Sequence[str] = ()
    ) -> bool:
        """Whether a purchases row of this content exists (the RESTRICT rule), of a
        customer other than those ``excluding`` (users deleted earlier in the batch). Read
        in the content's organization: its purchases carry it, and on Citus the read then
        goes to that organization's worker alone."""


class AggregateCache:
    """Aggregates kept between commands, brought up to date from the log on every read.

    One read fetches, for all the aggregates a decision needs, the events after the
    cached versions, so a long-lived aggregate (a video watched with many heartbeats)
    is never replayed from scratch and a decision costs one round trip to read. The
    cache only ever holds committed state: a decision works on copies, and whatever
    another process appended is read before deciding (and guarded again at append).
    """

    def __init__(self, store: DecisionStore, mapper: Mapper[UUID], maxsize: int = 20_000) -> None:
        self._store = store
        self._mapper = mapper
        self._maxsize = maxsize
        self._cached: OrderedDict[UUID, Aggregate] = OrderedDict()

    def cached(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, Aggregate | None]:
        """What the cache holds, and ``None`` for what it does not hold.

        A guess, not a read: a decision made on it is appended only if the guard in the
        append's transaction finds every aggregate still at the version guessed (absent
        ones included), so a wrong guess costs a retry, never a wrong answer. The
        aggregates are lent, not copied (copying costs more than the rest of a decision):
        one that a decision changed and did not commit must be ``forget``-ten.
        """
        return {i: self._cached.get(i) for i in aggregate_ids}

    def forget(self, aggregate_ids: Iterable[UUID]) -> None:
        for aggregate_id in aggregate_ids:
            self._cached.pop(aggregate_id, None)

    def remember(self, aggregates: Sequence[Aggregate]) -> None:
        """Keeps aggregates as a committed append left them (the caller drops its copies)."""
        for aggregate in aggregates:
            self._cached[aggregate.id] = aggregate
            self._cached.move_to_end(aggregate.id)
        self._trim()

    def _trim(self) -> None:
        while len(self._cached) > self._maxsize:
            self._cached.popitem(last=False)

    def load(
        self, aggregate_ids: Sequence[UUID], route: Route | None = None
    ) -> dict[UUID, Aggregate | None]:
        cached = {i: self._cached.get(i) for i in aggregate_ids}
        versions = {i: a.version if a is not None else 0 for i, a in cached.items()}
        newer: dict[UUID, list[StoredEvent]] = {}
        for stored in self._store.events_after(versions, route):
            newer.setdefault(stored.originator_id, []).append(stored)  # type: ignore[arg-type]
        result: dict[UUID, Aggregate | None] = {}
        for aggregate_id, aggregate in cached.items():
            found: Any = aggregate
            for stored in newer.get(aggregate_id, ()):
                found = self._mapper.to_domain_event(stored).mutate(found)  # type: ignore[attr-defined]
            if found is not None:
                self._cached[aggregate_id] = found
                self._cached.move_to_end(aggregate_id)
            result[aggregate_id] = copy.deepcopy(found)
        self._trim()
        return result
