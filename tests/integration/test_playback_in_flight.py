"""Two groups of heartbeats in flight on one server (issue 26, migration 0029): a group no
longer waits for the one before it to commit, so positions may commit out of their order;
the stream's reader (``ledger.playback.stream``) reads only below every group still in
flight, so a reader following the stream sees every committed record exactly once, in
position order, and a rolled-back group is a gap it passes.

A group is held in flight by calling the store's statement (``playback_record``, what the
store's lane runs in autocommit) inside a transaction of the test's own and not committing:
no sleep, the group is in flight until the test commits or rolls it back."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import api
from ledger.commands.access import RecordPlayback
from ledger.commands.parsing import parse_command
from ledger.config import Settings
from ledger.database.connections import connect
from ledger.domain import clock
from ledger.playback import stream
from ledger.playback.decide import Heartbeat
from ledger.playback.group import GroupEncoder
from ledger.playback.store import stream_lock
from ledger.service import Ledger
from tests import citus_support
from tests.support import append, catalogue, grant, play, t, user

Conn = psycopg.Connection[Any]

pytestmark = pytest.mark.single_server(citus_support.PLAYBACK_RECORD)

_seconds = itertools.count(1)  # each heartbeat its own payload: its own identity


def _heartbeat(user: str = "alice") -> dict[str, Any]:
    """A distinct heartbeat of the day whose partition ``_ready`` created."""
    return play(user, next(_seconds), duration=10**6, at=t(5, 12))


WRITERS = [f"viewer-{w}" for w in range(4)]
"""One viewer a writer: groups in flight at once touch no row in common (in one process a
(user, content) always goes to the same lane; two processes' groups on one pair wait for
each other's row, as before)."""


def _ready(ledger_app: Ledger) -> int:
    """The catalogue, alice's, bob's and the writers' access, and a first heartbeat (its
    day's partition created); its position."""
    append(
        ledger_app,
        *catalogue(),
        grant("alice"),
        grant("bob"),
        *[user(w) for w in WRITERS],
        *[grant(w) for w in WRITERS],
    )
    (first,) = append(ledger_app, _heartbeat())
    assert first.status == "accepted" and first.position is not None
    return first.position


def _begin_group(held: Conn, schema: str, *lines: dict[str, Any]) -> list[int]:
    """The group decided and written in ``held``'s transaction, left open: in flight. Its
    positions."""
    parsed = [parse_command(json.dumps(line)) for line in lines]
    heartbeats = [Heartbeat.of(c, clock.now()) for c in parsed if isinstance(c, RecordPlayback)]
    group = GroupEncoder(schema).encode(heartbeats)
    rows = held.execute(
        "SELECT status, position FROM playback_record(%s, %s)", (group, stream_lock(schema))
    ).fetchall()
    assert [r[0] for r in rows] == ["accepted"] * len(lines)
    return [int(r[1]) for r in rows]


def _positions(reader: Conn, schema: str, after: int) -> list[int]:
    return [r["position"] for r in stream.read(reader, schema, after)]


def test_a_reader_stops_below_a_group_in_flight_and_sees_it_once_it_commits(
    ledger_app: Ledger, settings: Settings
) -> None:
    first = _ready(ledger_app)
    with (
        connect(settings) as held,
        connect(settings, autocommit=True) as reader,
    ):
        in_flight = _begin_group(held, settings.schema, _heartbeat(), _heartbeat())
        # another group commits meanwhile: it never waited for the one in flight
        (later,) = append(ledger_app, _heartbeat("bob"))
        assert later.position is not None and later.position > max(in_flight)
        # committed but above a group in flight: not read yet; what is read is a prefix
        assert _positions(reader, settings.schema, 0) == [first]
        assert _positions(reader, settings.schema, first) == []
        held.commit()
        # the group committed: read once, in position order, then the later one
        assert _positions(reader, settings.schema, first) == [*in_flight, later.position]
        assert _positions(reader, settings.schema, later.position) == []


def test_a_rolled_back_group_is_a_gap_the_reader_passes(
    ledger_app: Ledger, settings: Settings
) -> None:
    first = _ready(ledger_app)
    with (
        connect(settings) as held,
        connect(settings, autocommit=True) as reader,
    ):
        gone = _begin_group(held, settings.schema, _heartbeat())
        (later,) = append(ledger_app, _heartbeat("bob"))
        assert later.position is not None
        assert _positions(reader, settings.schema, first) == []
        held.rollback()
        assert _positions(reader, settings.schema, first) == [later.position]
        assert later.position > gone[0]  # the gap: the rolled-back group's position


def test_a_reader_in_repeatable_read_is_refused_with_why(
    ledger_app: Ledger, settings: Settings
) -> None:
    _ready(ledger_app)
    with connect(settings) as reader:
        reader.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        with pytest.raises(RuntimeError, match="READ COMMITTED, not repeatable read"):
            stream.read(reader, settings.schema, 0)
        reader.rollback()


@st.composite
def schedules(draw: st.DrawFn) -> list[tuple[str, int, int, bool]]:
    """Writers (2 to 4) each beginning a group (1 to 3 heartbeats) and ending it (commit or
    rollback), interleaved in any order with a group's end after its beginning: a list of
    ("begin" | "end", writer, size, commits)."""
    writers = draw(st.integers(min_value=2, max_value=4))
    sizes = [draw(st.integers(min_value=1, max_value=3)) for _ in range(writers)]
    commits = [draw(st.booleans()) for _ in range(writers)]
    order = draw(st.permutations([w for w in range(writers) for _ in range(2)]))
    begun: set[int] = set()
    steps: list[tuple[str, int, int, bool]] = []
    for w in order:
        steps.append(("end" if w in begun else "begin", w, sizes[w], commits[w]))
        begun.add(w)
    return steps


def test_readers_following_writers_that_commit_out_of_order_see_each_record_once_in_order(
    ledger_app: Ledger, settings: Settings
) -> None:
    """For any interleaving of groups begun and ended (committed or rolled back) out of
    order, a reader polling after every step sees exactly the committed records, each once,
    in position order."""
    start = _ready(ledger_app)
    writers = [connect(settings) for _ in range(4)]
    reader = connect(settings, autocommit=True)
    seen: list[int] = []
    committed: list[int] = [start]
    position = 0

    @given(schedules())
    def run(steps: list[tuple[str, int, int, bool]]) -> None:
        nonlocal position
        drawn: dict[int, list[int]] = {}
        for step, writer, size, commits in steps:
            conn = writers[writer]
            if step == "begin":
                group = [_heartbeat(WRITERS[writer]) for _ in range(size)]
                drawn[writer] = _begin_group(conn, settings.schema, *group)
            elif commits:
                conn.commit()
                committed.extend(drawn[writer])
            else:
                conn.rollback()
            batch = _positions(reader, settings.schema, position)
            assert batch == sorted(batch)
            seen.extend(batch)
            if batch:
                position = batch[-1]
            # a prefix: nothing committed below what was read is left unread
            assert sorted(p for p in committed if p <= position) == seen
        assert seen == sorted(committed), "every committed record once, in order"

    try:
        run()
    finally:
        for conn in writers:
            conn.close()
        reader.close()


def _until(condition: Callable[[], bool], seconds: float = 60.0) -> None:
    """Waits for ``condition()`` (an event observed in the database), polling."""
    stop = threading.Event()
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        stop.wait(0.05)
    raise AssertionError("the awaited condition never held")


@pytest.mark.parametrize("held_is_newer", [True, False])
def test_two_groups_in_flight_on_one_pair_leave_the_newest_on_the_row(
    ledger_app: Ledger, settings: Settings, conn: Conn, held_is_newer: bool
) -> None:
    """The race of issue 26 with groups that overlap: a group in flight holds alice's row;
    another group of alice's, from the ledger's lane, waits for that row (seen waiting in
    ``pg_locks``), not for the stream, and once the first commits the row shows the newer
    heartbeat whichever committed last; the stream then reads both once, in order."""
    first = _ready(ledger_app)
    newer = play("alice", 70, duration=100, at=t(5, 14))
    older = play("alice", 30, duration=100, at=t(5, 13))
    held_line, racing_line = (newer, older) if held_is_newer else (older, newer)
    answers: list[Any] = []
    with connect(settings) as held, connect(settings, autocommit=True) as reader:
        in_flight = _begin_group(held, settings.schema, held_line)
        racing = threading.Thread(target=lambda: answers.extend(append(ledger_app, racing_line)))
        racing.start()
        try:
            _until(
                lambda: (
                    reader.execute(
                        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                        "WHERE NOT l.granted AND l.locktype = 'transactionid' "
                        "AND a.datname = current_database()"
                    ).fetchone()
                    != (0,)
                )
            )
            assert not answers, "the racing group waits for the row the held one wrote"
            assert _positions(reader, settings.schema, first) == []
            held.commit()
        finally:
            racing.join(timeout=120)
        assert not racing.is_alive()
        (answer,) = answers
        assert answer.status == "accepted" and answer.position > in_flight[0]
        assert _positions(reader, settings.schema, first) == [*in_flight, answer.position]
    row = conn.execute(
        "SELECT position_seconds, updated_at FROM video_playback WHERE user_id = 'alice'"
    ).fetchone()
    assert row is not None and row[0] == 70, "the newest heartbeat wins"


def test_a_group_in_flight_holds_up_no_erasure_of_another_schema(
    ledger_app: Ledger, settings: Settings, fresh: Callable[[], Settings]
) -> None:
    """The store's writers hold a key shared and an erasure takes it exclusively: one key a
    schema (``stream_lock``). With one key for the whole database, a group in flight in one
    schema held up an erasure in another, and a group queued behind that erasure with it
    (three test processes hung so, each waiting on another's open transaction)."""
    _ready(ledger_app)
    other = fresh()
    other_app = api.open_ledger(other)
    try:
        assert [a.status for a in append(other_app, *catalogue(), user("carol"))] == [
            "accepted"
        ] * 6
        answers: list[str] = []
        erasing = threading.Thread(
            target=lambda: answers.extend(
                a.status
                for a in append(
                    other_app, {"type": "user.erase", "user_id": "carol", "occurred_at": t(6)}
                )
            )
        )
        with connect(settings) as held:
            _begin_group(held, settings.schema, _heartbeat())  # in flight until the rollback
            erasing.start()
            erasing.join(60)
            done = not erasing.is_alive()
            held.rollback()
        erasing.join(60)
        assert done, "the erasure waited for another schema's group in flight"
        assert answers == ["accepted"]
    finally:
        other_app.close()
