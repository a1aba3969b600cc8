"""An append of any size completes; a failed one never leaves its connection inside a
transaction; a lock held too long fails the append instead of freezing it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg import pq

import ledger
from ledger import api
from ledger.config import Settings
from ledger.database.connections import connect
from ledger.domain import ids
from ledger.log import recorder, statements
from ledger.service import Ledger
from tests import citus_support
from tests.support import answers, append, cli, event_count, statuses, user

Conn = psycopg.Connection[Any]


def users(count: int) -> list[dict[str, Any]]:
    return [user(f"u{n}") for n in range(count)]


def positions_of_users(conn: Conn, count: int) -> list[int]:
    """Each user's event position, in the order of ``users(count)``."""
    # the log names each user by their subject (docs/privacy.md)
    subjects = dict(conn.execute("SELECT user_id, subject FROM ledger_subjects").fetchall())
    wanted = [ids.user_id(subjects[f"u{n}"]) for n in range(count)]
    rows = conn.execute(
        "SELECT originator_id, notification_id FROM ledger_events WHERE originator_id = ANY(%s)",
        (wanted,),
    ).fetchall()
    found = dict(rows)
    return [found[i] for i in wanted]


def test_an_atomic_batch_beyond_the_protocol_parameter_limit_is_appended_whole(
    cli_env: dict[str, str], conn: Conn
) -> None:
    """17,000 events of 4 bind parameters each exceed the 65,535 a statement may carry:
    the batch used to hang for ever, holding the log's lock."""
    count = 17_000
    stdin = "".join(json.dumps(c) + "\n" for c in users(count))
    done = cli(cli_env, "append", "--atomic", stdin=stdin)
    assert done.returncode == 0, done.stderr
    result = answers(done.stdout)
    assert [a["status"] for a in result] == ["accepted"] * count
    assert [a["position"] for a in result] == positions_of_users(conn, count)
    assert event_count(conn) == count
    assert conn.execute("SELECT count(*) FROM users").fetchone() == (count,)


@given(count=st.integers(min_value=1, max_value=23), rows=st.integers(min_value=1, max_value=7))
def test_every_event_of_a_split_insert_is_answered_with_its_own_position(
    fresh: Callable[[], Settings], monkeypatch: pytest.MonkeyPatch, count: int, rows: int
) -> None:
    """Whatever the chunk size, each line gets the position of its own event."""
    monkeypatch.setattr(recorder, "INSERT_ROWS", rows)
    settings = fresh()
    with api.open_ledger(settings) as app, connect(settings, autocommit=True) as conn:
        results = [r for _, r in api.append_lines(app, map(json.dumps, users(count)), atomic=True)]
        assert statuses(results) == ["accepted"] * count
        assert [r.position for r in results] == positions_of_users(conn, count)
        assert event_count(conn) == count


# --- a failure inside the pipeline --------------------------------------------------


def lock_holders(conn: Conn) -> list[int]:
    """Backends holding a granted lock on the test schema's log."""
    rows = conn.execute(
        "SELECT pid FROM pg_locks WHERE relation = 'ledger_events'::regclass AND granted"
    ).fetchall()
    return [pid for (pid,) in rows]


def wait_for(condition: Callable[[], bool], seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def pooled_backends(app: Ledger, pool_size: int) -> list[int]:
    """Every connection of the pool, borrowed at once: their backend pids."""
    datastore = app.recorder.datastore  # type: ignore[attr-defined]
    pids = []
    with datastore.get_connection() as first, datastore.get_connection() as second:
        for pooled in (first, second)[:pool_size]:
            assert pooled.pgconn.transaction_status == pq.TransactionStatus.IDLE
            pids.append(pooled.info.backend_pid)
    return pids


@pytest.mark.parametrize(
    "failure",
    [psycopg.OperationalError, RuntimeError, KeyboardInterrupt],
    ids=["retried-operational-error", "runtime-error", "keyboard-interrupt"],
)
@pytest.mark.single_server(citus_support.GLOBAL_LOCK)
def test_a_failure_injected_mid_pipeline_leaves_no_connection_in_a_transaction(
    settings: Settings, conn: Conn, monkeypatch: pytest.MonkeyPatch, failure: type[BaseException]
) -> None:
    """Once the log's lock is taken, sending the rest of the pipeline fails in the client,
    as libpq's send fails on a statement it refuses: the unsent statement stays queued,
    so the sync never goes out and the server waits, inside the transaction and holding
    the lock, for statements that never come. The failed attempt must end that
    transaction itself, before any retry (``psycopg.OperationalError`` is retried), and
    leave every pooled connection idle."""
    real_communicate = psycopg._pipeline_base.pipeline_communicate
    original_sql = statements.insert_events_sql
    broken: list[object] = []  # the pgconn whose sends fail, from when the lock is held
    failed_holder: list[int] = []
    leaked: list[int] = []

    def communicate(pgconn: Any, commands: Any) -> Any:
        if failed_holder and not broken:
            broken.append(pgconn)
        if broken and pgconn is broken[0]:
            raise failure("injected: sending the pipeline failed")
        return (yield from real_communicate(pgconn, commands))

    def insert_sql(schema: str) -> Any:
        """Called inside the pipeline, after the lock statement was queued."""
        if not failed_holder:
            assert wait_for(lambda: bool(lock_holders(conn))), "the lock was never taken"
            failed_holder.extend(lock_holders(conn))
        elif not wait_for(lambda: failed_holder[0] not in lock_holders(conn)):
            # the retry would wait for ever on its own process's lock: end it, and fail
            leaked.append(failed_holder[0])
            conn.execute("SELECT pg_terminate_backend(%s)", (failed_holder[0],))
        return original_sql(schema)

    monkeypatch.setattr(psycopg._pipeline_base, "pipeline_communicate", communicate)
    monkeypatch.setattr(statements, "insert_events_sql", insert_sql)
    app = api.open_ledger(settings)
    try:
        if failure is psycopg.OperationalError:
            assert statuses(append(app, user("zed"))) == ["accepted"]
        else:
            with pytest.raises(failure, match="injected"):
                append(app, user("zed"))
            assert wait_for(lambda: failed_holder[0] not in lock_holders(conn)), (
                "the failed attempt's connection still holds the log's lock"
            )
        assert not leaked, f"the retry waited on the lock of the failed attempt {leaked}"
        assert lock_holders(conn) == []
        pids = pooled_backends(app, 2)
        activity = conn.execute(
            "SELECT state, xact_start FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)
        ).fetchall()
        assert activity == [("idle", None)] * len(pids)
        monkeypatch.undo()
        assert statuses(append(app, user("amy"))) == ["accepted"]
        written = 2 if failure is psycopg.OperationalError else 1
        assert event_count(conn) == written
    finally:
        app.close()


# --- the lock timeout ------------------------------------------------------------------


@contextmanager
def log_locked_by_another(settings: Settings, release_after: float = 30.0) -> Iterator[Conn]:
    """Another connection holds the log's lock; a watchdog ends it after ``release_after``
    seconds, so that an append that would wait for ever shows up as a failed assertion."""
    holder = connect(settings)
    holder.execute("LOCK TABLE ledger_events IN EXCLUSIVE MODE")
    pid = holder.info.backend_pid

    def release() -> None:
        with connect(settings, autocommit=True) as killer:
            killer.execute("SELECT pg_terminate_backend(%s)", (pid,))

    watchdog = threading.Timer(release_after, release)
    watchdog.start()
    try:
        yield holder
    finally:
        watchdog.cancel()
        holder.close()


def test_an_append_that_cannot_get_the_lock_fails_with_one_error_and_writes_nothing(
    settings: Settings, cli_env: dict[str, str], conn: Conn
) -> None:
    env = cli_env | {"LEDGER_LOCK_TIMEOUT": "300ms"}
    with log_locked_by_another(settings):
        done = cli(env, "append", stdin=json.dumps(user("zed")) + "\n")
        assert event_count(conn) == 0
    assert done.returncode == 2, done.stdout
    assert done.stdout == ""
    # one line for the error, then the run's last line: what was committed, what comes next
    error, summary = done.stderr.splitlines()
    assert "300ms (LEDGER_LOCK_TIMEOUT)" in error and "nothing was written" in error
    assert "0 lines answered" in summary and "first line not committed is line 1" in summary
    assert event_count(conn) == 0


def test_the_python_api_raises_lock_timeout_and_the_ledger_stays_usable(
    settings: Settings, conn: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEDGER_LOCK_TIMEOUT", "200ms")
    configured = ledger.settings(settings.url, settings.schema)
    assert configured.lock_timeout_ms == 200
    with api.open_ledger(configured, pool_size=1) as app:
        with log_locked_by_another(settings):
            with pytest.raises(ledger.LockTimeout, match="LEDGER_LOCK_TIMEOUT"):
                ledger.append(app, ledger.RegisterUser(user_id="zed"))
            assert event_count(conn) == 0
        # the one pooled connection was left outside any transaction
        assert ledger.append(app, ledger.RegisterUser(user_id="zed")).status == "accepted"
    assert event_count(conn) == 1


@pytest.mark.parametrize("value", ["5", "0s", "-1s", "5 sec", "1.5s", "abc", "597h"])
def test_a_bad_lock_timeout_is_a_configuration_error_naming_the_variable(
    cli_env: dict[str, str], conn: Conn, value: str
) -> None:
    done = cli(cli_env | {"LEDGER_LOCK_TIMEOUT": value}, "append", stdin=json.dumps(user("z")))
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith(f"ledger: LEDGER_LOCK_TIMEOUT {value!r} is not a lock timeout")
    assert event_count(conn) == 0
