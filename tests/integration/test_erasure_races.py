"""``user.erase`` racing a heartbeat and a purchase from another writer (issue 27,
docs/privacy.md, "Races"): real concurrency, two ledgers on their own connections, each
wait observed in ``pg_locks`` through ``pg_blocking_pids`` (a foreign transaction holds
the first one in place), never a sleep standing in for an event. After both commit,
nothing of the person survives."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql

from ledger.commands.results import Result
from ledger.config import Settings
from ledger.service import Ledger
from ledger.upkeep.verify import verify
from tests import citus_support
from tests.integration.test_erasure import erase, history, pg_dump, totals, traces
from tests.support import append, complete, play, statuses, t

Conn = psycopg.Connection[Any]
STORE_LOCK = "advisory"


@pytest.fixture
def other(settings: Settings) -> Iterator[Ledger]:
    """Another writer: its own pool, its own caches (as another process has)."""
    app = Ledger(settings)
    yield app
    app.close()


@contextmanager
def foreign(settings: Settings) -> Iterator[Conn]:
    """A transaction of nobody's: it holds a lock that pins a writer in place."""
    with psycopg.connect(settings.url) as held:
        held.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(settings.schema)))
        yield held
        held.rollback()


def waiting(conn: Conn, blocker: int, locktype: str | None = None) -> int:
    """The backend that waits for a lock ``blocker`` holds (of ``locktype``), once it does."""
    query = (
        "SELECT pid FROM pg_locks WHERE NOT granted AND %s = ANY(pg_blocking_pids(pid))"
        " AND (%s::text IS NULL OR locktype = %s)"
    )
    deadline = time.monotonic() + 60
    while (row := conn.execute(query, (blocker, locktype, locktype)).fetchone()) is None:
        assert time.monotonic() < deadline, f"nothing waits for backend {blocker}"
        time.sleep(0.01)  # polling for the wait to show, not standing in for it
    return int(row[0])


def started(work: Callable[[], list[Result]]) -> tuple[threading.Thread, list[Result]]:
    answers: list[Result] = []
    thread = threading.Thread(target=lambda: answers.extend(work()))
    thread.start()
    return thread, answers


def nothing_survives(conn: Conn, settings: Settings, person: str, key: str) -> None:
    dumped = pg_dump(settings)
    assert [trace for trace in [*traces(person), key] if trace in dumped] == []
    for table, column in (
        ("users", "id"),
        ("purchases", "customer_id"),
        ("content_access", "user_id"),
        ("video_playback", "user_id"),
        ("playback_heartbeats", "user_id"),
        ("playback_base", "user_id"),
        ("ledger_subjects", "user_id"),
    ):
        query = sql.SQL("SELECT count(*) FROM {} WHERE {} = %s").format(
            sql.Identifier(table), sql.Identifier(column)
        )
        assert conn.execute(query, (person,)).fetchone() == (0,), table
    assert verify(settings) == []


@pytest.mark.single_server(citus_support.LOCK_WAIT_SEEN)
def test_an_erasure_waits_for_a_heartbeat_being_recorded_then_erases_it(
    ledger_app: Ledger, other: Ledger, settings: Settings, conn: Conn
) -> None:
    person = f"racing-{uuid.uuid4().hex}"
    key = f"race-{person}"
    append(ledger_app, *history(person))
    with foreign(settings) as held:
        # the key taken, uncommitted: the heartbeat's write waits on it, holding the
        # store's writers' lock
        held.execute("INSERT INTO playback_keys VALUES (%s, 'pinned')", (key,))
        beat = {**play(person, 70, at=t(5, 10)), "idempotency_key": key}
        beating, beat_answer = started(lambda: append(other, beat))
        writer = waiting(conn, held.info.backend_pid)
        erasing, erase_answer = started(lambda: append(ledger_app, erase(person)))
        eraser = waiting(conn, writer, STORE_LOCK)  # the erasure waits for the store's lock
        assert erase_answer == [] and beat_answer == []
        assert eraser != writer
        held.rollback()
        beating.join(60)
        erasing.join(60)
    assert statuses(beat_answer) == ["accepted"]  # recorded, then erased
    assert statuses(erase_answer) == ["accepted"]
    nothing_survives(conn, settings, person, key)


@pytest.mark.single_server(citus_support.STORE_LOCK)
def test_a_heartbeat_that_waits_for_an_erasure_finds_no_one(
    ledger_app: Ledger, other: Ledger, settings: Settings, conn: Conn
) -> None:
    person = f"racing-{uuid.uuid4().hex}"
    key = f"race-{person}"
    append(ledger_app, *history(person))
    assert statuses(append(other, play(person, 65, at=t(5, 11)))) == ["accepted"]
    with foreign(settings) as held:
        # the person's row of ledger_subjects locked: the erasure waits on it, holding the
        # store's writers' lock and the log's
        held.execute("SELECT 1 FROM ledger_subjects WHERE user_id = %s FOR UPDATE", (person,))
        erasing, erase_answer = started(lambda: append(ledger_app, erase(person)))
        eraser = waiting(conn, held.info.backend_pid)
        beat = {**play(person, 70, at=t(5, 10)), "idempotency_key": key}
        beating, beat_answer = started(lambda: append(other, beat))
        waiting(conn, eraser, STORE_LOCK)  # the heartbeat waits for the store's lock
        assert erase_answer == [] and beat_answer == []
        held.rollback()
        erasing.join(60)
        beating.join(60)
    assert statuses(erase_answer) == ["accepted"]
    assert statuses(beat_answer) == ["rejected:not_found"]
    nothing_survives(conn, settings, person, key)


@pytest.mark.single_server(citus_support.GLOBAL_LOCK)
def test_a_purchase_that_waits_for_an_erasure_finds_no_one(
    ledger_app: Ledger, other: Ledger, settings: Settings, conn: Conn
) -> None:
    person = f"racing-{uuid.uuid4().hex}"
    append(ledger_app, *history(person))
    # the other writer knows the person (their subject and user aggregate cached)
    assert statuses(append(other, complete("pi_known", customer=person, at=t(5)))) == ["accepted"]
    before = totals(conn, settings.schema)
    with foreign(settings) as held:
        held.execute("SELECT 1 FROM ledger_subjects WHERE user_id = %s FOR UPDATE", (person,))
        erasing, erase_answer = started(lambda: append(ledger_app, erase(person)))
        eraser = waiting(conn, held.info.backend_pid)
        buy = complete("pi_racing", customer=person, at=t(5, 13))
        buying, buy_answer = started(lambda: append(other, buy))
        waiting(conn, eraser, "relation")  # the purchase waits for the log's lock
        assert erase_answer == [] and buy_answer == []
        held.rollback()
        erasing.join(60)
        buying.join(60)
    assert statuses(erase_answer) == ["accepted"]
    assert statuses(buy_answer) == ["rejected:not_found"]
    assert totals(conn, settings.schema) == before  # nothing counted twice, nothing lost
    nothing_survives(conn, settings, person, "pi_racing")
