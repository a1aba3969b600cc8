"""Group commit under Ctrl-C: a real SIGINT to a list's caller waiting in the queue, while it
leads, or after its leader took its group takes out only its own commands and hands the lead
on (the interrupts' part of ``test_group_commit.py``).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest

from ledger import api
from ledger.commands.base import Command
from ledger.commands.results import Result
from ledger.config import Settings
from ledger.service import group_commit
from tests.group_callers import (
    Conn,
    ListCallers,
    command,
    log_locked,
    no_lock_on_the_log,
    patient,
    wait_for,
    waiting_for_the_log,
)
from tests.support import (
    append,
    catalogue,
    event_count,
    statuses,
    user,
)


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


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return patient(settings)


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
    wait_for(lambda: no_lock_on_the_log(conn))


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
