"""The unit of work: the aggregates one decision loads and changes, and its events."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from ledger.domain import events as ev
from ledger.log.chains import Route
from ledger.log.people import Person
from ledger.privacy.subjects import SubjectChange
from ledger.service.cache import AggregateCache, DecisionStore
from projections.changes import RowChange

A = TypeVar("A", bound=Aggregate)


@dataclass
class UnitOfWork:
    """The aggregates one decision (or one ``--atomic`` batch) loads and changes.

    ``speculative``: take aggregates from the cache, and those it lacks as absent,
    without a round trip. The append's guard checks every such guess; a decision that
    ends in a rejection or a duplicate is made again on state read from the log,
    since nothing is appended that could check it.
    """

    cache: AggregateCache
    store: DecisionStore
    speculative: bool = False
    lent: set[UUID] = field(default_factory=set)
    committed: bool = False
    loaded: dict[UUID, Aggregate | None] = field(default_factory=dict)
    read_versions: dict[UUID, int] = field(default_factory=dict)
    written: set[UUID] = field(default_factory=set)
    events: list[Any] = field(default_factory=list)
    chains: list[UUID] = field(default_factory=list)  # each event's chain (service.chains)
    conflict: IntegrityError | None = None  # why the append was refused (decide again)
    # subjects drawn or erased by this decision (``ledger.privacy.subjects``), appended
    # with its events; ``added``: each id registered here, by its new subject
    subject_changes: list[SubjectChange] = field(default_factory=list)
    added: dict[str, str] = field(default_factory=dict)
    named: dict[str, str] = field(default_factory=dict)  # each subject met, to its id
    # ids this attempt looked up and found without a subject: not asked again (a batch of
    # 17,000 registrations asked 17,000 times); a subject another process gave one of them
    # meanwhile makes the append's insert of ``ledger_subjects`` fail, and the attempt
    # is decided again on a new unit of work
    unnamed: set[str] = field(default_factory=set)
    # the playback store's idempotency keys this attempt read (key to fingerprint, ``None``:
    # not there), ``ledger.service.command_keys``
    store_keys: dict[str, str | None] = field(default_factory=dict)
    # the chains the decision's aggregates are read from first (the command's organization
    # and the platform's), set only on a distributed layout: ``ledger.service.chains.route``
    route: Route | None = None
    # on a distributed log, a decision of ``facts.ON_FACTS`` takes its people as facts of ``users``
    # (``ledger.service.facts``): the reader, and what it said of each id or subject met
    facts: Callable[[Collection[str]], Mapping[str, Person]] | None = None
    people: dict[str, Person] = field(default_factory=dict)
    # a revocation decided on facts: its row's upsert, appended before the changes of the
    # event at this index (``facts.revocation_guard``, ``facts.guard``)
    guards: dict[int, RowChange] = field(default_factory=dict)

    def prefetch(self, aggregate_ids: Sequence[UUID]) -> None:
        """Loads the aggregates a decision will need, in one query."""
        missing = [i for i in dict.fromkeys(aggregate_ids) if i not in self.loaded]
        if missing:
            cache = self.cache
            found = cache.cached(missing) if self.speculative else cache.load(missing, self.route)
            for aggregate_id, aggregate in found.items():
                self.loaded[aggregate_id] = aggregate
                self.read_versions[aggregate_id] = aggregate.version if aggregate else 0
                if self.speculative and aggregate is not None:
                    self.lent.add(aggregate_id)

    def prefetch_group(self, aggregate_ids: Sequence[UUID]) -> None:
        """Loads what a group of decisions will need in one query; when speculative, takes
        what the cache holds and reads only what it lacks from the log.

        A group touches many aggregates; on a cold cache, guessing "absent" for them all
        would end almost every group's first attempt in a rejection, then read them one
        decision at a time. A read from the log is no guess, and costs one round trip here.
        """
        missing = [i for i in dict.fromkeys(aggregate_ids) if i not in self.loaded]
        if not self.speculative:
            self.prefetch(missing)
            return
        cache = self.cache
        found = cache.cached(missing)
        lacking = [i for i, a in found.items() if a is None]
        read = cache.load(lacking, self.route) if lacking else {}
        for aggregate_id, aggregate in found.items():
            if aggregate is None:
                aggregate = read[aggregate_id]
            else:
                self.lent.add(aggregate_id)
            self.loaded[aggregate_id] = aggregate
            self.read_versions[aggregate_id] = aggregate.version if aggregate else 0

    def get(self, aggregate_id: UUID, kind: type[A]) -> A | None:
        self.prefetch([aggregate_id])
        found = self.loaded[aggregate_id]
        if found is not None and not isinstance(found, kind):
            raise TypeError(f"aggregate {aggregate_id} is a {type(found).__name__}")
        return found

    def record(self, aggregate: Aggregate) -> None:
        """Takes the aggregate's new events, in the order they were decided."""
        self.loaded[aggregate.id] = aggregate
        new_events = aggregate.collect_events()
        if new_events:
            self.written.add(aggregate.id)
            self.events.extend(new_events)

    def has_purchase_rows(self, content_id: str, organization_id: str) -> bool:
        """Whether a purchases row of this content exists (the RESTRICT rule), read in the
        content's organization (its purchases carry it: one worker's shard on Citus).

        Read from the projection, which is consistent with the log (inline); in a
        batch, this batch's own events count too, in their order: its purchases add
        rows, and a user deleted earlier in the batch takes that customer's rows away
        (``projections.purchases``), as the same commands one by one would find. The
        foreign key is the backstop against a purchase committed meanwhile: it fails the
        append, and the retry decides again.
        """
        buyers: set[str] = set()
        deleted: set[str] = set()
        for event in self.events:
            if (
                isinstance(event, ev.PurchaseStarted | ev.PurchaseCompleted | ev.PurchaseFailed)
                and event.content_id == content_id
            ):
                buyers.add(event.customer_id)
            elif isinstance(event, ev.UserDeleted):
                deleted.add(event.user_id)
                buyers.discard(event.user_id)
        if buyers:
            return True
        # the rows name people by id, the events by subject (``named``: docs/privacy.md)
        ids = {self.named.get(user, user) for user in deleted}
        return self.store.has_purchase_rows(content_id, organization_id, sorted(ids))

    def guarded_reads(self) -> dict[UUID, int]:
        """Versions of what was read and not written (0: absent); the key guards the rest."""
        return {i: v for i, v in self.read_versions.items() if i not in self.written}

    def spoiled(self) -> list[UUID]:
        """The cache's aggregates this decision changed: stale if it does not commit."""
        return [
            i
            for i in self.lent
            if (a := self.loaded.get(i)) is None or a.version != self.read_versions[i]
        ]

    def written_aggregates(self) -> list[Aggregate]:
        return [a for i in self.written if (a := self.loaded[i]) is not None]
