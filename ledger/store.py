"""The event store: the eventsourcing PostgreSQL recorder, extended.

``LedgerRecorder`` is the library's application recorder (same table shape, same
``LOCK TABLE ... IN EXCLUSIVE MODE`` that keeps positions in commit order) with
two additions inside the append's transaction:

* it checks that the aggregates a decision only *read* are still at the versions
  read (the primary key already guards those it writes), so a decision never
  rests on a stale read;
* it applies the command's projected row changes, so the events and the rows they
  change commit together (read-your-writes).

It does not NOTIFY: nothing here listens, and NOTIFY takes a global lock at commit.
Tables are never created at run time; ``ledger db upgrade`` does that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg import Cursor, sql
from psycopg.conninfo import conninfo_to_dict

from ledger.config import Settings
from projections.changes import RowChange
from projections.inline import apply_changes


class StaleRead(IntegrityError):
    """An aggregate a decision read has moved on; the service re-decides."""


class LedgerRecorder(PostgresApplicationRecorder):
    def _notify_channel(self, curs: Cursor[Any]) -> None:
        return None

    def _fetch_ids_after_insert_events(
        self, curs: Cursor[Any], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        notification_ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        read_versions: Mapping[UUID, int] = kwargs.get("read_versions") or {}
        if read_versions:
            self._check_read_versions(curs, read_versions)
        row_changes: Sequence[RowChange] = kwargs.get("row_changes") or ()
        if row_changes:
            apply_changes(curs, self.datastore.schema, row_changes)
            # fetching forces the pipeline to report any error of the changes here,
            # inside the transaction, rather than at commit
            curs.execute(sql.SQL("SELECT 1"))
            curs.fetchone()
        return notification_ids

    def _check_read_versions(self, curs: Cursor[Any], read_versions: Mapping[UUID, int]) -> None:
        # The table lock is held: no other append can commit until we do, so the
        # versions seen now are the versions at commit.
        curs.execute(
            sql.SQL(
                "SELECT originator_id, max(originator_version) AS version FROM {} "
                "WHERE originator_id = ANY(%s) GROUP BY originator_id"
            ).format(sql.Identifier(self.datastore.schema, self.events_table_name)),
            (list(read_versions),),
            prepare=True,
        )
        current = {row["originator_id"]: row["version"] for row in curs.fetchall()}
        for aggregate_id, version in read_versions.items():
            if current.get(aggregate_id, 0) != version:
                raise StaleRead(f"aggregate {aggregate_id} moved on from version {version}")


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
        # aggregates stay cached in the process and are fast-forwarded from the log on
        # every read (one query for the events after the cached version), so a long-lived
        # aggregate (a video watched with many heartbeats) is not replayed from scratch
        "AGGREGATE_CACHE_MAXSIZE": "20000",
        "AGGREGATE_CACHE_FASTFORWARD": "y",
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "y",
        "IS_SNAPSHOTTING_ENABLED": "no",
    }
