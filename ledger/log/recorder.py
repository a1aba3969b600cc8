"""The event store: the eventsourcing PostgreSQL recorder, extended.

``LedgerRecorder`` is the library's application recorder (same table shape, same
``LOCK TABLE ... IN EXCLUSIVE MODE`` that keeps positions in commit order), with its
append sent as one pipeline of prepared statements (one round trip instead of two), and
two additions inside the append's transaction:

* it checks that the aggregates a decision only *read* are still at the versions
  read, absent ones included (``ledger_assert_read_versions``, migration 0004; the
  primary key already guards those it writes), so a decision never rests on a stale
  read or on a wrong guess from the service's cache;
* it applies the command's projected row changes, so the events and the rows they
  change commit together (read-your-writes).

It also bounds what an append may cost the other writers: the events go in INSERTs of
at most ``INSERT_ROWS`` rows (a batch of any size fits the protocol), the wait for the
lock is bounded by ``LEDGER_LOCK_TIMEOUT``, and a failed attempt never leaves its
connection inside a transaction (``settling.settle``).

Each append NOTIFYs the channel the library's subscriptions LISTEN on (once per
transaction, delivered at commit), so ``recorder.subscribe()`` and the library's
``ProjectionRunner`` follow the live log; the ledger's own readers poll and need no
notification (docs/stream.md). Tables are never created at run time; ``ledger db
upgrade`` does that.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    InterfaceError,
    InternalError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import retry
from psycopg import Connection, Cursor, sql
from psycopg.errors import LockNotAvailable

from ledger.config import Settings, pool_timeout_ms
from ledger.database import distribution, legacy
from ledger.log import claims, restrict, routed, statements
from ledger.log.chains import PLATFORM, Order, Route, order
from ledger.log.datastore import (
    LOCK_TIMEOUT_KEY,
    POOL_SIZE_KEY,
    POOL_TIMEOUT_KEY,
    SCHEMA_KEY,
    URL_KEY,
    LedgerDatastore,
    LedgerFactory,
)
from ledger.log.people import Person, people_of
from ledger.log.settling import settle
from ledger.playback.store import stream_lock
from ledger.privacy.store import ERASING_LOCK, subject_statement, subjects_of, users_of
from ledger.privacy.subjects import SubjectChange, SubjectErased
from projections.changes import RowChange
from projections.inline import statement


class LockTimeout(PersistenceError):
    """A lock the append needs (the log's, mostly) stayed taken by another transaction for
    longer than ``LEDGER_LOCK_TIMEOUT``: nothing was written. Not retried: the holder may
    hold it for long, and the caller decides whether to wait more."""


class LedgerRecorder(PostgresApplicationRecorder):
    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        if not isinstance(datastore, LedgerDatastore):
            raise TypeError(
                "LedgerRecorder needs a LedgerDatastore: see ledger.log.recorder.environment"
            )
        super().__init__(datastore, **kwargs)
        self.lock_timeout_ms = datastore.lock_timeout_ms
        # the library's lock_table_statements count whole seconds, and its 0 waits for ever
        self.locking: list[sql.Composable] = [
            sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{self.lock_timeout_ms}ms")),
            sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(
                sql.Identifier(self.datastore.schema, self.events_table_name)
            ),
        ]
        self.order: Order | None = None  # the log's, read on the first append (chains.order)
        self.distributed_log = False  # on Citus (distribution.distribute_log), read with it
        self.legacy_claims = False  # its appends claim chains.LEGACY_TOPICS too: read with it
        self.legacy_versions = False  # it keeps their versions (0033: routed): read with it

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """``_insert``, retried when the connection or, on Citus, a worker's connection
        failed: Citus keeps a broken connection to a worker that came back, and the next
        statement sent over it fails so ("failure on connection marked as essential"),
        then drops it; the attempt wrote nothing, and the next one connects anew."""
        try:
            return self._insert(stored_events, **kwargs)
        except InternalError as error:
            if "marked as essential" in str(error) or claims.bounded(error):
                raise OperationalError(str(error)) from error
            raise

    def _insert(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int]:
        """Lock, insert the events, check the reads, change the rows, commit: one round trip.

        The library's recorder sends its statements in a pipeline, waits for their
        results while holding the table lock, then sends COMMIT: two round trips, the
        lock held across the client's turn. Here BEGIN through COMMIT go in one pipeline
        with one sync, so an append costs one round trip and the lock is never held across
        one: only while the server works and the client queues the few statements after
        the lock (psycopg sends each as it is queued). Every statement with values is prepared
        once per connection (planning the upserts cost more than running them) and its values
        are bound by the server. Any failure (a stale read, a key already taken, a constraint)
        skips the rest of the pipeline, COMMIT included, and the transaction is rolled back.

        The events go in INSERTs of at most ``INSERT_ROWS`` rows each, so a batch of any
        size stays under the protocol's 65,535 parameters per statement. The lock waits
        at most ``LEDGER_LOCK_TIMEOUT``, then the append fails with ``LockTimeout``. An
        attempt that fails for any reason leaves its connection idle or closes it
        (``settling.settle``) before the exception leaves, so the retry of ``@retry`` never meets
        a lock that this process still holds.
        """
        if not stored_events:
            return []
        schema = self.datastore.schema
        read_versions: Mapping[UUID, int] = kwargs.get("read_versions") or {}
        row_changes: Sequence[RowChange] = kwargs.get("row_changes") or ()
        subject_changes: Sequence[SubjectChange] = kwargs.get("subject_changes") or ()
        chains: Sequence[UUID] = kwargs.get("organizations") or [PLATFORM] * len(stored_events)
        if len(chains) != len(stored_events):
            raise ProgrammingError(f"got {len(chains)} chains for {len(stored_events)} events")
        with self.datastore.get_connection() as conn:
            self._know_log(conn)
            rest = conn.cursor()
            inserted: list[Cursor[Any]] = []
            try:
                legacy, spread = self.legacy_claims, self.distributed_log
                wanted = statements.claims(stored_events, chains, legacy) if spread else []
                deadline = claims.claim_first(conn, schema, wanted)  # each on its shard, first
                with conn.pipeline():
                    rest.execute(_BEGIN)
                    claims.fence(conn, rest, schema, deadline)
                    if self.distributed_log and statements.shared(
                        row_changes, subject_changes, chains
                    ):
                        rest.execute(
                            statements.SEQUENTIAL
                        )  # one connection per node (docs/scaling.md)
                    if any(isinstance(c, SubjectErased) for c in subject_changes):
                        lock = statements.rendered(ERASING_LOCK, conn)
                        rest.execute(lock, (stream_lock(schema),), prepare=True)
                    self._lock(conn, rest, chains)
                    self._insert_rows(conn, stored_events, chains, inserted)
                    rest.execute(
                        statements.rendered(statements.notify_sql(self.channel_name), conn)
                    )
                    if read_versions:
                        # the table lock is held: the versions seen now are those at commit
                        again = kwargs.get("read_chains")
                        self._check_reads(conn, rest, read_versions, chains, again)
                    for change in row_changes:
                        query, values = statement(schema, change)
                        rest.execute(statements.rendered(query, conn), values, prepare=True)
                    for subject_change in subject_changes:
                        erasing, params = subject_statement(schema, subject_change)
                        rest.execute(statements.rendered(erasing, conn), params, prepare=True)
                    rest.execute(_COMMIT)
            except claims.HeldElsewhere:
                raise  # refused between transactions: the connection is idle
            except BaseException as error:
                settle(conn, error)
                if isinstance(error, LockNotAvailable):
                    raise LockTimeout(
                        f"waited more than {statements.duration(self.lock_timeout_ms)} "
                        "(LEDGER_LOCK_TIMEOUT) for a lock that another transaction holds on "
                        "the event log or a projected table; nothing was written"
                    ) from None
                raise
            notification_ids = statements.ordered(stored_events, inserted)
        if len(notification_ids) != len(stored_events):
            raise ProgrammingError(
                f"got {len(notification_ids)} notification ids for {len(stored_events)} events"
            )
        return notification_ids

    def _insert_rows(
        self,
        conn: Connection[Any],
        events: Sequence[StoredEvent],
        chains: Sequence[UUID],
        inserted: list[Cursor[Any]],
    ) -> None:
        """The events' INSERTs, in the pipeline, each with a cursor of its own (their
        notification ids). On a distributed log an append of one chain sends routed
        ``INSERT ... VALUES`` (``statements.insert_routed_sql``), which Citus sends to the
        chain's shard as they are; else the arrays' ``INSERT ... SELECT``."""
        schema = self.datastore.schema
        if self.distributed_log and len(set(chains)) == 1:
            for start in range(0, len(events), statements.ROUTED_ROWS):
                chunk = events[start : start + statements.ROUTED_ROWS]
                query = statements.insert_routed_sql(schema, len(chunk))
                inserted.append(conn.cursor())
                values = statements.routed_params(chunk, chains[0])
                inserted[-1].execute(statements.rendered(query, conn), values, prepare=True)
            return
        insert = statements.rendered(statements.inserting(schema, self.distributed_log), conn)
        for start in range(0, len(events), INSERT_ROWS):
            chunk = events[start : start + INSERT_ROWS]
            inserted.append(conn.cursor())
            columns = statements.insert_params(chunk, chains[start : start + INSERT_ROWS])
            inserted[-1].execute(insert, columns, prepare=True)

    def _lock(self, conn: Connection[Any], cursor: Cursor[Any], chains: Sequence[UUID]) -> None:
        """Takes the append's locks, in the pipeline, before its first insert.

        In the log's ``global`` order, the log's EXCLUSIVE lock, as the library's recorder
        does (the chain trigger then locks each chain's row under it). In the
        ``organization`` order, only the rows of the append's chains in
        ``ledger_chain_heads``, in uuid order (so two appends of the same chains never
        deadlock): appends of other organizations go on. An organization's append also
        holds the platform chain's row in SHARE mode, so a platform append (a user's
        deletion) waits for the appends that may have read that user, and they for it;
        organizations' appends share it and never wait for each other.

        On a distributed log not so: the platform's row lives on one worker, and holding it
        made nearly every append a two-phase commit across both. There an organization's
        append is ordered with a user's deletion by the rows it writes of that user
        (``purchases`` and ``content_access`` reference ``users``, a reference table whose
        copy on the append's worker the foreign key checks and the deletion locks), and
        the deletion of a distributed layout runs in parts, its global part last
        (docs/scaling.md, "A person's deletion" and "The log on Citus").
        """
        if self.distributed_log:  # the waits are the workers': their lock_timeout too
            cursor.execute(statements.PROPAGATE_SET)
        cursor.execute(statements.rendered(self.locking[0], conn))
        if self.order != "organization":
            cursor.execute(statements.rendered(self.locking[1], conn))
            return
        schema = self.datastore.schema
        wanted = sorted(set(chains))
        # the platform's row made too, so that its SHARE lock always has a row to hold
        shares = PLATFORM not in wanted and not self.distributed_log
        opened = [PLATFORM, *wanted] if shares else wanted
        if self.distributed_log:  # one routed INSERT ... VALUES each, on its shard
            for chain in opened:
                query = statements.open_chain_sql(schema)
                cursor.execute(statements.rendered(query, conn), (chain,), prepare=True)
        else:
            query = statements.open_chains_sql(schema)
            cursor.execute(statements.rendered(query, conn), (opened,), prepare=True)
        if shares:
            cursor.execute(
                statements.rendered(statements.share_platform_sql(schema), conn), prepare=True
            )
        for chain in wanted:  # one statement each: Citus routes it to the chain's shard
            cursor.execute(
                statements.rendered(statements.lock_chain_sql(schema), conn), (chain,), prepare=True
            )

    def _know_log(self, conn: Connection[Any]) -> None:
        """Reads the log's order and placement once (``chains.order``, ``distribution``)."""
        if self.order is None:
            self.distributed_log = distribution.log_is_distributed(conn, self.datastore.schema)
            if self.distributed_log:  # the claims' mark: on the coordinator since 0030
                self.legacy_claims = legacy.legacy_claimed(conn, self.datastore.schema)
                kept = self.legacy_claims and legacy.versions_kept(conn, self.datastore.schema)
                self.legacy_versions = kept
            self.order = order(conn, self.datastore.schema)
            conn.rollback()

    def _check_reads(
        self,
        conn: Connection[Any],
        cursor: Cursor[Any],
        read_versions: Mapping[UUID, int],
        chains: Sequence[UUID],
        read_chains: Sequence[UUID] | None,
    ) -> None:
        """The read-version check, in the pipeline. On a distributed log whose decision read
        along a route (``read_chains``), in the append's chains and those it read (0024), so
        Citus reads those shards alone (the platform's only if read: not by a decision that
        took its people as facts, ``ledger.log.people``); else the whole log (0019)."""
        schema = self.datastore.schema
        values: tuple[Any, ...] = (list(read_versions), list(read_versions.values()))
        if self.distributed_log and read_chains is not None:
            query = statements.assert_read_versions_in_sql(schema)
            values = (*values, sorted({*chains, *read_chains}))
        else:
            query = statements.assert_read_versions_sql(schema)
        cursor.execute(statements.rendered(query, conn), values, prepare=True)

    def events_after(
        self, versions: Mapping[UUID, int], route: Route | None = None
    ) -> list[StoredEvent]:
        """Every event of these aggregates after the versions given, in one query (the
        service's ``DecisionStore``): a decision costs one round trip to read.

        On a distributed log with a ``route`` (``ledger.log.chains.Route``): read in its
        chains' shards alone, and where its keys' claims say, and in the platform's chain
        for an aggregate begun there before the chains and not read yet (``routed``).
        Without a route, or on one server, the whole log."""
        schema = self.datastore.schema
        ids, after = list(versions), list(versions.values())
        with self.datastore.get_connection() as conn:
            self._know_log(conn)
            if not (self.distributed_log and route is not None):
                query = statements.events_after_sql(schema)
                rows = conn.execute(query, (ids, after), prepare=True).fetchall()
            else:  # its chains, its keys' claims' and the platform's for what began there
                kept = self.legacy_versions
                rows = routed.events(conn, schema, ids, after, route, kept)
        return [
            StoredEvent(
                originator_id=row["originator_id"],
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=bytes(row["state"]),
            )
            for row in rows
        ]

    def subjects_of(self, user_ids: Collection[str]) -> dict[str, str]:
        """The subject of each of these ids that has one (``ledger.privacy.subjects``)."""
        with self.datastore.get_connection() as conn:
            return subjects_of(conn, self.datastore.schema, user_ids)

    def users_of(self, subjects: Collection[str]) -> dict[str, str]:
        """The id of each of these subjects that has one."""
        with self.datastore.get_connection() as conn:
            return users_of(conn, self.datastore.schema, subjects)

    def is_distributed(self) -> bool:
        """Whether the log is distributed (on Citus): where a decision takes people as facts."""
        if self.order is None:
            with self.datastore.get_connection() as conn:
                self._know_log(conn)
        return self.distributed_log

    def people_of(self, values: Collection[str]) -> dict[str, Person]:
        """What ``users`` says of these ids or subjects (``ledger.log.people``)."""
        with self.datastore.get_connection() as conn:
            return people_of(conn, self.datastore.schema, values)

    def has_purchase_rows(
        self, content_id: str, organization_id: str, excluding: Sequence[str] = ()
    ) -> bool:
        """The RESTRICT rule of ``content.delete``, by its organization (``restrict``)."""
        with self.datastore.get_connection() as conn:
            return restrict.has_purchase_rows(
                conn, self.datastore.schema, content_id, organization_id, excluding
            )


INSERT_ROWS = 1000
"""Events per INSERT: one statement of four arrays whatever the count (prepared once, its
text parsed once by psycopg), and a message of bounded size however large the batch."""


_BEGIN = b"BEGIN"
_COMMIT = b"COMMIT"


def environment(settings: Settings, pool_size: int = 2) -> dict[str, str]:
    """The eventsourcing environment for ``settings``: the library's PostgreSQL
    persistence on a ``LedgerFactory``, which connects with the URL as given."""
    return {
        "PERSISTENCE_MODULE": f"{LedgerFactory.__module__}:{LedgerFactory.__qualname__}",
        "APPLICATION_RECORDER_TOPIC": f"{LedgerRecorder.__module__}:{LedgerRecorder.__qualname__}",
        "CREATE_TABLE": "no",
        URL_KEY: settings.url,
        SCHEMA_KEY: settings.schema,
        POOL_SIZE_KEY: str(pool_size),
        LOCK_TIMEOUT_KEY: str(settings.lock_timeout_ms),
        POOL_TIMEOUT_KEY: str(pool_timeout_ms(settings.pool_timeout)),
        # the service keeps its own cache of aggregates (ledger.service.AggregateCache)
        "AGGREGATE_CACHE_MAXSIZE": "",
        "IS_SNAPSHOTTING_ENABLED": "no",
    }
