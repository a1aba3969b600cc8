"""The eventsourcing library's own consumers on the ledger's log.

The library's recorder conformance suite (``ApplicationRecorderTestCase``, with its
subscription test, and ``NonInterleavingNotificationIDsBaseCase``) runs against
``LedgerRecorder`` on the real server, subclassed as eventsourcing's own PostgreSQL
tests subclass it; and the library's ``ProjectionRunner`` follows the live log.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import Tracking
from eventsourcing.popo import POPOTrackingRecorder
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.projection import Projection, ProjectionRunner
from eventsourcing.tests import persistence as conformance
from psycopg import sql

from ledger.config import Settings
from ledger.log.datastore import LedgerDatastore
from ledger.log.recorder import LedgerRecorder, environment
from ledger.service import Ledger
from tests import citus_support
from tests.support import append, catalogue, user

WATCHDOG_SECONDS = 60


class _OnTheLedgersLog:
    """A fresh migrated schema per test (the ``settings`` fixture), and recorders on it."""

    settings: Settings
    datastores: list[PostgresDatastore]

    @pytest.fixture(autouse=True)
    def _schema(self, settings: Settings) -> Iterator[None]:
        """The suite stores its own topics ('topic1') and opaque states (b'state1'), which
        the ledger's event catalogue refuses at insert (docs/events.md): its trigger is
        off in the suite's schema; the recorder, its lock, the chain and the NOTIFY are as
        in production."""
        with psycopg.connect(settings.url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER TABLE {} DISABLE TRIGGER ledger_events_check_shape").format(
                    sql.Identifier(settings.schema, "ledger_events")
                )
            )
        self.settings = settings
        self.datastores = []
        yield
        for datastore in self.datastores:
            datastore.close()

    def create_recorder(self) -> LedgerRecorder:
        datastore = LedgerDatastore(
            self.settings.url,
            schema=self.settings.schema,
            pool_size=14,  # the suite's concurrent tests use up to 12 at once
            lock_timeout_ms=5_000,
        )
        self.datastores.append(datastore)
        return LedgerRecorder(datastore, events_table_name="ledger_events")


@pytest.mark.single_server(citus_support.LIBRARY_RECORDER)
class TestLedgerRecorderConformance(
    _OnTheLedgersLog, conformance.ApplicationRecorderTestCase[LedgerRecorder]
):
    def test_insert_subscribe(self) -> None:
        """The library's subscription test: it catches up, then waits for an event
        appended while it listens. Without a NOTIFY at commit it would wait for ever:
        a watchdog then wakes it by hand and fails the test."""
        _with_watchdog(self.settings, super().optional_test_insert_subscribe)

    def test_subscribe_concurrent_reading_and_writing(self) -> None:
        """As eventsourcing's own PostgreSQL tests do: a subscriber reads every event of a
        writer appending at the same time, in order."""
        recorder = self.create_recorder()
        batches, size = 20, 100
        start = recorder.max_notification_id()
        seen: list[int] = []

        def read() -> None:
            with recorder.subscribe(gt=start) as subscription:
                for notification in subscription:
                    seen.append(notification.id)
                    if len(seen) == batches * size:
                        break

        def write() -> None:
            for _ in range(batches):
                recorder.insert_events(
                    [
                        conformance.StoredEvent(
                            originator_id=uuid.uuid4(),
                            originator_version=1,
                            topic="topic1",
                            state=b"{}",
                        )
                        for _ in range(size)
                    ]
                )

        def both() -> None:
            reader = threading.Thread(target=read)
            reader.start()
            write()
            reader.join()

        _with_watchdog(self.settings, both)
        assert seen == sorted(seen) and len(set(seen)) == batches * size


@pytest.mark.single_server(citus_support.LIBRARY_RECORDER)
class TestLedgerRecorderNonInterleaving(
    _OnTheLedgersLog, conformance.NonInterleavingNotificationIDsBaseCase
):
    insert_num = 1000


def _with_watchdog(settings: Settings, body: Callable[[], None]) -> None:
    """Runs ``body``; if it is still waiting after ``WATCHDOG_SECONDS``, NOTIFYs the
    channel by hand until it returns (so the test ends) and fails."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            body()
        except BaseException as error:
            errors.append(error)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(WATCHDOG_SECONDS)
    stalled = worker.is_alive()
    while worker.is_alive():
        with psycopg.connect(settings.url, autocommit=True) as conn:
            conn.execute("NOTIFY ledger_events")
        worker.join(0.2)
    assert not stalled, "a subscriber stalled: appends did not notify it"
    if errors:
        raise errors[0]


# --- the library's ProjectionRunner on the live log -------------------------------------


class LogOfTheLedger(Ledger):
    """The ledger application, as the runner constructs applications (from an env)."""

    name = "Ledger"

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(Settings(url=env["TEST_URL"], schema=env["POSTGRES_SCHEMA"]))


class Seen(POPOTrackingRecorder):
    """Tracking only: what the projection has been given."""


class Counting(Projection[Seen]):
    name = "counting"
    topics = ("UserRegistered",)

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:  # type: ignore[override]
        self.view.insert_tracking(tracking)


def test_the_librarys_projection_runner_follows_the_live_log(
    settings: Settings, ledger_app: Ledger
) -> None:
    """It catches up, then sees events appended after it started (before the NOTIFY, it
    caught up once and then stalled: ``wait`` timed out)."""
    append(ledger_app, *catalogue())
    env = environment(settings)
    env["TEST_URL"] = settings.url
    env["COUNTING_PERSISTENCE_MODULE"] = "eventsourcing.popo"
    runner = ProjectionRunner(
        application_class=LogOfTheLedger, projection_class=Counting, view_class=Seen, env=env
    )
    with runner:
        caught_up = max(r.position or 0 for r in append(ledger_app, user("carol")))
        runner.wait(caught_up, timeout=120)
        for round_ in range(3):
            later = append(ledger_app, user(f"late-{round_}"))[0].position
            assert later is not None
            runner.wait(later, timeout=120)
        assert runner.view.max_tracking_id("Ledger") == later
