"""The application service: commands in, events and projected rows out.

Each command is decided against aggregates loaded from the log, then its events and
the rows they change are appended in one transaction (``LedgerRecorder``). Two
writers deciding on the same aggregate at once are resolved optimistically: the
log's primary key lets one append win; the other is reloaded and decided again,
never lost and never doubled. Aggregates a decision only read are re-checked inside
the append's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar, cast
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError

from ledger import commands as cmd
from ledger.config import Settings
from ledger.domain import clock, ids
from ledger.domain import events as ev
from ledger.domain.aggregates import CommandKey
from ledger.domain.errors import Duplicate, Rejected
from ledger.results import DUPLICATE, Result
from ledger.service import registry
from ledger.service.cache import AggregateCache, DecisionStore
from ledger.service.unit_of_work import UnitOfWork
from ledger.store import environment
from projections.registry import changes_for

MAX_ATTEMPTS = 20
R = TypeVar("R")


class Ledger(Application[UUID]):
    """The ledger's write side. ``name`` makes the library's table ``ledger_events``."""

    name = "Ledger"

    def __init__(
        self, settings: Settings, pool_size: int = 2, *, env: Mapping[str, str] | None = None
    ) -> None:
        """``env``: the library's persistence settings, by default PostgreSQL at
        ``settings`` (``ledger.store.environment``); ``ledger.memory`` gives one in memory."""
        self.settings = settings
        super().__init__(env=dict(env) if env is not None else environment(settings, pool_size))
        self.store = cast(DecisionStore, self.recorder)
        self.aggregates = AggregateCache(self.store, self.mapper)

    # --- public API --------------------------------------------------------------

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
        if not atomic:
            return [
                Result("rejected", error=item) if isinstance(item, Rejected) else self._one(item)
                for item in commands
            ]
        return self._atomic(commands)

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
            uow = UnitOfWork(self.aggregates, self.store, speculative=number == 0)
            result = self._settled(uow, attempt)
            if result is not None:
                return result
        raise RuntimeError(f"gave up after {MAX_ATTEMPTS} concurrent conflicts")

    def _try_atomic(
        self, uow: UnitOfWork, commands: Sequence[cmd.Command | Rejected]
    ) -> list[Result] | None:
        results: list[Result | None] = []
        spans: list[tuple[int, int]] = []
        for item in commands:
            start = len(uow.events)
            if isinstance(item, Rejected):
                results.append(Result("rejected", error=item))
                continue
            try:
                self._decide(uow, item)
            except Duplicate:
                results.append(DUPLICATE)
                continue
            except Rejected as error:
                results.append(Result("rejected", error=error))
                continue
            results.append(None)
            spans.append((len(results) - 1, start))
        if uow.speculative and any(r is not None for r in results):
            return None  # a rejection or a duplicate: decide again on state read from the log
        if any(r is not None and r.status == "rejected" for r in results):
            return [r if r is not None else Result("rolled_back") for r in results]
        try:
            positions = self._append(uow) if uow.events else []
        except IntegrityError:
            return None
        ends = [s for _, s in spans[1:]] + [len(uow.events)]
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
        uow.prefetch(registry.needed(command))
        fingerprint = command.fingerprints(registry.derived(uow, command))
        key = None
        if command.idempotency_key is not None:
            key_id = ids.command_key_id("idempotency_key", command.idempotency_key)
            key = uow.get(key_id, CommandKey)
            if key is not None:
                key.check_same(fingerprint.forms, "idempotency_key")
                raise Duplicate
        before = len(uow.events)
        registry.registration(command).handler(uow, command, occurred, fingerprint)
        if command.idempotency_key is not None and len(uow.events) > before:
            claim = CommandKey.claim(
                "idempotency_key",
                command.idempotency_key,
                getattr(command, "type", ""),
                fingerprint.canonical,
                occurred,
            )
            uow.record(claim)
        # provenance: every event the command records says where the command came from
        uow.events[before:] = [
            ev.with_provenance(event, command.provenance, command.idempotency_key)
            for event in uow.events[before:]
        ]
