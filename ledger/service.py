"""The application service: commands in, events and projected rows out.

Each command is decided against aggregates loaded from the log, then its events and
the rows they change are appended in one transaction (``LedgerRecorder``). Two
writers deciding on the same aggregate at once are resolved optimistically: the
log's primary key lets one append win; the other is reloaded and decided again,
never lost and never doubled. Aggregates a decision only read are re-checked inside
the append's transaction.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, StoredEvent
from psycopg import sql

from ledger import commands as cmd
from ledger.config import Settings
from ledger.domain import clock, ids
from ledger.domain import events as ev
from ledger.domain.aggregates import (
    Access,
    CommandKey,
    Content,
    Organization,
    Playback,
    Purchase,
    User,
)
from ledger.domain.errors import Conflict, InvalidState, NoAccess, NotFound, Rejected
from ledger.group_commit import GroupCommitter, GroupFailed
from ledger.results import DUPLICATE, Result
from ledger.store import environment
from projections.registry import changes_for

MAX_ATTEMPTS = 20
A = TypeVar("A", bound=Aggregate)
R = TypeVar("R")


class Duplicate(Exception):
    """The command was already applied; nothing to write."""


GROUP_ATTEMPTS = 2
"""Attempts of a group as one transaction (the first on the cache) before each of its
commands is committed alone."""


class AggregateCache:
    """Aggregates kept between commands, brought up to date from the log on every read.

    One query fetches, for all the aggregates a decision needs, the events after the
    cached versions, so a long-lived aggregate (a video watched with many heartbeats)
    is never replayed from scratch and a decision costs one round trip to read. The
    cache only ever holds committed state: a decision works on copies, and whatever
    another process appended is read before deciding (and guarded again at append).
    """

    def __init__(self, app: Ledger, maxsize: int = 20_000) -> None:
        self._app = app
        self._maxsize = maxsize
        self._cached: OrderedDict[UUID, Aggregate] = OrderedDict()
        self._query = sql.SQL(
            "SELECT e.originator_id, e.originator_version, e.topic, e.state FROM {} e "
            "JOIN unnest(%s::uuid[], %s::bigint[]) AS w(id, version) "
            "ON e.originator_id = w.id AND e.originator_version > w.version "
            "ORDER BY e.originator_id, e.originator_version"
        ).format(sql.Identifier(app.settings.schema, "ledger_events"))

    def cached(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, Aggregate | None]:
        """What the cache holds, and ``None`` for what it does not hold.

        A guess, not a read: a decision made on it is appended only if the guard in the
        append's transaction finds every aggregate still at the version guessed (absent
        ones included), so a wrong guess costs a retry, never a wrong answer. The
        aggregates are lent, not copied (copying cost more than the rest of a decision):
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

    def load(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, Aggregate | None]:
        cached = {i: self._cached.get(i) for i in aggregate_ids}
        versions = [a.version if a is not None else 0 for a in cached.values()]
        with self._app.recorder.datastore.get_connection() as conn:  # type: ignore[attr-defined]
            rows = conn.execute(self._query, (list(cached), versions), prepare=True).fetchall()
        newer: dict[UUID, list[Any]] = {}
        for row in rows:
            stored = StoredEvent(
                originator_id=row["originator_id"],
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=bytes(row["state"]),
            )
            newer.setdefault(row["originator_id"], []).append(stored)
        result: dict[UUID, Aggregate | None] = {}
        for aggregate_id, aggregate in cached.items():
            for stored in newer.get(aggregate_id, ()):
                event = self._app.mapper.to_domain_event(stored)
                aggregate = event.mutate(aggregate)  # type: ignore[attr-defined]
            if aggregate is not None:
                self._cached[aggregate_id] = aggregate
                self._cached.move_to_end(aggregate_id)
            result[aggregate_id] = copy.deepcopy(aggregate)
        self._trim()
        return result


@dataclass
class UnitOfWork:
    """The aggregates one decision (or one ``--atomic`` batch) loads and changes.

    ``speculative``: take aggregates from the cache, and those it lacks as absent,
    without a round trip. The append's guard checks every such guess; a decision that
    ends in a rejection or a duplicate is made again on state read from the log,
    since nothing is appended that could check it.
    """

    app: Ledger
    speculative: bool = False
    lent: set[UUID] = field(default_factory=set)
    committed: bool = False
    loaded: dict[UUID, Aggregate | None] = field(default_factory=dict)
    read_versions: dict[UUID, int] = field(default_factory=dict)
    written: set[UUID] = field(default_factory=set)
    events: list[Any] = field(default_factory=list)

    def prefetch(self, aggregate_ids: Sequence[UUID]) -> None:
        """Loads the aggregates a decision will need, in one query."""
        missing = [i for i in dict.fromkeys(aggregate_ids) if i not in self.loaded]
        if missing:
            cache = self.app.aggregates
            found = cache.cached(missing) if self.speculative else cache.load(missing)
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
        cache = self.app.aggregates
        found = cache.cached(missing)
        lacking = [i for i, a in found.items() if a is None]
        read = cache.load(lacking) if lacking else {}
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


class Ledger(Application[UUID]):
    """The ledger's write side. ``name`` makes the library's table ``ledger_events``."""

    name = "Ledger"

    def __init__(self, settings: Settings, pool_size: int = 2) -> None:
        self.settings = settings
        super().__init__(env=environment(settings, pool_size))
        self.aggregates = AggregateCache(self)
        # one decision at a time: the aggregate cache lends its aggregates uncopied
        self.deciding = threading.RLock()
        self.groups = GroupCommitter(self.execute_group, settings)
        self._handlers: dict[
            type[cmd.Command], Callable[[UnitOfWork, Any, str, cmd.Fingerprint], None]
        ] = {
            cmd.RegisterOrganization: self._register_organization,
            cmd.RegisterUser: self._register_user,
            cmd.DeleteUser: self._delete_user,
            cmd.PublishContent: self._publish_content,
            cmd.DeleteContent: self._delete_content,
            cmd.StartPurchase: self._start_purchase,
            cmd.CompletePurchase: self._complete_purchase,
            cmd.FailPurchase: self._fail_purchase,
            cmd.RefundPurchase: self._refund_purchase,
            cmd.GrantAccess: self._grant_access,
            cmd.RevokeAccess: self._revoke_access,
            cmd.RecordPlayback: self._record_playback,
        }

    # --- public API --------------------------------------------------------------

    def close(self) -> None:
        """Answers every caller still queued for a group commit, then closes the pool."""
        self.groups.close()
        super().close()

    def execute(self, command: cmd.Command) -> Result:
        """Decides and appends one command in its own transaction."""
        return self.execute_batch([command], atomic=False)[0]

    def execute_batch(
        self, commands: Sequence[cmd.Command | Rejected], *, atomic: bool
    ) -> list[Result]:
        """Each command in its own transaction, or (``atomic``) all in one.

        An item that is already a ``Rejected`` (a line that did not parse) is answered
        as such. In atomic mode any rejection writes nothing, and the lines that were
        fine are answered ``rolled_back``.
        """
        with self.deciding:
            if not atomic:
                return [
                    Result("rejected", error=i) if isinstance(i, Rejected) else self._one(i)
                    for i in commands
                ]
            return self._atomic(commands)

    def execute_group(self, commands: Sequence[cmd.Command | Rejected]) -> list[Result]:
        """Each command decided alone, in order, on the state the ones before it left, and
        all of them written in one transaction (group commit, ``ledger.group_commit``).

        The answers are those of ``execute_batch(atomic=False)``: a rejection or a
        duplicate changes nothing and takes only its own command out; a group the log
        refuses twice (a lost race with another process, a constraint) falls back to one
        transaction per command. Any other error (a lost connection, ``LockTimeout``)
        leaves the whole group, and nothing of it may be assumed written or not; in the
        fallback, it stops at the command that met it (``GroupFailed``).
        """
        with self.deciding:
            for number in range(GROUP_ATTEMPTS):
                uow = UnitOfWork(self, speculative=number == 0)
                results = self._settled(uow, lambda u: self._try_group(u, commands))
                if results is not None:
                    return results
            answered: list[Result] = []
            for item in commands:
                try:
                    answered += self.execute_batch([item], atomic=False)
                except Exception as error:
                    raise GroupFailed(answered, error) from error
            return answered

    # --- transactions --------------------------------------------------------------

    def _one(self, command: cmd.Command) -> Result:
        return self._retrying(lambda uow: self._try_one(uow, command))

    def _try_one(self, uow: UnitOfWork, command: cmd.Command) -> Result | None:
        """The command's result, or ``None`` to decide again."""
        try:
            self._decide(uow, command)
        except Duplicate:
            return None if uow.speculative else DUPLICATE
        except Rejected as error:
            return None if uow.speculative else Result("rejected", error=error)
        try:
            positions = self._append(uow)
        except IntegrityError:
            return None  # another writer got there first: decide again on fresh state
        return Result("accepted", position=max(positions))

    def _atomic(self, commands: Sequence[cmd.Command | Rejected]) -> list[Result]:
        return self._retrying(lambda uow: self._try_atomic(uow, commands))

    def _retrying(self, attempt: Callable[[UnitOfWork], R | None]) -> R:
        """Attempts until one answers (``None``: decide again): the first on the cache."""
        for number in range(MAX_ATTEMPTS):
            uow = UnitOfWork(self, speculative=number == 0)
            result = self._settled(uow, attempt)
            if result is not None:
                return result
        raise RuntimeError(f"gave up after {MAX_ATTEMPTS} concurrent conflicts")

    def _try_atomic(
        self, uow: UnitOfWork, commands: Sequence[cmd.Command | Rejected]
    ) -> list[Result] | None:
        results, spans, decided_no = self._decide_each(uow, commands)
        if uow.speculative and decided_no:
            return None  # a rejection or a duplicate: decide again on state read from the log
        if any(r is not None and r.status == "rejected" for r in results):
            return [r if r is not None else Result("rolled_back") for r in results]
        return self._append_answered(uow, results, spans)

    def _try_group(
        self, uow: UnitOfWork, commands: Sequence[cmd.Command | Rejected]
    ) -> list[Result] | None:
        """Like ``--atomic``, except that a rejection takes only its own command out."""
        uow.prefetch_group([i for c in commands if not isinstance(c, Rejected) for i in _needed(c)])
        results, spans, decided_no = self._decide_each(uow, commands)
        if uow.speculative and decided_no:
            return None
        return self._append_answered(uow, results, spans)

    def _decide_each(
        self, uow: UnitOfWork, commands: Sequence[cmd.Command | Rejected]
    ) -> tuple[list[Result | None], list[tuple[int, int]], bool]:
        """Decides the commands in order into one unit of work, each on the state the ones
        before it left. A rejected or duplicate command leaves the unit of work as it was
        (``_decide``), so it does not touch the others. Returns each answer (``None``: to
        be appended), where each appended command's events start, and whether a decision
        ended in a rejection or a duplicate (on a guess, that must be decided again)."""
        results: list[Result | None] = []
        spans: list[tuple[int, int]] = []
        decided_no = False
        for item in commands:
            start = len(uow.events)
            if isinstance(item, Rejected):
                results.append(Result("rejected", error=item))
                continue
            try:
                self._decide(uow, item)
            except Duplicate:
                results.append(DUPLICATE)
            except Rejected as error:
                results.append(Result("rejected", error=error))
            else:
                results.append(None)
                spans.append((len(results) - 1, start))
                continue
            decided_no = True
        return results, spans, decided_no

    def _append_answered(
        self, uow: UnitOfWork, results: list[Result | None], spans: list[tuple[int, int]]
    ) -> list[Result] | None:
        """Appends the unit of work; each appended command answered with its last position
        (``None``: another writer got there first, decide again)."""
        try:
            positions = self._append(uow) if uow.events else []
        except IntegrityError:
            return None
        ends = [s for _, s in spans[1:]] + [len(uow.events)] * bool(spans)
        for (index, start), end in zip(spans, ends, strict=True):
            results[index] = Result("accepted", position=max(positions[start:end]))
        return [r if r is not None else DUPLICATE for r in results]

    def _settled(self, uow: UnitOfWork, attempt: Callable[[UnitOfWork], R]) -> R:
        """Runs one attempt; unless it committed, the cache drops what it changed."""
        committed = False
        try:
            result = attempt(uow)
            committed = uow.committed
            return result
        finally:
            if not committed:
                self.aggregates.forget(uow.spoiled())

    def _append(self, uow: UnitOfWork) -> list[int]:
        recordings = self.save(
            *uow.events,
            read_versions=uow.guarded_reads(),
            row_changes=changes_for(uow.events),
        )
        uow.committed = True
        self.aggregates.remember(uow.written_aggregates())
        return [r.notification.id for r in recordings]

    # --- deciding ---------------------------------------------------------------------

    def _decide(self, uow: UnitOfWork, command: cmd.Command) -> None:
        """Raises ``Duplicate`` or ``Rejected``, or records the command's events in ``uow``.

        Every check comes before the first event, so a rejection leaves the unit of
        work as it was (which ``--atomic`` relies on).
        """
        occurred = command.occurred(clock.now())
        uow.prefetch(_needed(command))
        fingerprint = command.fingerprints(self._derived(uow, command))
        key = None
        if command.idempotency_key is not None:
            key_id = ids.command_key_id("idempotency_key", command.idempotency_key)
            key = uow.get(key_id, CommandKey)
            if key is not None:
                key.check_same(fingerprint.forms, "idempotency_key")
                raise Duplicate
        before = len(uow.events)
        self._handlers[type(command)](uow, command, occurred, fingerprint)
        if command.idempotency_key is not None and len(uow.events) > before:
            claim = CommandKey._create(
                ev.CommandKeyClaimed,
                id=ids.command_key_id("idempotency_key", command.idempotency_key),
                namespace="idempotency_key",
                key=command.idempotency_key,
                command_type=getattr(command, "type", ""),
                fingerprint=fingerprint.canonical,
                occurred_at=occurred,
            )
            uow.record(claim)
        # provenance: every event the command records says where the command came from
        uow.events[before:] = [
            ev.with_provenance(event, command.provenance, command.idempotency_key)
            for event in uow.events[before:]
        ]

    @staticmethod
    def _derived(uow: UnitOfWork, command: cmd.Command) -> dict[str, Any]:
        """The values the ledger derives for the command's optional fields, as plain JSON
        values: given or not, they make the same command (the canonical fingerprint).

        Only state that was fixed before the command counts: the content's
        organization, and the customer, content, amount and currency of a started
        purchase (a failure that creates its purchase gives them, so they are its own).
        """
        if isinstance(command, cmd.CompletePurchase):
            content = uow.get(ids.content_id(str(command.content_id)), Content)
            return {"organization_id": content.organization_id} if content else {}
        if isinstance(command, cmd.FailPurchase):
            purchase = uow.get(ids.purchase_id(command.stripe_payment_intent_id), Purchase)
            if purchase is not None and purchase.started:
                return {
                    "customer_id": purchase.customer_id,
                    "content_id": purchase.content_id,
                    "amount_paid_cents": purchase.amount_paid_cents,
                    "currency": purchase.currency,
                }
        return {}

    # catalogue

    def _live_user(self, uow: UnitOfWork, user_id: str, field_name: str) -> User:
        user = uow.get(ids.user_id(user_id), User)
        if user is None or user.deleted:
            state = "was deleted" if user is not None else "is not registered"
            raise NotFound(f"user {user_id!r} {state}", field_name)
        return user

    def _live_content(
        self, uow: UnitOfWork, content_id: str, field_name: str = "content_id"
    ) -> Content:
        content = uow.get(ids.content_id(content_id), Content)
        if content is None or content.deleted:
            state = "was deleted" if content is not None else "is not published"
            raise NotFound(f"content {content_id} {state}", field_name)
        return content

    def _register_organization(
        self,
        uow: UnitOfWork,
        c: cmd.RegisterOrganization,
        occurred: str,
        fingerprint: cmd.Fingerprint,
    ) -> None:
        organization_id = str(c.organization_id)
        existing = uow.get(ids.organization_id(organization_id), Organization)
        if existing is not None:
            if fingerprint.matches(existing.fingerprint):
                raise Duplicate
            raise Conflict(
                f"organization {organization_id} is already registered with other details",
                "organization_id",
            )
        uow.record(
            Organization._create(
                ev.OrganizationRegistered,
                id=ids.organization_id(organization_id),
                organization_id=organization_id,
                name=c.name,
                fingerprint=fingerprint.canonical,
                occurred_at=occurred,
            )
        )

    def _register_user(
        self, uow: UnitOfWork, c: cmd.RegisterUser, occurred: str, _: cmd.Fingerprint
    ) -> None:
        existing = uow.get(ids.user_id(c.user_id), User)
        if existing is not None:
            if existing.deleted:
                raise InvalidState(
                    f"user {c.user_id!r} was deleted; a deleted user id cannot be registered again",
                    "user_id",
                )
            raise Duplicate
        uow.record(
            User._create(
                ev.UserRegistered,
                id=ids.user_id(c.user_id),
                user_id=c.user_id,
                occurred_at=occurred,
            )
        )

    def _delete_user(
        self, uow: UnitOfWork, c: cmd.DeleteUser, occurred: str, _: cmd.Fingerprint
    ) -> None:
        user = uow.get(ids.user_id(c.user_id), User)
        if user is None:
            raise NotFound(f"user {c.user_id!r} is not registered", "user_id")
        if user.deleted:
            raise Duplicate
        user.delete(occurred)
        uow.record(user)

    def _publish_content(
        self, uow: UnitOfWork, c: cmd.PublishContent, occurred: str, fingerprint: cmd.Fingerprint
    ) -> None:
        content_id = str(c.content_id)
        existing = uow.get(ids.content_id(content_id), Content)
        if existing is not None:
            if existing.deleted:
                raise InvalidState(
                    f"content {content_id} was deleted; its id cannot be published again",
                    "content_id",
                )
            if fingerprint.matches(existing.fingerprint):
                raise Duplicate
            raise Conflict(
                f"content {content_id} is already published with other details", "content_id"
            )
        organization_id = str(c.organization_id)
        if uow.get(ids.organization_id(organization_id), Organization) is None:
            raise NotFound(f"organization {organization_id} is not registered", "organization_id")
        self._live_user(uow, c.creator_id, "creator_id")
        uow.record(
            Content._create(
                ev.ContentPublished,
                id=ids.content_id(content_id),
                content_id=content_id,
                organization_id=organization_id,
                creator_id=c.creator_id,
                title=c.title,
                fingerprint=fingerprint.canonical,
                occurred_at=occurred,
            )
        )

    def _delete_content(
        self, uow: UnitOfWork, c: cmd.DeleteContent, occurred: str, _: cmd.Fingerprint
    ) -> None:
        content_id = str(c.content_id)
        content = uow.get(ids.content_id(content_id), Content)
        if content is None:
            raise NotFound(f"content {content_id} is not published", "content_id")
        if content.deleted:
            raise Duplicate
        if self._has_purchase_rows(uow, content_id):
            raise InvalidState(
                f"content {content_id} has purchases; purchases restrict its deletion",
                "content_id",
            )
        content.delete(occurred)
        uow.record(content)

    def _has_purchase_rows(self, uow: UnitOfWork, content_id: str) -> bool:
        """Whether a purchases row of this content exists (the RESTRICT rule).

        Read from the projection, which is consistent with the log (inline); in a
        batch, this batch's own purchases count too. The foreign key is the backstop
        against a purchase committed meanwhile: it fails the append, and the retry
        decides again.
        """
        for event in uow.events:
            if (
                isinstance(event, ev.PurchaseStarted | ev.PurchaseCompleted | ev.PurchaseFailed)
                and event.content_id == content_id
            ):
                return True
        query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE content_id = %s)").format(
            sql.Identifier(self.settings.schema, "purchases")
        )
        with self.recorder.datastore.get_connection() as conn:  # type: ignore[attr-defined]
            row = conn.execute(query, (content_id,)).fetchone()
        return bool(row and (row["exists"] if isinstance(row, dict) else row[0]))

    # purchases

    def _purchase(self, uow: UnitOfWork, payment_intent: str) -> Purchase | None:
        return uow.get(ids.purchase_id(payment_intent), Purchase)

    @staticmethod
    def _check_repeat(
        purchase: Purchase | None, command_type: str, fingerprint: cmd.Fingerprint
    ) -> None:
        if purchase is None or command_type not in purchase.fingerprints:
            return
        if fingerprint.matches(purchase.fingerprints[command_type]):
            raise Duplicate
        raise Conflict(
            f"{command_type} for {purchase.stripe_payment_intent_id} was already recorded "
            "with a different payload",
            "stripe_payment_intent_id",
        )

    @staticmethod
    def _check_same_purchase(
        purchase: Purchase, customer_id: str, content_id: str, amount: int, currency: str
    ) -> None:
        for name, recorded, given in (
            ("customer_id", purchase.customer_id, customer_id),
            ("content_id", purchase.content_id, content_id),
            ("amount_paid_cents", purchase.amount_paid_cents, amount),
            ("currency", purchase.currency, currency),
        ):
            if recorded != given:
                raise InvalidState(
                    f"{name} {given!r} differs from the {recorded!r} recorded for "
                    f"{purchase.stripe_payment_intent_id}",
                    name,
                )

    def _open_purchase(self, payment_intent: str, occurred: str) -> Purchase:
        return Purchase._create(
            ev.PurchaseOpened,
            id=ids.purchase_id(payment_intent),
            stripe_payment_intent_id=payment_intent,
            occurred_at=occurred,
        )

    def _start_purchase(
        self, uow: UnitOfWork, c: cmd.StartPurchase, occurred: str, fingerprint: cmd.Fingerprint
    ) -> None:
        purchase = self._purchase(uow, c.stripe_payment_intent_id)
        self._check_repeat(purchase, c.type, fingerprint)
        if purchase is not None:
            raise InvalidState(
                f"purchase {c.stripe_payment_intent_id} is already {purchase.status}",
                "stripe_payment_intent_id",
            )
        self._live_user(uow, c.customer_id, "customer_id")
        content = self._live_content(uow, str(c.content_id))
        purchase = self._open_purchase(c.stripe_payment_intent_id, occurred)
        purchase.trigger_event(
            ev.PurchaseStarted,
            stripe_payment_intent_id=c.stripe_payment_intent_id,
            customer_id=c.customer_id,
            content_id=content.content_id,
            organization_id=content.organization_id,
            amount_paid_cents=c.amount_paid_cents,
            currency=c.currency,
            fingerprint=fingerprint.canonical,
            occurred_at=occurred,
        )
        uow.record(purchase)

    def _complete_purchase(
        self,
        uow: UnitOfWork,
        c: cmd.CompletePurchase,
        occurred: str,
        fingerprint: cmd.Fingerprint,
    ) -> None:
        purchase = self._purchase(uow, c.stripe_payment_intent_id)
        self._check_repeat(purchase, c.type, fingerprint)
        content_id = str(c.content_id)
        if purchase is not None:
            if purchase.status not in ("pending", "failed"):
                raise InvalidState(
                    f"purchase {c.stripe_payment_intent_id} is already {purchase.status}",
                    "stripe_payment_intent_id",
                )
            self._check_same_purchase(
                purchase, c.customer_id, content_id, c.amount_paid_cents, c.currency
            )
            purchase.check_follows(occurred)
        self._live_user(uow, c.customer_id, "customer_id")
        content = self._live_content(uow, content_id)
        if c.organization_id is not None and str(c.organization_id) != content.organization_id:
            raise InvalidState(
                f"organization_id {c.organization_id} is not the organization of content "
                f"{content_id} ({content.organization_id})",
                "organization_id",
            )
        access_id = ids.access_id(c.customer_id, content_id)
        access = uow.get(access_id, Access)
        if purchase is None:
            purchase = self._open_purchase(c.stripe_payment_intent_id, occurred)
        purchase.trigger_event(
            ev.PurchaseCompleted,
            stripe_payment_intent_id=c.stripe_payment_intent_id,
            customer_id=c.customer_id,
            content_id=content_id,
            organization_id=content.organization_id,
            creator_id=content.creator_id,
            amount_paid_cents=c.amount_paid_cents,
            currency=c.currency,
            platform_fee_cents=c.platform_fee_cents,
            organization_fee_cents=c.organization_fee_cents,
            creator_payout_cents=c.creator_payout_cents,
            revenue_split_config_id=(
                str(c.revenue_split_config_id) if c.revenue_split_config_id else None
            ),
            fingerprint=fingerprint.canonical,
            occurred_at=occurred,
        )
        uow.record(purchase)
        if access is None:
            access = Access._create(
                ev.AccessOpened,
                id=access_id,
                user_id=c.customer_id,
                content_id=content_id,
                occurred_at=occurred,
            )
        access.grant_purchase(
            content.organization_id,
            c.stripe_payment_intent_id,
            self._last_heartbeat(uow, c.customer_id, content_id),
            occurred,
        )
        uow.record(access)

    def _fail_purchase(
        self, uow: UnitOfWork, c: cmd.FailPurchase, occurred: str, fingerprint: cmd.Fingerprint
    ) -> None:
        purchase = self._purchase(uow, c.stripe_payment_intent_id)
        self._check_repeat(purchase, c.type, fingerprint)
        given = (c.customer_id, c.content_id, c.amount_paid_cents, c.currency)
        if purchase is not None:
            if purchase.status != "pending":
                raise InvalidState(
                    f"purchase {c.stripe_payment_intent_id} is {purchase.status}; "
                    "only a pending purchase can fail",
                    "stripe_payment_intent_id",
                )
            self._check_same_purchase(
                purchase,
                c.customer_id if c.customer_id is not None else purchase.customer_id,
                str(c.content_id) if c.content_id is not None else purchase.content_id,
                c.amount_paid_cents
                if c.amount_paid_cents is not None
                else purchase.amount_paid_cents,
                c.currency if c.currency is not None else purchase.currency,
            )
            purchase.check_follows(occurred)
            # the purchases row is gone with a deleted customer: nothing left to fail
            self._live_user(uow, purchase.customer_id, "customer_id")
            self._live_content(uow, purchase.content_id)
            customer_id, content_id = purchase.customer_id, purchase.content_id
            amount, currency = purchase.amount_paid_cents, purchase.currency
            organization_id = purchase.organization_id
        else:
            if (
                c.customer_id is None
                or c.content_id is None
                or c.amount_paid_cents is None
                or c.currency is None
            ):
                missing = [
                    n
                    for n, v in zip(
                        ("customer_id", "content_id", "amount_paid_cents", "currency"),
                        given,
                        strict=True,
                    )
                    if v is None
                ]
                raise NotFound(
                    f"purchase {c.stripe_payment_intent_id} was never started; to record its "
                    f"failure give {', '.join(missing)}",
                    "stripe_payment_intent_id",
                )
            self._live_user(uow, c.customer_id, "customer_id")
            content = self._live_content(uow, str(c.content_id))
            customer_id, content_id = c.customer_id, content.content_id
            amount, currency = c.amount_paid_cents, c.currency
            organization_id = content.organization_id
            purchase = self._open_purchase(c.stripe_payment_intent_id, occurred)
        purchase.trigger_event(
            ev.PurchaseFailed,
            stripe_payment_intent_id=c.stripe_payment_intent_id,
            customer_id=customer_id,
            content_id=content_id,
            organization_id=organization_id,
            amount_paid_cents=amount,
            currency=currency,
            fingerprint=fingerprint.canonical,
            occurred_at=occurred,
        )
        uow.record(purchase)

    def _refund_purchase(
        self, uow: UnitOfWork, c: cmd.RefundPurchase, occurred: str, fingerprint: cmd.Fingerprint
    ) -> None:
        key_id = ids.command_key_id("refund_id", c.refund_id)
        key = uow.get(key_id, CommandKey)
        if key is not None:
            key.check_same(fingerprint.forms, "refund_id")
            raise Duplicate
        purchase = self._purchase(uow, c.stripe_payment_intent_id)
        if purchase is None or purchase.status is None:
            raise NotFound(
                f"purchase {c.stripe_payment_intent_id} is not recorded", "stripe_payment_intent_id"
            )
        access = None
        if c.amount_cents == purchase.refundable_cents:
            access = uow.get(ids.access_id(purchase.customer_id, purchase.content_id), Access)
        purchase.refund(c.refund_id, c.amount_cents, c.reason, occurred)  # checks, then acts
        uow.record(purchase)
        uow.record(
            CommandKey._create(
                ev.CommandKeyClaimed,
                id=key_id,
                namespace="refund_id",
                key=c.refund_id,
                command_type=c.type,
                fingerprint=fingerprint.canonical,
                occurred_at=occurred,
            )
        )
        if access is not None and purchase.status == "refunded":
            access.purchase_refunded(c.stripe_payment_intent_id, occurred)
            uow.record(access)

    # access and playback

    @staticmethod
    def _last_heartbeat(uow: UnitOfWork, user_id: str, content_id: str) -> str | None:
        """The heartbeat the (user, content) playback row shows: the access row's
        ``last_accessed_at`` when it stamped the present row."""
        playback = uow.get(ids.playback_id(user_id, content_id), Playback)
        return playback.shown_at if playback is not None else None

    def _grant_access(
        self, uow: UnitOfWork, c: cmd.GrantAccess, occurred: str, _: cmd.Fingerprint
    ) -> None:
        self._live_user(uow, c.user_id, "user_id")
        content = self._live_content(uow, str(c.content_id))
        access_id = ids.access_id(c.user_id, content.content_id)
        access = uow.get(access_id, Access)
        identity = c.identity(occurred)
        if access is not None and identity in access.seen:
            raise Duplicate
        expires_at = clock.canonical(c.expires_at) if c.expires_at is not None else None
        if access is None:
            access = Access._create(
                ev.AccessOpened,
                id=access_id,
                user_id=c.user_id,
                content_id=content.content_id,
                occurred_at=occurred,
            )
        access.grant(
            content.organization_id,
            c.access_type,
            expires_at,
            identity,
            self._last_heartbeat(uow, c.user_id, content.content_id),
            occurred,
        )
        uow.record(access)

    def _revoke_access(
        self, uow: UnitOfWork, c: cmd.RevokeAccess, occurred: str, _: cmd.Fingerprint
    ) -> None:
        self._live_user(uow, c.user_id, "user_id")
        content = self._live_content(uow, str(c.content_id))
        access = uow.get(ids.access_id(c.user_id, content.content_id), Access)
        if access is None:
            raise NotFound(
                f"{c.user_id!r} has no access to content {content.content_id} to revoke",
                "content_id",
            )
        identity = c.identity(occurred)
        if identity in access.seen or not access.present:
            raise Duplicate  # redelivered, or the row is already gone: nothing to change
        access.revoke(c.reason, identity, occurred)
        uow.record(access)

    def _record_playback(
        self, uow: UnitOfWork, c: cmd.RecordPlayback, occurred: str, _: cmd.Fingerprint
    ) -> None:
        self._live_user(uow, c.user_id, "user_id")
        content = self._live_content(uow, str(c.content_id))
        playback_id = ids.playback_id(c.user_id, content.content_id)
        playback = uow.get(playback_id, Playback)
        identity = c.identity(occurred)
        if playback is not None and identity in playback.seen:
            raise Duplicate  # recorded already: a replay is a duplicate, access or not
        access = uow.get(ids.access_id(c.user_id, content.content_id), Access)
        if access is None:
            raise NoAccess(f"{c.user_id!r} has no access to content {content.content_id}")
        access.check_playable(occurred)
        if playback is None:
            playback = Playback._create(
                ev.PlaybackOpened,
                id=playback_id,
                user_id=c.user_id,
                content_id=content.content_id,
                occurred_at=occurred,
            )
        playback.progress(
            c.position_seconds, c.duration_seconds, identity, access.changed_at, occurred
        )
        uow.record(playback)


def _needed(command: cmd.Command) -> list[UUID]:
    """The aggregates a command's decision reads, to load them in one query."""
    needed: list[UUID] = []
    if command.idempotency_key is not None:
        needed.append(ids.command_key_id("idempotency_key", command.idempotency_key))
    if isinstance(command, cmd.RegisterOrganization):
        needed.append(ids.organization_id(str(command.organization_id)))
    elif isinstance(command, cmd.RegisterUser | cmd.DeleteUser):
        needed.append(ids.user_id(command.user_id))
    elif isinstance(command, cmd.PublishContent):
        needed += [
            ids.content_id(str(command.content_id)),
            ids.organization_id(str(command.organization_id)),
            ids.user_id(command.creator_id),
        ]
    elif isinstance(command, cmd.DeleteContent):
        needed.append(ids.content_id(str(command.content_id)))
    elif isinstance(command, cmd.StartPurchase | cmd.CompletePurchase):
        content = str(command.content_id)
        needed += [
            ids.purchase_id(command.stripe_payment_intent_id),
            ids.user_id(command.customer_id),
            ids.content_id(content),
            ids.access_id(command.customer_id, content),
        ]
        if isinstance(command, cmd.CompletePurchase):
            needed.append(ids.playback_id(command.customer_id, content))
    elif isinstance(command, cmd.FailPurchase):
        needed.append(ids.purchase_id(command.stripe_payment_intent_id))
    elif isinstance(command, cmd.RefundPurchase):
        needed += [
            ids.command_key_id("refund_id", command.refund_id),
            ids.purchase_id(command.stripe_payment_intent_id),
        ]
    elif isinstance(command, cmd.GrantAccess | cmd.RevokeAccess | cmd.RecordPlayback):
        content = str(command.content_id)
        needed += [
            ids.user_id(command.user_id),
            ids.content_id(content),
            ids.access_id(command.user_id, content),
        ]
        if isinstance(command, cmd.RecordPlayback | cmd.GrantAccess):
            needed.append(ids.playback_id(command.user_id, content))
    return needed
