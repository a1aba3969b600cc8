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

Each append NOTIFYs the channel the library's subscriptions LISTEN on (once per
transaction, delivered at commit), so ``recorder.subscribe()`` and the library's
``ProjectionRunner`` follow the live log; the ledger's own readers poll and need no
notification (docs/stream.md). Tables are never created at run time; ``ledger db
upgrade`` does that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    InterfaceError,
    OperationalError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg import Connection, sql
from psycopg.conninfo import conninfo_to_dict

from ledger.config import Settings
from projections.changes import RowChange
from projections.inline import statement


class LedgerRecorder(PostgresApplicationRecorder):
    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
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
        """
        if not stored_events:
            return []
        schema = self.datastore.schema
        read_versions: Mapping[UUID, int] = kwargs.get("read_versions") or {}
        row_changes: Sequence[RowChange] = kwargs.get("row_changes") or ()
        params: list[Any] = []
        for event in stored_events:
            params += (event.originator_id, event.originator_version, event.topic, event.state)
        with self.datastore.get_connection() as conn:
            inserted, rest = conn.cursor(), conn.cursor()
            try:
                with conn.pipeline():
                    rest.execute(_BEGIN)
                    for lock in self.lock_table_statements:
                        rest.execute(lock)
                    insert = _rendered(_insert_events_sql(schema, len(stored_events)), conn)
                    inserted.execute(insert, params, prepare=True)
                    rest.execute(_rendered(_notify_sql(self.channel_name), conn))
                    if read_versions:
                        # the table lock is held: the versions seen now are those at commit
                        rest.execute(
                            _rendered(_assert_read_versions_sql(schema), conn),
                            (list(read_versions), list(read_versions.values())),
                            prepare=True,
                        )
                    for change in row_changes:
                        query, values = statement(schema, change)
                        rest.execute(_rendered(query, conn), values, prepare=True)
                    rest.execute(_COMMIT)
            except BaseException:
                conn.rollback()  # a failed statement left the transaction open and aborted
                raise
            notification_ids = [row["notification_id"] for row in inserted.fetchall()]
        if len(notification_ids) != len(stored_events):
            raise ProgrammingError(
                f"got {len(notification_ids)} notification ids for {len(stored_events)} events"
            )
        return notification_ids


_BEGIN = b"BEGIN"
_COMMIT = b"COMMIT"
_RENDERED: dict[int, tuple[sql.Composable, bytes]] = {}


def _rendered(query: sql.Composable, conn: Connection[Any]) -> bytes:
    """A composed statement's text, rendered once: psycopg renders a ``Composed`` on
    every execute, and doing it once per shape made appends about 5% faster.

    The statements come from ``lru_cache``-d builders, so the same object recurs; the
    object is kept with its text, so its ``id`` cannot be reused by another.
    """
    found = _RENDERED.get(id(query))
    if found is None or found[0] is not query:
        if len(_RENDERED) > 1024:
            _RENDERED.clear()
        found = _RENDERED[id(query)] = (query, query.as_bytes(conn))
    return found[1]


@lru_cache(maxsize=64)
def _insert_events_sql(schema: str, count: int) -> sql.Composed:
    row = sql.SQL("({}, {}, {}, {})").format(*sql.Placeholder() * 4)
    return sql.SQL(
        "INSERT INTO {} (originator_id, originator_version, topic, state) VALUES {} "
        "RETURNING notification_id"
    ).format(sql.Identifier(schema, "ledger_events"), sql.SQL(", ").join([row] * count))


@lru_cache(maxsize=8)
def _notify_sql(channel: str) -> sql.Composed:
    """Wakes the library's subscriptions at commit (not before: PostgreSQL delivers a
    transaction's notifications when it commits, and drops them if it rolls back)."""
    return sql.SQL("NOTIFY {}").format(sql.Identifier(channel))


@lru_cache(maxsize=8)
def _assert_read_versions_sql(schema: str) -> sql.Composed:
    return sql.SQL("SELECT {}(%s::uuid[], %s::bigint[])").format(
        sql.Identifier(schema, "ledger_assert_read_versions")
    )


def environment(settings: Settings, pool_size: int = 2) -> dict[str, str]:
    """The eventsourcing environment for ``settings``."""
    params = conninfo_to_dict(settings.url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "APPLICATION_RECORDER_TOPIC": f"{LedgerRecorder.__module__}:{LedgerRecorder.__qualname__}",
        "CREATE_TABLE": "no",
        "POSTGRES_DBNAME": str(params.get("dbname") or params.get("user") or "postgres"),
        "POSTGRES_HOST": str(params.get("host") or "localhost"),
        "POSTGRES_PORT": str(params.get("port") or "5432"),
        "POSTGRES_USER": str(params.get("user") or "postgres"),
        "POSTGRES_PASSWORD": str(params.get("password") or ""),
        "POSTGRES_SCHEMA": settings.schema,
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": "0",
        "POSTGRES_CONNECT_TIMEOUT": "10",
        "POSTGRES_ENABLE_DB_FUNCTIONS": "no",
        "POSTGRES_LOCK_TIMEOUT": "0",
        # the service keeps its own cache of aggregates (service.AggregateCache)
        "AGGREGATE_CACHE_MAXSIZE": "",
        "IS_SNAPSHOTTING_ENABLED": "no",
    }
