"""Group commit: concurrent ``ledger.append`` calls share transactions, and no answer changes.

Each test that needs callers to queue holds the log's lock from another connection (as a
long transaction of another process would), so that the first group waits at its append
and the others gather behind it: what is grouped is then certain, not a matter of timing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

import pytest

import ledger
from ledger import api
from ledger.commands.results import Result
from ledger.config import Settings
from ledger.database.connections import connect
from ledger.service import Ledger
from ledger.service import application as service
from tests import citus_support
from tests.group_callers import (
    Callers,
    Conn,
    command,
    log_locked,
    no_lock_on_the_log,
    patient,
    transactions,
    wait_for,
    waiting_for_the_log,
)
from tests.support import (
    append,
    catalogue,
    complete,
    dump_all,
    event_count,
    refund,
    statuses,
    user,
)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return patient(settings)


def test_a_rejection_in_a_group_takes_out_only_its_own_command(
    ledger_app: Ledger, settings: Settings, conn: Conn, fresh: Callable[[], Settings]
) -> None:
    append(ledger_app, *catalogue())
    group = [
        complete("pi_1", amount=1000, fees=(100, 300)),
        refund("pi_1", "re_1", 5000),  # more than was paid: rejected
        refund("pi_1", "re_2", 400),  # decided on the purchase completed just before it
        complete("pi_1", amount=1000, fees=(100, 300)),  # the first again: a duplicate
        complete("pi_2", customer="nobody"),  # an unknown customer: rejected
        refund("pi_1", "re_3", 600),  # the rest: the purchase is now fully refunded
    ]
    before = event_count(conn)
    results = ledger_app.execute_group([command(c) for c in group])
    assert statuses(results) == [
        "accepted",
        "rejected:invalid_state",
        "accepted",
        "duplicate",
        "rejected:not_found",
        "accepted",
    ]
    assert transactions(conn) == 5 + 1  # the catalogue's five, then the group's one
    positions = [r.position for r in results if r.position is not None]
    assert positions == sorted(positions) and positions[-1] == event_count(conn)
    assert conn.execute("SELECT refunded_amount_cents, status FROM purchases").fetchone() == (
        1000,
        "refunded",
    )
    # the same commands one by one: the same answers, positions and rows
    alone = fresh()
    with api.open_ledger(alone) as other, connect(alone, autocommit=True) as other_conn:
        append(other, *catalogue())
        expected = [other.execute(command(c)) for c in group]
        assert event_count(other_conn) == event_count(conn) > before
        assert dump_all(other_conn) == dump_all(conn)
    assert [r.as_dict(1) for r in results] == [r.as_dict(1) for r in expected]


def test_concurrent_callers_share_transactions_and_are_answered_after_the_commit(
    ledger_app: Ledger, settings: Settings, conn: Conn
) -> None:
    append(ledger_app, *catalogue())
    sizes: list[int] = []
    api.observe_groups(ledger_app, lambda size, seconds: sizes.append(size) if seconds > 0 else 0)
    callers = Callers(ledger_app)
    with log_locked(settings):
        callers.start(0, command(complete("pi_0")))
        wait_for(lambda: waiting_for_the_log(conn) == 1)  # the first group, at its append
        for n in range(1, 12):  # each queued before the next starts: arrival order is n
            callers.start(n, command(complete(f"pi_{n}", customer="bob")))
            wait_for(lambda queued=n: ledger_app.groups.waiting == queued)
        assert callers.outcomes == {}  # nobody is answered before the commit
    outcomes = callers.join()
    assert all(isinstance(r, Result) and r.status == "accepted" for r in outcomes.values())
    assert sizes == [1, 11]
    assert transactions(conn) == 5 + 2
    # the eleven were decided and written in arrival order, each answered with its position
    positions = [outcomes[n].position for n in range(1, 12)]  # type: ignore[union-attr]
    assert positions == sorted(positions)
    assert conn.execute("SELECT count(*) FROM purchases").fetchone() == (12,)


@pytest.mark.single_server(citus_support.GLOBAL_LOCK)
@pytest.mark.parametrize("attempts", [1, service.GROUP_ATTEMPTS])
def test_a_group_the_log_refuses_is_decided_again_and_answers_as_one_by_one(
    attempts: int,
    ledger_app: Ledger,
    settings: Settings,
    conn: Conn,
    fresh: Callable[[], Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another process registers carol between the group's decision and its append: the
    log's key refuses the group. By default the group is decided again on state read from
    the log; with one group attempt, each command falls back to a transaction of its own.
    Either way the answers and rows are those of the commands one by one."""
    monkeypatch.setattr(service, "GROUP_ATTEMPTS", attempts)
    append(ledger_app, *catalogue())
    group = [user("carol"), complete("pi_c", customer="carol"), user("dave")]
    grouped: list[list[Result]] = []
    with api.open_ledger(settings) as other:
        elsewhere: list[Result] = []
        with log_locked(settings):
            writer = threading.Thread(
                target=lambda: elsewhere.append(other.execute(command(user("carol"))))
            )
            writer.start()
            wait_for(lambda: waiting_for_the_log(conn) == 1)  # the other process, first in line
            committer = threading.Thread(
                target=lambda: grouped.append(ledger_app.execute_group([command(c) for c in group]))
            )
            committer.start()
            wait_for(lambda: waiting_for_the_log(conn) == 2)  # the group, decided, behind it
        writer.join(timeout=60)
        committer.join(timeout=60)
    assert statuses(elsewhere) == ["accepted"]
    assert statuses(grouped[0]) == ["duplicate", "accepted", "accepted"]
    alone = fresh()
    with api.open_ledger(alone) as solo, connect(alone, autocommit=True) as solo_conn:
        append(solo, *catalogue(), user("carol"))
        expected = [solo.execute(command(c)) for c in group]
        assert dump_all(solo_conn) == dump_all(conn)
    assert statuses(grouped[0]) == statuses(expected)
    assert transactions(conn) == 5 + 1 + (2 if attempts == 1 else 1)


def test_a_full_queue_refuses_at_once_with_overloaded(settings: Settings, conn: Conn) -> None:
    with api.open_ledger(replace(settings, queue_max=2)) as app:
        append(app, *catalogue())
        before = event_count(conn)
        callers = Callers(app)
        with log_locked(settings):
            callers.start(0, command(user("u0")))
            wait_for(lambda: waiting_for_the_log(conn) == 1)  # taken: no longer queued
            callers.start(1, command(user("u1")))
            callers.start(2, command(user("u2")))
            wait_for(lambda: app.groups.waiting == 2)
            with pytest.raises(ledger.Overloaded, match="LEDGER_QUEUE_MAX"):
                ledger.append(app, command(user("u3")))
        outcomes = callers.join()
        assert statuses([outcomes[n] for n in range(3)]) == ["accepted"] * 3  # type: ignore[misc]
        assert event_count(conn) == before + 3
        assert conn.execute("SELECT count(*) FROM users WHERE id = 'u3'").fetchone() == (0,)


def test_closing_answers_every_queued_caller_then_refuses_and_leaves_no_thread(
    settings: Settings, conn: Conn
) -> None:
    threads_before = set(threading.enumerate())
    app = api.open_ledger(settings)
    append(app, *catalogue())
    callers = Callers(app)
    closer = threading.Thread(target=app.close)
    with log_locked(settings):
        callers.start(0, command(user("u0")))
        wait_for(lambda: waiting_for_the_log(conn) == 1)
        for n in (1, 2, 3):
            callers.start(n, command(user(f"u{n}")))
        wait_for(lambda: app.groups.waiting == 3)
        closer.start()
        wait_for(lambda: app.groups.closed)
        with pytest.raises(ledger.LedgerClosed):
            ledger.append(app, command(user("late")))
        assert closer.is_alive()  # it waits for the callers it must answer
    closer.join(timeout=60)
    assert not closer.is_alive()
    outcomes = callers.join()
    assert statuses([outcomes[n] for n in range(4)]) == ["accepted"] * 4  # type: ignore[misc]
    assert conn.execute("SELECT count(*) FROM users WHERE id = 'late'").fetchone() == (0,)
    leaked = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
    assert leaked == []
    wait_for(lambda: no_lock_on_the_log(conn))


def test_an_error_of_the_group_reaches_each_of_its_callers_and_a_failing_observer_none(
    ledger_app: Ledger, settings: Settings, conn: Conn
) -> None:
    """A lock held too long fails the whole group (``LockTimeout``) for every caller in it;
    an observer that raises changes no answer."""
    api.observe_groups(ledger_app, lambda size, seconds: 1 / 0)
    append(ledger_app, *catalogue())
    assert statuses([ledger.append(ledger_app, command(user("first")))]) == ["accepted"]
    with api.open_ledger(replace(settings, lock_timeout="300ms")) as app:
        callers = Callers(app)
        with log_locked(settings):
            callers.start(0, command(user("a")))
            # seen waiting, or already timed out: its own 300 ms can pass before a look
            wait_for(lambda: waiting_for_the_log(conn) == 1 or 0 in callers.outcomes)
            callers.start(1, command(user("b")))
            callers.start(2, command(user("c")))
            outcomes = callers.join()
    assert isinstance(outcomes[0], ledger.LockTimeout)
    assert all(isinstance(outcomes[n], ledger.LockTimeout) for n in (1, 2))
    assert conn.execute("SELECT count(*) FROM users WHERE id IN ('a','b','c')").fetchone() == (0,)
