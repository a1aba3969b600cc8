"""Group commit: concurrent ``ledger.append`` calls share transactions, and no answer changes.

Each test that needs callers to queue holds the log's lock from another connection (as a
long transaction of another process would), so that the first group waits at its append
and the others gather behind it: what is grouped is then certain, not a matter of timing.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

import ledger
from ledger import api
from ledger.commands.base import Command
from ledger.commands.parsing import parse_command
from ledger.commands.results import Result
from ledger.config import Settings
from ledger.database.connections import connect
from ledger.service import Ledger, group_commit
from ledger.service import application as service
from tests import citus_support
from tests.support import (
    append,
    catalogue,
    complete,
    dump_all,
    event_count,
    play,
    refund,
    statuses,
    user,
)

Conn = psycopg.Connection[Any]


def command(fields: dict[str, Any]) -> Command:
    return parse_command(json.dumps(fields))


def transactions(conn: Conn) -> int:
    """How many transactions wrote the log's events (each commit stamps its own xmin). On a
    distributed log by node as well: each worker numbers its transactions itself, so two
    workers' transactions can carry the same xmin (counted as one, the test failed alone on
    a fresh cluster); a transaction of two workers counts once on each, as its two xmins
    did before."""
    rows = conn.execute("SELECT DISTINCT xmin::text, organization_id FROM ledger_events").fetchall()
    placed = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_dist_partition"
        " WHERE logicalrelid = 'ledger_events'::regclass)"
        if citus_support.distribute_requested()
        else "SELECT false"
    ).fetchone()
    if not (placed and placed[0]):
        return len({xmin for xmin, _ in rows})
    node: dict[Any, int] = {}
    for organization in {o for _, o in rows}:
        found = conn.execute(
            "SELECT groupid FROM pg_dist_placement WHERE shardid ="
            " get_shard_id_for_distribution_column('ledger_events'::regclass, %s)",
            (organization,),
        ).fetchone()
        assert found is not None
        node[organization] = int(found[0])
    return len({(xmin, node[o]) for xmin, o in rows})


def waiting_for_the_log(conn: Conn) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE relation = 'ledger_events'::regclass AND NOT granted"
    ).fetchone()
    return int(row[0]) if row else 0


def wait_for(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    done = threading.Event()
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        done.wait(0.02)
    raise AssertionError("the condition never held")


@contextmanager
def log_locked(settings: Settings) -> Iterator[Conn]:
    """The log's lock held by another connection until the block ends (then committed)."""
    with connect(settings) as holder:
        holder.execute("LOCK TABLE ledger_events IN EXCLUSIVE MODE")
        yield holder
        holder.commit()


class Callers:
    """Threads each calling ``ledger.append`` once; their answers or exceptions."""

    def __init__(self, app: Ledger) -> None:
        self.app = app
        self.threads: list[threading.Thread] = []
        self.outcomes: dict[int, Result | BaseException] = {}

    def start(self, key: int, cmd: Command) -> None:
        def call() -> None:
            try:
                self.outcomes[key] = ledger.append(self.app, cmd)
            except BaseException as error:
                self.outcomes[key] = error

        thread = threading.Thread(target=call)
        self.threads.append(thread)
        thread.start()

    def join(self) -> dict[int, Result | BaseException]:
        for thread in self.threads:
            thread.join(timeout=60)
            assert not thread.is_alive()
        return self.outcomes


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
    assert conn.execute(
        "SELECT count(*) FROM pg_locks WHERE relation = 'ledger_events'::regclass"
    ).fetchone() == (0,)


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
            wait_for(lambda: waiting_for_the_log(conn) == 1)
            callers.start(1, command(user("b")))
            callers.start(2, command(user("c")))
            outcomes = callers.join()
    assert isinstance(outcomes[0], ledger.LockTimeout)
    assert all(isinstance(outcomes[n], ledger.LockTimeout) for n in (1, 2))
    assert conn.execute("SELECT count(*) FROM users WHERE id IN ('a','b','c')").fetchone() == (0,)


# --- append_all: several commands queued as one caller ---------------------------------

VIEWERS = ("alice", "bob")
PAID = complete("pi_0", customer="alice", amount=1000, fees=(100, 300))


def choices() -> st.SearchStrategy[dict[str, Any]]:
    """Commands over a few ids, so that any list mixes acceptances, duplicates (the same
    command again, or the same idempotency key), conflicts and rejections."""
    customers = st.sampled_from(["alice", "bob", "bob", "carol", "nobody"])
    intents = st.sampled_from(["pi_0", "pi_0", "pi_1", "pi_2"])
    return st.one_of(
        st.sampled_from(["alice", "carol", "dave"]).map(user),
        st.builds(
            lambda intent, customer, amount: complete(
                intent, customer=customer, amount=amount, fees=(100, 300)
            ),
            intents,
            customers,
            st.sampled_from([1000, 1999]),
        ),
        st.builds(
            lambda intent, n, amount: refund(intent, f"re_{n}", amount),
            intents,
            st.integers(0, 2),
            st.sampled_from([300, 1500]),
        ),
        st.builds(
            lambda viewer, position, key: play(viewer, position) | {"idempotency_key": key},
            st.sampled_from(VIEWERS),
            st.integers(0, 100),
            st.sampled_from(["hb-1", "hb-2", "hb-3"]),
        ),
    )


def log_of(conn: Conn) -> list[tuple[Any, ...]]:
    """The log's events in order, without what the clock stamps (the state's timestamp).
    A person's aggregates are keyed by their random subject (docs/privacy.md), so each
    aggregate is named by where it first appears, not by its id."""
    rows = conn.execute(
        "SELECT notification_id, originator_id, originator_version, topic "
        "FROM ledger_events ORDER BY notification_id"
    ).fetchall()
    first: dict[Any, int] = {}
    return [(n, first.setdefault(o, len(first)), v, topic) for n, o, v, topic in rows]


@hyp_settings(max_examples=12)
@given(
    fields=st.lists(choices(), min_size=4, max_size=16),
    group_max=st.sampled_from([1, 2, 3, 256]),
)
def test_append_all_answers_and_writes_as_execute_batch_one_by_one(
    fresh: Callable[[], Settings], fields: list[dict[str, Any]], group_max: int
) -> None:
    """Whatever the mix and however the group bound cuts the list into groups, the
    answers, positions, rows and log are those of the same commands one by one."""
    commands = [command(f) for f in fields]
    grouped_at, alone_at = replace(fresh(), group_max=group_max), fresh()
    with (
        api.open_ledger(grouped_at) as grouped,
        api.open_ledger(alone_at) as alone,
        connect(grouped_at, autocommit=True) as grouped_conn,
        connect(alone_at, autocommit=True) as alone_conn,
    ):
        for app in (grouped, alone):
            append(app, *catalogue(), PAID)
        answers = api.append_parsed(grouped, commands)
        expected = alone.execute_batch(commands, atomic=False)
        assert all(isinstance(a, Result) for a in answers)
        assert [a.as_dict() for a in answers] == [e.as_dict() for e in expected]  # type: ignore[union-attr]
        assert dump_all(grouped_conn) == dump_all(alone_conn)
        assert log_of(grouped_conn) == log_of(alone_conn)


class ListCallers(Callers):
    """Threads each calling ``ledger.append_parsed`` with a list once."""

    def __init__(self, app: Ledger) -> None:
        super().__init__(app)
        self.lists: dict[int, list[Result | BaseException] | BaseException] = {}

    def start_list(self, key: int, cmds: list[Command]) -> None:
        def call() -> None:
            try:
                self.lists[key] = api.append_parsed(self.app, cmds)
            except BaseException as error:
                self.lists[key] = error

        thread = threading.Thread(target=call)
        self.threads.append(thread)
        thread.start()


def registered_once(conn: Conn) -> dict[str, int]:
    rows = conn.execute("SELECT id, count(*) FROM users GROUP BY id").fetchall()
    return {str(user_id): int(n) for user_id, n in rows}


def test_lists_and_single_appends_queued_together_are_each_answered_once(
    settings: Settings, conn: Conn
) -> None:
    """Lists from several threads and single commands from others, all queued behind one
    group while the log is locked, with a group bound that cuts lists apart and hands the
    lead from one caller to another in the middle of a list: every command is answered,
    every user is registered once whoever registered it first, and nobody is left
    waiting."""
    with api.open_ledger(replace(settings, group_max=3)) as app:
        append(app, *catalogue())
        before = event_count(conn)
        callers = ListCallers(app)
        lists = {
            key: [command(user(f"shared{(key + n) % 4}")) for n in range(2)]
            + [command(user(f"l{key}_{n}")) for n in range(key + 1)]
            for key in range(4)
        }
        with log_locked(settings):
            callers.start(100, command(user("first")))
            wait_for(lambda: waiting_for_the_log(conn) == 1)
            queued = 0
            for key, cmds in lists.items():
                callers.start_list(key, cmds)
                queued += len(cmds)
                callers.start(200 + key, command(user(f"shared{key}")))
                queued += 1
                wait_for(lambda q=queued: app.groups.waiting == q)  # type: ignore[misc]
        singles = callers.join()
        assert app.groups.waiting == 0
    names: list[tuple[str, Result]] = []
    for key, outcome in singles.items():
        assert isinstance(outcome, Result), outcome
        names.append(("first" if key == 100 else f"shared{key - 200}", outcome))
    for key, cmds in lists.items():
        answered = callers.lists[key]
        assert isinstance(answered, list) and len(answered) == len(cmds)
        for cmd, outcome in zip(cmds, answered, strict=True):
            assert isinstance(outcome, Result), outcome
            names.append((cmd.user_id, outcome))  # type: ignore[attr-defined]
        # one caller's commands are decided and written in its list's order
        positions = [r.position for r in answered if isinstance(r, Result) and r.position]
        assert positions == sorted(positions)
    accepted = sorted(name for name, r in names if r.status == "accepted")
    assert accepted == sorted({name for name, _ in names})  # each user accepted once
    assert {r.status for _, r in names} == {"accepted", "duplicate"}
    assert registered_once(conn) == dict.fromkeys([*accepted, "alice", "bob", "creator"], 1)
    assert event_count(conn) == before + len(accepted)


def test_lists_and_single_appends_running_freely_are_each_answered_once(
    settings: Settings, conn: Conn
) -> None:
    """The same without the lock to line callers up: whatever interleaving the threads
    find, each command gets one answer and each user is registered once."""
    with api.open_ledger(replace(settings, group_max=4)) as app:
        append(app, *catalogue())
        callers = ListCallers(app)
        lists = {
            key: [command(user(f"u{(key * 5 + n) % 23}")) for n in range(7)] for key in range(6)
        }
        for key, cmds in lists.items():
            callers.start_list(key, cmds)
            for n in range(3):
                callers.start(key * 10 + n, command(user(f"u{(key * 3 + n) % 23}")))
        singles = callers.join()
        assert app.groups.waiting == 0
    outcomes: list[tuple[str, Result | BaseException]] = [
        (f"u{(key // 10 * 3 + key % 10) % 23}", outcome) for key, outcome in singles.items()
    ]
    for key, cmds in lists.items():
        answered = callers.lists[key]
        assert isinstance(answered, list) and len(answered) == len(cmds)
        outcomes.extend((c.user_id, r) for c, r in zip(cmds, answered, strict=True))  # type: ignore[attr-defined]
    assert all(isinstance(r, Result) for _, r in outcomes), outcomes
    accepted = [name for name, r in outcomes if isinstance(r, Result) and r.status == "accepted"]
    names = {name for name, _ in outcomes}
    assert sorted(accepted) == sorted(names)
    assert registered_once(conn) == dict.fromkeys([*names, "alice", "bob", "creator"], 1)


def test_a_list_without_room_in_the_queue_is_refused_whole_and_writes_nothing(
    settings: Settings, conn: Conn
) -> None:
    with api.open_ledger(replace(settings, queue_max=4)) as app:
        append(app, *catalogue())
        before = event_count(conn)
        with pytest.raises(ledger.Overloaded, match="LEDGER_QUEUE_MAX"):
            api.append_parsed(app, [command(user(f"big{n}")) for n in range(5)])  # never fits
        assert app.groups.waiting == 0
        callers = ListCallers(app)
        with log_locked(settings):
            callers.start(0, command(user("u0")))
            wait_for(lambda: waiting_for_the_log(conn) == 1)  # taken: no longer queued
            callers.start_list(1, [command(user("u1")), command(user("u2"))])
            wait_for(lambda: app.groups.waiting == 2)
            with pytest.raises(ledger.Overloaded, match="LEDGER_QUEUE_MAX"):
                api.append_parsed(app, [command(user(f"r{n}")) for n in range(3)])
            assert app.groups.waiting == 2  # none of the three was queued
            callers.start_list(2, [command(user("u3")), command(user("u4"))])  # just fits
            wait_for(lambda: app.groups.waiting == 4)
        outcomes = callers.join()
        assert statuses([outcomes[0]]) == ["accepted"]  # type: ignore[list-item]
        for key in (1, 2):
            assert statuses(callers.lists[key]) == ["accepted"] * 2  # type: ignore[arg-type]
        assert app.groups.waiting == 0
        assert api.append_parsed(app, []) == []  # an empty list: nothing to queue, no error
    assert event_count(conn) == before + 5
    refused = conn.execute(
        "SELECT count(*) FROM users WHERE id LIKE 'r%' OR id LIKE 'big%'"
    ).fetchone()
    assert refused == (0,)


def waiting_in_append_all(thread: threading.Thread) -> bool:
    """The thread is blocked on its wake-up in ``append_all`` (not between queueing and
    waiting, where an interrupt would be outside the code that handles it)."""
    frame = sys._current_frames().get(thread.ident or 0)
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return names[:2] == ["wait", "append_all"]  # ``_Wake.wait``: one frame, a bare lock


@contextmanager
def interrupted_when(condition: Callable[[], bool]) -> Iterator[list[str]]:
    """SIGINT to this (the main) thread once ``condition`` holds, as Ctrl-C reaches a
    program: the interrupt is real, not raised by the test. It is sent even if the
    condition never holds (then the list yielded names the failure), so the block never
    waits for ever."""
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    main = threading.main_thread()
    assert threading.current_thread() is main
    failures: list[str] = []

    def interrupt() -> None:
        try:
            wait_for(condition)
        except AssertionError as error:
            failures.append(str(error))
        finally:
            signal.pthread_kill(main.ident or 0, signal.SIGINT)

    interrupter = threading.Thread(target=interrupt)
    interrupter.start()
    try:
        yield failures
    finally:
        interrupter.join(timeout=60)
        assert not interrupter.is_alive()


def test_an_interrupt_of_a_list_waiting_in_the_queue_takes_out_only_its_commands(
    settings: Settings, conn: Conn
) -> None:
    """Ctrl-C reaches a caller whose list waits between other callers' commands: its
    commands leave the queue unwritten, and the callers before and after it are answered
    as if it had never queued (the lead passes over its commands)."""
    with api.open_ledger(replace(settings, group_max=2)) as app:
        append(app, *catalogue())
        before = event_count(conn)
        callers = ListCallers(app)
        main = threading.main_thread()
        with log_locked(settings):
            callers.start(0, command(user("a")))
            wait_for(lambda: waiting_for_the_log(conn) == 1)
            callers.start_list(1, [command(user("b1")), command(user("b2"))])
            wait_for(lambda: app.groups.waiting == 2)

            def queued_behind() -> bool:
                if app.groups.waiting == 5 and not callers.outcomes and len(callers.threads) == 2:
                    callers.start(2, command(user("c")))  # after the interrupted list
                return app.groups.waiting == 6 and waiting_in_append_all(main)

            with interrupted_when(queued_behind) as failures, pytest.raises(KeyboardInterrupt):
                api.append_parsed(app, [command(user(f"m{n}")) for n in range(3)])
            assert failures == []
            assert app.groups.waiting == 3  # b1, b2 and c: the three m left the queue
        outcomes = callers.join()
        assert app.groups.waiting == 0
    assert statuses([outcomes[0], outcomes[2]]) == ["accepted"] * 2  # type: ignore[list-item]
    assert statuses(callers.lists[1]) == ["accepted"] * 2  # type: ignore[arg-type]
    assert event_count(conn) == before + 4
    assert conn.execute("SELECT count(*) FROM users WHERE id LIKE 'm%'").fetchone() == (0,)


def test_an_interrupt_of_a_list_while_it_leads_hands_the_lead_past_its_own_commands(
    settings: Settings, conn: Conn
) -> None:
    """Ctrl-C reaches a caller while it commits a group of its own list (waiting for the
    log's lock): that group is abandoned and not written, the lead it hands on lands on
    its own next command, which must pass it to the next caller, who commits."""
    with api.open_ledger(replace(settings, group_max=2)) as app:
        append(app, *catalogue())
        before = event_count(conn)
        callers = ListCallers(app)
        with log_locked(settings):

            def leading_and_followed() -> bool:
                if waiting_for_the_log(conn) == 1 and not callers.threads:
                    callers.start(0, command(user("c")))  # behind the list's third
                return waiting_for_the_log(conn) == 1 and app.groups.waiting == 2

            with (
                interrupted_when(leading_and_followed) as failures,
                pytest.raises(KeyboardInterrupt),
            ):
                api.append_parsed(app, [command(user(f"m{n}")) for n in range(3)])
            assert failures == []
            wait_for(lambda: app.groups.waiting == 0)  # c took the lead, waits for the log
        outcomes = callers.join()
    assert statuses([outcomes[0]]) == ["accepted"]  # type: ignore[list-item]
    assert event_count(conn) == before + 1
    assert conn.execute("SELECT count(*) FROM users WHERE id LIKE 'm%'").fetchone() == (0,)
    assert conn.execute(
        "SELECT count(*) FROM pg_locks WHERE relation = 'ledger_events'::regclass"
    ).fetchone() == (0,)


def test_an_interrupt_after_the_leader_took_its_group_answers_it_and_hands_the_lead_on(
    settings: Settings, conn: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interrupt can land between any two steps of the leader, and one that lands after
    it took its group from the queue, before it began the commit, must still answer that
    group (``GroupAbandoned``: nothing was written, sending again is safe) and hand the
    lead on; otherwise the group's other callers, every later caller and ``close`` wait
    for ever. The interrupt is injected at the leader's first step after the take (reading
    the clock), in the thread that leads that group, as test_append_limits injects one
    into the commit's pipeline."""
    app = api.open_ledger(settings)
    append(app, *catalogue())
    outcomes: dict[str, list[Result | BaseException] | BaseException] = {}
    started: list[threading.Thread] = []

    def caller(name: str, cmds: list[Command]) -> threading.Thread:
        def call() -> None:
            try:
                outcomes[name] = api.append_parsed(app, cmds)
            except BaseException as error:
                outcomes[name] = error

        thread = threading.Thread(target=call, daemon=True)  # never keeps pytest alive
        started.append(thread)
        thread.start()
        return thread

    injected: list[str] = []
    victim: list[threading.Thread] = []
    clock = time.perf_counter

    def perf_counter() -> float:
        if victim and threading.current_thread() is victim[0] and not injected:
            injected.append(victim[0].name)
            raise KeyboardInterrupt("injected: an interrupt after the take")
        return clock()

    monkeypatch.setattr(group_commit, "time", types.SimpleNamespace(perf_counter=perf_counter))
    with log_locked(settings):
        caller("leader", [command(user("x"))])
        wait_for(lambda: waiting_for_the_log(conn) == 1)
        victim.append(caller("interrupted", [command(user("u1"))]))  # leads the next group
        wait_for(lambda: app.groups.waiting == 1)
        caller("follower", [command(user("u2")), command(user("u3"))])
        wait_for(lambda: app.groups.waiting == 3)
    for thread in started:
        thread.join(timeout=60)
        assert not thread.is_alive(), f"a caller was left waiting: {outcomes}"
    assert injected, "the interrupt was never injected: the leader no longer reads the clock"
    assert isinstance(outcomes["interrupted"], KeyboardInterrupt)
    follower = outcomes["follower"]
    assert isinstance(follower, list)
    assert all(isinstance(a, group_commit.GroupAbandoned) for a in follower), follower
    later = caller("later", [command(user("u2"))])  # the lead was handed on: a new group
    later.join(timeout=60)
    assert not later.is_alive()
    assert statuses(outcomes["later"]) == ["accepted"]  # type: ignore[arg-type]
    closer = threading.Thread(target=app.close, daemon=True)
    closer.start()
    closer.join(timeout=60)
    assert not closer.is_alive()
    assert statuses(outcomes["leader"]) == ["accepted"]  # type: ignore[arg-type]
    users = conn.execute("SELECT id FROM users WHERE id IN ('u1', 'u2', 'u3')").fetchall()
    assert users == [("u2",)]
