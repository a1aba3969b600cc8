"""The event store: the eventsourcing PostgreSQL recorder, extended.

``LedgerRecorder`` is the library's application recorder (same table shape, same
``LOCK TABLE ... IN EXCLUSIVE MODE`` that keeps positions in commit order) with
two additions inside the append's transaction:

* it checks that the aggregates a decision only *read* are still at the versions
  read (``ledger_assert_read_versions``, migration 0004; the primary key already
  guards those it writes), so a decision never rests on a stale read;
* it applies the command's projected row changes, so the events and the rows they
  change commit together (read-your-writes).

It does not NOTIFY: nothing here listens, and NOTIFY takes a global lock at commit.
Tables are never created at run time; ``ledger db upgrade`` does that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg import Cursor, sql
from psycopg.conninfo import conninfo_to_dict

from ledger.config import Settings
from projections.changes import RowChange
from projections.inline import apply_changes


class LedgerRecorder(PostgresApplicationRecorder):
    def _notify_channel(self, curs: Cursor[Any]) -> None:
        return None

    def _insert_stored_events(
        self, curs: Cursor[Any], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        """Lock, insert the events, then queue the read check and the row changes.

        Everything is queued in the library's pipeline before its single sync, so an
        append costs two round trips (the statements, then COMMIT) and any failure
        (a stale read, a constraint) aborts the whole transaction.
        """
        super()._insert_stored_events(curs, stored_events, **kwargs)
        read_versions: Mapping[UUID, int] = kwargs.get("read_versions") or {}
        row_changes: Sequence[RowChange] = kwargs.get("row_changes") or ()
        with curs.connection.cursor() as other:
            if read_versions:
                # the table lock is held: the versions seen now are those at commit
                other.execute(
                    self._assert_read_versions,
                    (list(read_versions), list(read_versions.values())),
                    prepare=True,
                )
            apply_changes(other, self.datastore.schema, row_changes)

    @property
    def _assert_read_versions(self) -> sql.Composed:
        return sql.SQL("SELECT {}(%s::uuid[], %s::bigint[])").format(
            sql.Identifier(self.datastore.schema, "ledger_assert_read_versions")
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
