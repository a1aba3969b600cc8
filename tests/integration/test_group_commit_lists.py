"""Group commit of lists: ``append_all`` (several commands queued as one caller) answers and
writes as ``execute_batch`` one by one, alone or queued beside single appends, and a list
without room in the queue is refused whole (the lists' part of ``test_group_commit.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

import ledger
from ledger import api
from ledger.commands.results import Result
from ledger.config import Settings
from ledger.database.connections import connect
from tests.group_callers import (
    Conn,
    ListCallers,
    command,
    log_locked,
    patient,
    wait_for,
    waiting_for_the_log,
)
from tests.support import (
    append,
    catalogue,
    complete,
    dump_all,
    event_count,
    log_of,
    play,
    refund,
    statuses,
    user,
)

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


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return patient(settings)


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
