"""``user.erase`` racing a heartbeat from another writer (issues 27 and 28, docs/privacy.md,
"Races"; a purchase's race is ``test_purchase_erasure_race.py``'s, on both layouts too):
real concurrency, two ledgers on their own connections, each interleaving forced by a
foreign transaction holding a lock and each wait observed, never a sleep standing in for
an event. A wait is seen in ``pg_locks`` through ``pg_blocking_pids``
on one server, and in ``citus_lock_waits`` on the distributed layout, where the lock and its
waiter are a worker's sessions and both ends are named by their global pid (node and pid).
After both commit, nothing of the person survives, on either layout.

What orders an erasure and a heartbeat differs: on one server the playback store's advisory
lock, which its writers hold to their commit and an erasure takes first; on the distributed
store (no lock of the coordinator) the rows themselves: the access row the heartbeat stamps,
which the erasure's part for that organization deletes, and the person's ``users`` row,
which the heartbeat's ``video_playback`` upsert needs (its foreign key) and the erasure's
global part deletes (docs/events.md, "Ordering without the global lock")."""

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
from tests.integration.test_erasure import erase, history, pg_dump, traces
from tests.support import CONTENT, ORG, append, play, statuses, t

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
    """The backend that waits for a lock ``blocker`` holds, once it does: on one server
    from ``pg_locks`` (of ``locktype``, if given), on the distributed layout from
    ``citus_lock_waits`` (the waiter's global pid; it names no lock type)."""
    if citus_support.distribute_requested():
        query = "SELECT waiting_gpid FROM citus_lock_waits WHERE blocking_gpid = %s"
        params: tuple[object, ...] = (blocker,)
    else:
        query = (
            "SELECT pid FROM pg_locks WHERE NOT granted AND %s = ANY(pg_blocking_pids(pid))"
            " AND (%s::text IS NULL OR locktype = %s)"
        )
        params = (blocker, locktype, locktype)
    deadline = time.monotonic() + 60
    while (row := conn.execute(query, params).fetchone()) is None:
        assert time.monotonic() < deadline, f"nothing waits for backend {blocker}"
        time.sleep(0.01)  # polling for the wait to show, not standing in for it
    return int(row[0])


def started(work: Callable[[], list[Result]]) -> tuple[threading.Thread, list[Result]]:
    answers: list[Result] = []
    thread = threading.Thread(target=lambda: answers.extend(work()))
    thread.start()
    return thread, answers


def nothing_survives(conn: Conn, settings: Settings, person: str, key: str) -> None:
    """No trace of the person: in a dump (on the distributed layout the coordinator's, which
    holds the reference tables; the distributed ones are counted through it below), in any
    table that names them, and no key of their heartbeats (``key``) in the store."""
    dumped = pg_dump(settings)
    assert [trace for trace in [*traces(person), key] if trace in dumped] == []
    for table, column, value in (
        ("users", "id", person),
        ("purchases", "customer_id", person),
        ("content_access", "user_id", person),
        ("video_playback", "user_id", person),
        ("playback_heartbeats", "user_id", person),
        ("playback_base", "user_id", person),
        ("ledger_subjects", "user_id", person),
        ("playback_keys", "idempotency_key", key),
    ):
        query = sql.SQL("SELECT count(*) FROM {} WHERE {} = %s").format(
            sql.Identifier(table), sql.Identifier(column)
        )
        assert conn.execute(query, (value,)).fetchone() == (0,), table
    assert verify(settings) == []


def test_an_erasure_waits_for_a_heartbeat_being_recorded_then_erases_it(
    ledger_app: Ledger, other: Ledger, settings: Settings, conn: Conn
) -> None:
    """The heartbeat is in its transaction when the erasure starts: held at its stamp of
    the person's access row, which a foreign transaction has locked. On one server it holds
    the store's advisory lock there, which the erasure takes first; on the distributed store
    the erasure's part for the organization deletes that access row, and queues behind the
    heartbeat for it. Either way the erasure waits for the heartbeat, which commits
    (``accepted``), and then erases it with the rest."""
    person = f"racing-{uuid.uuid4().hex}"
    key = f"race-{person}"
    append(ledger_app, *history(person))
    with foreign(settings) as held:
        held.execute(
            "SELECT 1 FROM content_access WHERE organization_id = %s AND user_id = %s"
            " AND content_id = %s FOR UPDATE",
            (ORG, person, CONTENT),
        ).fetchall()
        beat = {**play(person, 70, at=t(5, 10)), "idempotency_key": key}
        beating, beat_answer = started(lambda: append(other, beat))
        writer = waiting(conn, citus_support.waits_name(held))  # decided, written, its stamp held
        erasing, erase_answer = started(lambda: append(ledger_app, erase(person)))
        eraser = waiting(conn, writer, STORE_LOCK)  # the erasure waits for the heartbeat
        assert erase_answer == [] and beat_answer == []
        assert eraser != writer
        held.rollback()
        beating.join(60)
        erasing.join(60)
    assert statuses(beat_answer) == ["accepted"]  # recorded, then erased
    assert statuses(erase_answer) == ["accepted"]
    nothing_survives(conn, settings, person, key)


def test_a_heartbeat_that_waits_for_an_erasure_finds_no_one(
    ledger_app: Ledger, other: Ledger, settings: Settings, conn: Conn
) -> None:
    """The erasure's transaction is under way, held at the person's row of
    ``ledger_subjects`` (its last statement), when the heartbeat's write comes: it waits for
    the erasure, fails once the erasure commits, is decided again and finds no one
    (``not_found``); nothing of it is written, its key included."""
    person = f"racing-{uuid.uuid4().hex}"
    key = f"race-{person}"
    append(ledger_app, *history(person))
    assert statuses(append(other, play(person, 65, at=t(5, 11)))) == ["accepted"]
    beat = {**play(person, 70, at=t(5, 10)), "idempotency_key": key}
    with foreign(settings) as held:
        if citus_support.distribute_requested():
            beating, beat_answer, erasing, erase_answer = _racing_on_the_distributed_store(
                ledger_app, other, settings, conn, held, person, beat
            )
        else:
            # the person's row of ledger_subjects locked: the erasure waits on it, holding
            # the store's writers' lock and the log's, and the heartbeat waits for the former
            held.execute("SELECT 1 FROM ledger_subjects WHERE user_id = %s FOR UPDATE", (person,))
            erasing, erase_answer = started(lambda: append(ledger_app, erase(person)))
            eraser = waiting(conn, citus_support.waits_name(held))
            beating, beat_answer = started(lambda: append(other, beat))
            waiting(conn, eraser, STORE_LOCK)  # the heartbeat waits for the store's lock
        assert erase_answer == [] and beat_answer == []
        held.rollback()
        erasing.join(60)
        beating.join(60)
    assert statuses(erase_answer) == ["accepted"]
    assert statuses(beat_answer) == ["rejected:not_found"]
    nothing_survives(conn, settings, person, key)


def _racing_on_the_distributed_store(
    ledger_app: Ledger,
    other: Ledger,
    settings: Settings,
    conn: Conn,
    held: Conn,
    person: str,
    beat: dict[str, Any],
) -> tuple[threading.Thread, list[Result], threading.Thread, list[Result]]:
    """The distributed store's interleaving of ``test_a_heartbeat_that_waits_for_an_erasure
    _finds_no_one``, ``held`` left holding the erasure. A heartbeat that arrives while the
    erasure's global part runs there finds the access gone (the parts ran first: a plain
    ``no_access``, nothing written); the race is a heartbeat decided before the erasure
    (its key claimed already) whose write comes after the erasure deleted the ``users``
    row. So the heartbeat's write is held first, at its organization's head row
    (``playback_heads``), the erasure started and held at the subject's row, then the
    heartbeat let go: its ``video_playback`` upsert waits for the erasure (the row the
    erasure's delete of ``users`` took with it by its foreign key). Meanwhile a heartbeat
    sent by a third writer is answered at once, ``no_access``."""
    with foreign(settings) as head:
        head.execute(
            "SELECT 1 FROM playback_heads WHERE organization_id = %s FOR UPDATE", (ORG,)
        ).fetchall()
        beating, beat_answer = started(lambda: append(other, beat))
        writer = waiting(
            conn, citus_support.waits_name(head)
        )  # decided, its key claimed, its write held
        held.execute(
            "SELECT 1 FROM ledger_subjects WHERE user_id = %s FOR UPDATE", (person,)
        ).fetchall()
        erasing, erase_answer = started(lambda: append(ledger_app, erase(person)))
        eraser = waiting(
            conn, citus_support.waits_name(held)
        )  # its parts done, its global part held
        # a heartbeat that arrives now is not held behind the erasure: the parts deleted
        # the access, so it is no_access at once, and writes nothing
        late, late_answer = started(lambda: _sent_apart(settings, play(person, 80, at=t(5, 12))))
        late.join(60)
        assert statuses(late_answer) == ["rejected:no_access"]
        assert beat_answer == [] and erase_answer == []
        head.rollback()
        assert waiting(conn, eraser) == writer  # the heartbeat's write waits for the erasure
    return beating, beat_answer, erasing, erase_answer


def _sent_apart(settings: Settings, command: dict[str, Any]) -> list[Result]:
    """``command`` appended by a writer of its own, closed after."""
    app = Ledger(settings)
    try:
        return append(app, command)
    finally:
        app.close()
