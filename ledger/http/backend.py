"""The service's side of the ledger: appends off the event loop, and reads on a small
pool of autocommit connections.

An append is blocking work (decide, then commit to PostgreSQL), so it runs off the event
loop while the loop keeps accepting and answering. Single commands all go to one opened
ledger's group commit, which lets concurrent requests share one transaction: the loop
queues them and one thread hands them over together (``ledger.http.feed``). A batch, a
run of commands in order, goes to a ledger of its own in a worker thread, as a ``ledger
append`` process would. Reads never touch the write side's pools.

Every database failure is turned into a ``ServiceError`` here: the client sees
``unavailable`` (503, ``Retry-After``) for a connection or lock problem, whichever
library reports it (psycopg, its pool, the ``eventsourcing`` datastore's own
``OperationalError`` and ``InterfaceError``), and a fixed ``internal_error`` message for
anything else, never the database's text. Both pools check a connection that has been
idle before handing it out (``ledger.datastore.CheckIdle``), so after a restart or a
failover the service carries on by itself: a dead connection is replaced, not used.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import anyio.to_thread
import psycopg
from anyio import CapacityLimiter
from eventsourcing.persistence import InterfaceError as LibraryInterfaceError
from eventsourcing.persistence import OperationalError as LibraryOperationalError
from eventsourcing.persistence import PersistenceError
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from ledger import api
from ledger.commands.access import RecordPlayback
from ledger.commands.base import Command
from ledger.commands.results import Result
from ledger.config import Settings
from ledger.database.connections import conninfo
from ledger.domain.errors import Rejected
from ledger.errors import ConfigurationError
from ledger.http import tenancy
from ledger.http.answers import Overloaded, ServiceError, Unavailable
from ledger.http.config import HttpConfig
from ledger.http.feed import Feed
from ledger.http.metrics import Metrics
from ledger.http.redaction import described, summary
from ledger.log.datastore import CheckIdle
from ledger.log.recorder import LockTimeout
from ledger.playback.decide import Heartbeat
from ledger.service import Ledger
from ledger.service.group_commit import GroupAbandoned, LedgerClosed
from ledger.service.group_commit import Overloaded as QueueFull

T = TypeVar("T")
log = logging.getLogger("ledger.http")


class Writers:
    """The ledgers that batches are appended on, each used by one thread at a time: a
    batch is a run of commands in order, as one ``ledger append`` process appends it."""

    def __init__(self, ledgers: Sequence[Ledger]) -> None:
        self.ledgers = list(ledgers)
        self._locks = [threading.Lock() for _ in ledgers]
        self._next = itertools.count()

    @contextmanager
    def slot(self) -> Iterator[Ledger]:
        index = next(self._next) % len(self.ledgers)
        with self._locks[index]:
            yield self.ledgers[index]


class Backend:
    def __init__(
        self,
        settings: Settings,
        config: HttpConfig,
        metrics: Metrics,
        shared: Ledger,
        batches: Writers,
    ) -> None:
        self.settings = settings
        self.config = config
        self.metrics = metrics
        self._shared = shared
        self._feed = Feed(lambda commands: api.append_parsed(shared, commands), settings.queue_max)
        self._batches = batches
        self._write_limiter = CapacityLimiter(config.max_in_flight)
        self._read_limiter = CapacityLimiter(config.read_pool_size)
        checked = CheckIdle()
        self._reads = ConnectionPool(
            conninfo(settings.url),
            min_size=1,
            max_size=config.read_pool_size,
            kwargs={"autocommit": True},
            configure=self._configure,
            check=checked.check,
            reset=checked.reset,
            open=False,
            timeout=5.0,
        )

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.settings.schema)))

    @classmethod
    def open(cls, settings: Settings, config: HttpConfig, metrics: Metrics) -> Backend:
        """Opens the ledgers (``ConfigurationError`` when the database is not ready).

        Single commands go to one ledger's group commit, which shares one transaction
        among the requests waiting and answers ``Overloaded`` when its queue is full. A
        batch is a run of commands in order on a ledger of its own (``LEDGER_HTTP_WRITERS``
        of them)."""
        shared = api.open_ledger(settings)
        api.observe_groups(shared, metrics.group_committed)
        batches = Writers([api.open_ledger(settings) for _ in range(config.writers)])
        backend = cls(settings, config, metrics, shared, batches)
        backend._reads.open(wait=False)
        if any(token.organization for token in config.tokens):
            try:
                with backend._reads.connection() as conn:
                    tenancy.check_role(conn, config.tenant_role)
            except BaseException:
                backend.close()
                raise
        return backend

    def close(self) -> None:
        self._reads.close()
        self._feed.close()
        for ledger in dict.fromkeys([self._shared, *self._batches.ledgers]):
            ledger.close()

    # --- appends -----------------------------------------------------------------------

    async def submit(self, command: Command) -> Result:
        """One command (made by ``parse_command``) appended, as ``ledger.append`` answers it."""
        started = time.perf_counter()
        # a heartbeat is identified here, on the event loop, while the group before it
        # commits: the feed's thread, one group's serial section, only hands it over
        item = Heartbeat.now(command) if isinstance(command, RecordPlayback) else command
        try:
            with _database_errors():
                result = await self._feed.submit(item)
        finally:
            self.metrics.command_seconds.observe(time.perf_counter() - started)
        self.metrics.count(getattr(command, "type", ""), result)
        return result

    async def submit_batch(
        self, numbered: Sequence[tuple[int, Command | Rejected]], *, atomic: bool
    ) -> list[tuple[int, Result]]:
        """Parsed lines, each in its own transaction or (``atomic``) all in one, answered
        as ``ledger append`` answers them."""
        items = [item for _, item in numbered]
        results = await self._write(
            self._batches, lambda ledger: ledger.execute_batch(items, atomic=atomic), "batch"
        )
        for item, result in zip(items, results, strict=True):
            self.metrics.count(getattr(item, "type", "unknown"), result)
        return [(number, result) for (number, _), result in zip(numbered, results, strict=True)]

    async def _write(self, writers: Writers, work: Callable[[Ledger], T], kind: str) -> T:
        def in_thread() -> T:
            started = time.perf_counter()
            try:
                with _database_errors(), writers.slot() as ledger:
                    return work(ledger)
            finally:
                self.metrics.append_seconds.labels(kind).observe(time.perf_counter() - started)

        return await anyio.to_thread.run_sync(in_thread, limiter=self._write_limiter)

    async def check_tenancy(
        self, organization: str, commands: Sequence[tuple[int | None, Command]]
    ) -> None:
        """``Forbidden`` unless every command is about ``organization`` (``tenancy``)."""
        role, schema = self.config.tenant_role, self.settings.schema
        await self.read(
            lambda conn: tenancy.check_commands(conn, schema, role, organization, commands)
        )

    # --- reads -------------------------------------------------------------------------

    async def read(
        self, work: Callable[[psycopg.Connection[Any]], T], organization: str | None = None
    ) -> T:
        """``work`` on a read connection; with ``organization``, as its reader, so that
        row-level security shows it that organization's rows only."""
        if organization is not None:
            work = tenancy.tenant_read(self.config.tenant_role, organization, work)

        def in_thread() -> T:
            with _database_errors(), self._reads.connection() as conn:
                return work(conn)

        return await anyio.to_thread.run_sync(in_thread, limiter=self._read_limiter)

    async def call(self, work: Callable[[], T]) -> T:
        """Blocking work that opens its own connection (``ledger.projections`` status)."""

        def in_thread() -> T:
            with _database_errors():
                return work()

        return await anyio.to_thread.run_sync(in_thread, limiter=self._read_limiter)


@contextmanager
def _database_errors() -> Iterator[None]:
    try:
        yield
    except ServiceError:
        raise
    except QueueFull:
        raise Overloaded(
            "the group-commit queue is full (LEDGER_QUEUE_MAX): try again shortly"
        ) from None
    except (LedgerClosed, GroupAbandoned):
        raise Unavailable("the service is stopping: send the command again") from None
    except (
        PoolTimeout,
        LockTimeout,
        psycopg.OperationalError,
        psycopg.InterfaceError,
        LibraryOperationalError,
        LibraryInterfaceError,
    ) as error:
        log.warning("database unavailable: %s", summary(error))
        raise Unavailable("the database is unavailable or busy: try again shortly") from None
    except ConfigurationError as error:  # our own one-line messages: no SQL in them
        raise Unavailable(str(error)) from None
    except (psycopg.Error, PersistenceError) as error:
        log.error("database error\n%s", described(error))
        raise ServiceError("a database error stopped the request; it was logged") from None
