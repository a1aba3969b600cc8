"""The reference a user of the bare library would get: eventsourcing's ``ProjectionRunner``.

The runner subscribes to the application's log and calls ``process_event`` once per
event; the view applies that event's row changes and its tracking record in one
transaction, as the library's documentation shows. The row changes are the ledger's
own pure projections, so both sides write the same rows and only the machinery differs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import psycopg
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.projection import Projection, ProjectionRunner
from psycopg import sql

from ledger.config import Settings
from ledger.database import migrations
from ledger.log.recorder import environment
from ledger.service import Ledger
from projections.changes import RowChange
from projections.inline import statement
from projections.registry import PROJECTED_TOPICS, changes_for


class LogReader(Ledger):
    """The ledger application, constructed the way the runner constructs applications."""

    name = "Ledger"  # the library names the log table after the application

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(Settings(url=env["BENCH_URL"], schema=env["POSTGRES_SCHEMA"]))


class RowsView(PostgresTrackingRecorder):
    def apply(self, changes: Sequence[RowChange], tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:
            for change in changes:
                query, params = statement(self.datastore.schema, change)
                curs.execute(query, params, prepare=True)
            self._insert_tracking(curs, tracking)


class Rows(Projection[RowsView]):
    name = "rows"
    topics = PROJECTED_TOPICS

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:  # type: ignore[override]
        self.view.apply(changes_for([domain_event]), tracking)


def run(settings: Settings) -> float:
    """Seconds the runner takes to project the whole log into tables in a new schema."""
    target = settings.schema + "_runner"
    with psycopg.connect(settings.url, autocommit=True) as conn:
        last = conn.execute(
            sql.SQL("SELECT max(notification_id) FROM {} WHERE topic = ANY(%s)").format(
                sql.Identifier(settings.schema, "ledger_events")
            ),
            (list(PROJECTED_TOPICS),),
        ).fetchone()
        last_position = int(last[0]) if last and last[0] is not None else 0
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(target)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(target)))
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(target)))
        for migration in migrations.projection_migrations():
            conn.execute(migration.up.encode())
    env = environment(settings)
    env["BENCH_URL"] = settings.url
    env["ROWS_POSTGRES_SCHEMA"] = target
    env["ROWS_CREATE_TABLE"] = "yes"
    started = time.perf_counter()
    runner = ProjectionRunner(
        application_class=LogReader, projection_class=Rows, view_class=RowsView, env=env
    )
    try:
        runner.wait(last_position, timeout=3600)
        return time.perf_counter() - started
    finally:
        runner.stop()
        with psycopg.connect(settings.url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(target)))
