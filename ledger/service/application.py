"""The application service: commands in, events and projected rows out.

Each command is decided against aggregates loaded from the log, then its events and
the rows they change are appended in one transaction (``LedgerRecorder``). Two
writers deciding on the same aggregate at once are resolved optimistically: the
log's primary key lets one append win; the other is reloaded and decided again,
never lost and never doubled. Aggregates a decision only read are re-checked inside
the append's transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TypeVar, cast
from uuid import UUID

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.persistence import IntegrityError

from ledger.commands.access import RecordPlayback
from ledger.commands.base import Command
from ledger.commands.results import DUPLICATE, Result
from ledger.config import Settings
from ledger.domain import clock
from ledger.domain import events as ev
from ledger.domain.errors import Duplicate, Rejected
from ledger.log.recorder import environment
from ledger.playback.memory import MemoryPlayback
from ledger.playback.store import PlaybackStore
from ledger.privacy import older
from ledger.privacy.subjects import SubjectErased, Subjects, SubjectStore, resolve, subjects_in
from ledger.service import (
    atomic_heartbeats,
    chains,
    command_keys,
    departures,
    facts,
    pseudonyms,
    registry,
)
from ledger.service import playback_lookups as lookups
from ledger.service.cache import AggregateCache, DecisionStore
from ledger.service.group_commit import GroupFailed
from ledger.service.lanes import Lanes
from ledger.service.partition import by_organization
from ledger.service.unit_of_work import UnitOfWork

MAX_ATTEMPTS = 20
GROUP_ATTEMPTS = 2
"""Attempts of a group as one transaction (the first on the cache) before each of its
commands is committed alone."""
R = TypeVar("R")


class Ledger(Application[UUID]):
    """The ledger's write side. ``name`` makes the library's table ``ledger_events``."""

    name = "Ledger"

    def __init__(
        self,
        settings: Settings,
        pool_size: int = 2,
        *,
        env: Mapping[str, str] | None = None,
        per_organization: bool = False,
    ) -> None:
        """``env``: the library's persistence settings, by default PostgreSQL at
        ``settings`` (``ledger.log.recorder.environment``); ``ledger.service.memory`` gives
        one in memory. ``per_organization``: group commit groups per organization (on a
        distributed layout, docs/scaling.md)."""
        self.settings = settings
        super().__init__(env=dict(env) if env is not None else environment(settings, pool_size))
        self.store = cast(DecisionStore, self.recorder)
        self.aggregates = AggregateCache(self.store, self.mapper)
        self.subjects = Subjects(cast(SubjectStore, self.recorder))
        # one decision at a time: the aggregate cache lends its aggregates uncopied
        self.deciding = threading.RLock()
        self.playback: PlaybackStore | MemoryPlayback
        not_live = partial(lookups.not_live, self.repository, self.subjects)
        log_key = partial(lookups.log_key, self.repository)
        legacy = partial(lookups.legacy, self.repository)
        rows = getattr(self.recorder, "rows", None)
        if rows is not None:  # the memory recorder (ledger.service.memory)
            self.playback = MemoryPlayback(
                lambda: rows, not_live, log_key, legacy, threading.RLock()
            )
        else:
            pool = self.recorder.datastore.pool  # type: ignore[attr-defined]
            self.playback = PlaybackStore(pool, settings.schema, not_live, log_key, legacy)
        self.per_organization = per_organization  # a deletion in parts (service/departures.py)
        partition = by_organization(self.aggregates) if per_organization else None
        self.groups = Lanes(self.execute_group, self.playback.record, settings, partition)

    # --- public API --------------------------------------------------------------

    def close(self) -> None:
        """Answers every caller still queued for a group commit, then closes the pool."""
        self.groups.close()
        super().close()

    def execute(self, command: Command) -> Result:
        """Decides and appends one command in its own transaction."""
        return self.execute_batch([command], atomic=False)[0]

    def execute_batch(
        self, commands: Sequence[Command | Rejected], *, atomic: bool
    ) -> list[Result]:
        """Each command in its own transaction, or (``atomic``) all in one.

        An item that is already a ``Rejected`` (a line that did not parse) is answered
        as such. In atomic mode any rejection writes nothing, and the lines that were
        fine are answered ``rolled_back``.
        """
        if not atomic:
            return self._in_runs(
                commands,
                lambda run: [
                    Result("rejected", error=i) if isinstance(i, Rejected) else self._one(i)
                    for i in run
                ],
            )
        # --atomic: the heartbeats are checked first (on the state before the batch; one
        # whose user a money command of the batch names is decided after it), then
        # the money commands commit in one transaction, then the heartbeats are recorded in
        # one transaction of the playback store (docs/cli.md)
        refused = atomic_heartbeats.refused(self.playback, commands)
        if refused is not None:
            return refused
        money = [c for c in commands if not isinstance(c, RecordPlayback)]
        with self.deciding:
            answered = self._atomic(money) if money else []
        settled = iter(older.answered(self.recorder, self.settings.schema, money, answered))
        results = [None if isinstance(c, RecordPlayback) else next(settled) for c in commands]
        if any(r is not None and r.status in ("rejected", "rolled_back") for r in results):
            return [r if r is not None else Result("rolled_back") for r in results]
        heartbeats = [c for c in commands if isinstance(c, RecordPlayback)]
        recorded = iter(self.playback.record(heartbeats) if heartbeats else [])
        return [r if r is not None else next(recorded) for r in results]

    def execute_group(self, commands: Sequence[Command | Rejected]) -> list[Result]:
        """Each command decided alone, in order, on the state the ones before it left, and
        all of them written in one transaction (group commit, ``ledger.service.group_commit``).

        The answers are those of ``execute_batch(atomic=False)``: a rejection or a
        duplicate changes nothing and takes only its own command out; a group the log
        refuses twice (a lost race with another process, a constraint) falls back to one
        transaction per command. Any other error (a lost connection, ``LockTimeout``)
        leaves the whole group, and nothing of it may be assumed written or not; in the
        fallback, it stops at the command that met it (``GroupFailed``).
        Heartbeats go to the playback store, in order between the runs of money commands.
        """
        return self._in_runs(commands, self._money_group)

    def _money_group(self, commands: Sequence[Command | Rejected]) -> list[Result]:
        with self.deciding:
            for number in range(GROUP_ATTEMPTS):
                uow = UnitOfWork(self.aggregates, self.store, speculative=number == 0)
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

    # --- the playback store ------------------------------------------------------------

    def _in_runs(
        self,
        commands: Sequence[Command | Rejected],
        money: Callable[[Sequence[Command | Rejected]], list[Result]],
    ) -> list[Result]:
        """The commands in runs of one kind, in order: money ones by ``money`` (under the
        deciding lock), heartbeats by the playback store (never under it)."""
        results: list[Result] = []
        start = 0
        while start < len(commands):
            kind = isinstance(commands[start], RecordPlayback)
            end = start
            while end < len(commands) and isinstance(commands[end], RecordPlayback) == kind:
                end += 1
            run = commands[start:end]
            if kind:
                results += self.playback.record([c for c in run if isinstance(c, RecordPlayback)])
            else:
                with self.deciding:
                    departures.before(self, run)
                    answered = money(run)
                results += older.answered(self.recorder, self.settings.schema, run, answered)
            start = end
        return results

    # --- transactions --------------------------------------------------------------

    def _one(self, command: Command) -> Result:
        return self._retrying(lambda uow: self._try_one(uow, command))

    def _try_one(self, uow: UnitOfWork, command: Command) -> Result | None:
        """The command's result, or ``None`` to decide again."""
        self._route(uow, [command])
        try:
            self._decide(uow, command)
        except Duplicate:
            return None if uow.speculative else DUPLICATE
        except Rejected as error:
            return None if uow.speculative else Result("rejected", error=error)
        try:
            positions = self._append(uow)
        except IntegrityError as error:
            uow.conflict = error
            return None  # another writer got there first: decide again on fresh state
        return Result("accepted", position=max(positions))

    def _atomic(self, commands: Sequence[Command | Rejected]) -> list[Result]:
        return self._retrying(lambda uow: self._try_atomic(uow, commands))

    def _retrying(self, attempt: Callable[[UnitOfWork], R | None]) -> R:
        """Attempts until one answers (``None``: decide again): the first on the cache.

        Giving up names the last refusal as its cause: a conflict that never clears is a
        constraint the log's guard does not explain, and the operator needs its name."""
        conflict: IntegrityError | None = None
        for number in range(MAX_ATTEMPTS):
            uow = UnitOfWork(self.aggregates, self.store, speculative=number == 0)
            result = self._settled(uow, attempt)
            if result is not None:
                return result
            conflict = uow.conflict or conflict
        raise RuntimeError(f"gave up after {MAX_ATTEMPTS} concurrent conflicts") from conflict

    def _try_atomic(
        self, uow: UnitOfWork, commands: Sequence[Command | Rejected]
    ) -> list[Result] | None:
        deciding = [c for c in commands if not isinstance(c, Rejected)]
        self._route(uow, deciding)
        pseudonyms.warm(uow, self.subjects, deciding)
        command_keys.warm(uow, self.playback.keys_of, deciding)
        results, spans, decided_no = self._decide_each(uow, commands)
        if uow.speculative and decided_no:
            return None  # a rejection or a duplicate: decide again on state read from the log
        if any(r is not None and r.status == "rejected" for r in results):
            return [r if r is not None else Result("rolled_back") for r in results]
        return self._append_answered(uow, results, spans)

    def _try_group(
        self, uow: UnitOfWork, commands: Sequence[Command | Rejected]
    ) -> list[Result] | None:
        """Like ``--atomic``, except that a rejection takes only its own command out."""
        deciding = [c for c in commands if not isinstance(c, Rejected)]
        self._route(uow, deciding)
        pseudonyms.warm(uow, self.subjects, deciding)
        command_keys.warm(uow, self.playback.keys_of, deciding)
        persons = [v for c in deciding for v in pseudonyms.people(c).values()]
        needs = [i for c in deciding for i in registry.needed(c)]
        uow.prefetch_group(facts.needed(uow, persons, needs))
        results, spans, decided_no = self._decide_each(uow, commands)
        if uow.speculative and decided_no:
            return None
        return self._append_answered(uow, results, spans)

    def _decide_each(
        self, uow: UnitOfWork, commands: Sequence[Command | Rejected]
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
        except IntegrityError as error:
            uow.conflict = error
            return None
        ends = [s for _, s in spans[1:]] + [len(uow.events)] * bool(spans)
        for (index, start), end in zip(spans, ends, strict=True):
            results[index] = Result("accepted", position=max(positions[start:end]))
        return [r if r is not None else DUPLICATE for r in results]

    def _route(self, uow: UnitOfWork, commands: Sequence[Command]) -> None:
        """On a distributed layout, where the decision reads its aggregates (all of them,
        a batch or a group: ``chains.route``); elsewhere, or unknown, the whole log. On a
        distributed log, ``facts.ON_FACTS`` without the platform's chain, people as facts."""
        if self.per_organization:
            distributed = getattr(self.recorder, "is_distributed", bool)  # memory: never
            on_facts = facts.on_facts(commands) and bool(distributed())
            kept = on_facts and facts.platform_kept(self.recorder)  # before the chains
            uow.route = chains.route(self.aggregates, commands, platform=not on_facts or kept)
            if on_facts and uow.route is not None:
                uow.facts = self.recorder.people_of  # type: ignore[attr-defined]

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
        # the library's ``save`` would first test each event against its runtime-checkable
        # protocols, a tenth of a group's time in Python: the events are known to be events
        processing: ProcessingEvent[UUID] = ProcessingEvent()
        processing.events.extend(uow.events)
        changes = chains.row_changes(uow)  # a revocation's guard, a deletion's organization
        named = subjects_in(changes)
        if named:  # the projected tables name people by their ids (docs/privacy.md)
            names = {s: u for s, u in uow.named.items() if s in named}
            rest = named - names.keys()
            changes = resolve(changes, {**names, **self.subjects.users_of(rest)} if rest else names)
        processing.saved_kwargs.update(
            read_versions=uow.guarded_reads(),
            row_changes=changes,
            subject_changes=uow.subject_changes,
            organizations=uow.chains,
            read_chains=uow.route.reads() if uow.route is not None else None,
        )
        recordings = self._record(processing)
        self._notify(recordings)
        uow.committed = True
        if uow.subject_changes:
            self.subjects.remember(uow.added.items())
            gone = [c for c in uow.subject_changes if isinstance(c, SubjectErased)]
            self.subjects.forget([c.subject for c in gone])
            if gone and isinstance(self.playback, MemoryPlayback):
                # the SQL store's records went in the append's transaction
                self.playback.forget([c.user_id for c in gone])
        self.aggregates.remember(uow.written_aggregates())
        return [r.notification.id for r in recordings]

    # --- deciding ---------------------------------------------------------------------

    def _decide(self, uow: UnitOfWork, command: Command) -> None:
        """Raises ``Duplicate`` or ``Rejected``, or records the command's events in ``uow``.

        Every check comes before the first event, so a rejection leaves the unit of
        work as it was (which ``--atomic`` relies on).
        """
        occurred = command.occurred(clock.now())
        command, named = pseudonyms.pseudonymous(uow, self.subjects, command)
        uow.named.update(named)
        try:
            self._decide_as(uow, command, occurred, named)
        except Rejected as error:
            raise pseudonyms.renamed(error, named) from None

    def _decide_as(
        self, uow: UnitOfWork, command: Command, occurred: str, named: Mapping[str, str]
    ) -> None:
        """``_decide`` of a command whose people are their subjects."""
        uow.prefetch(facts.needed(uow, named, registry.needed(command)))
        fingerprint = command.fingerprints(registry.derived(uow, command))
        command_keys.check(uow, self.playback.keys_of, command, fingerprint.forms)
        before = len(uow.events)
        registry.registration(command).handler(uow, command, occurred, fingerprint)
        pseudonyms.settle(uow, command, named, len(uow.events) > before)
        if len(uow.events) > before:
            command_keys.claim(uow, command, fingerprint.canonical, occurred)
        # provenance: every event the command records says where the command came from
        uow.events[before:] = [
            ev.with_provenance(event, command.provenance, command.idempotency_key)
            for event in uow.events[before:]
        ]
        chains.assign(uow, command, before)
