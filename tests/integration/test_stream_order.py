"""No event is ever skipped: positions cannot be overtaken, and holes are passed.

Several processes append at once (colliding on the same payments, so that losing
appends roll back and leave holes in the positions), a connection keeps inserting and
rolling back by hand (more holes), and two followers read the live log: the
``ledger events --follow`` command and ``ledger.read_events(follow=True)``. Each must
see every committed position exactly once, in order, and reach the head without
waiting on any hole.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import psycopg
import pytest

import ledger
from ledger import api
from ledger.config import Settings
from ledger.service import Ledger
from tests import citus_support
from tests.support import append, catalogue, complete, foreign_user_state, grant, play, user

Conn = psycopg.Connection[Any]
WRITERS = 4
ROUNDS = int(os.environ.get("LEDGER_FAULT_RUNS", "3"))
RAW_EVENT = (
    "INSERT INTO ledger_events (originator_id, originator_version, topic, state)"
    f" VALUES (gen_random_uuid(), 1, 'UserRegistered', convert_to('{foreign_user_state()}', 'UTF8'))"
)


def deliver(url: str, schema: str, lines: list[str]) -> int:
    with api.open_ledger(Settings(url=url, schema=schema)) as app:
        return sum(1 for _, r in api.append_lines(app, lines) if r.status == "accepted")


def writer_lines(writer: int, round_: int) -> list[str]:
    """Payments every writer also sends (only one append of each wins; the others roll
    back), payments of its own, and heartbeats of its own viewer."""
    shared = [complete(f"pi_{round_}_{n}", customer="alice") for n in range(15)]
    own = [complete(f"pi_{round_}_w{writer}_{n}", customer="bob") for n in range(10)]
    viewer = f"viewer{writer}"
    beats = [
        play(viewer, position=(n * 7) % 100, at=f"2026-02-{round_ + 1:02d}T10:{n:02d}:00+00:00")
        for n in range(25)
    ]
    lines = [json.dumps(c) for c in shared + own + beats]
    random.Random(writer * 100 + round_).shuffle(lines)
    return lines


@pytest.mark.single_server(citus_support.GLOBAL_ORDER)
def test_followers_see_every_committed_position_once_in_order_under_load(
    ledger_app: Ledger, settings: Settings, conn: Conn, cli_env: dict[str, str]
) -> None:
    viewers = [f"viewer{w}" for w in range(WRITERS)]
    append(ledger_app, *catalogue(), *[user(v) for v in viewers], *[grant(v) for v in viewers])
    command = subprocess.Popen(
        [sys.executable, "-m", "ledger", "events", "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env,
    )
    by_command: list[int] = []
    by_python: list[int] = []
    stop = threading.Event()

    def read_command() -> None:
        assert command.stdout is not None
        for line in command.stdout:
            by_command.append(json.loads(line)["position"])

    def read_python() -> None:
        fast = ledger.Backoff(first=0.001, longest=0.02)
        for record in ledger.read_events(settings, follow=True, stop=stop, backoff=fast):
            by_python.append(record.position)

    def roll_back(done: threading.Event) -> None:
        with psycopg.connect(settings.url, autocommit=True) as raw:
            raw.execute(psycopg.sql.SQL("SET search_path TO {}").format(
                psycopg.sql.Identifier(settings.schema)))  # fmt: skip
            while not done.is_set():
                with raw.transaction(force_rollback=True):
                    raw.execute(RAW_EVENT)
                time.sleep(0.005)

    readers = [threading.Thread(target=read_command), threading.Thread(target=read_python)]
    for reader in readers:
        reader.start()
    context = multiprocessing.get_context("spawn")
    # one pool of writer processes for every round (each round's appends still from
    # WRITERS processes at once, each opening its own ledger): a pool per round spawned
    # WRITERS new interpreters a round, about half a second of CPU each
    try:
        with context.Pool(WRITERS) as pool:
            for round_ in range(ROUNDS):
                writing_done = threading.Event()
                holes = threading.Thread(target=roll_back, args=(writing_done,))
                holes.start()
                accepted = pool.starmap(
                    deliver,
                    [(settings.url, settings.schema, writer_lines(w, round_)) for w in range(WRITERS)],
                    chunksize=1,
                )  # fmt: skip
                writing_done.set()
                holes.join()
                assert sum(accepted) == 15 + WRITERS * (10 + 25)
        committed = [r[0] for r in conn.execute(
            "SELECT notification_id FROM ledger_events ORDER BY notification_id")]  # fmt: skip
        head = committed[-1]
        _until(lambda: by_command[-1:] == [head] and by_python[-1:] == [head])
    finally:
        stop.set()
        command.send_signal(signal.SIGTERM)
        command.wait(timeout=60)
        for reader in readers:
            reader.join(timeout=60)
    assert command.returncode == 0
    assert by_command == committed, "the command saw each committed position once, in order"
    assert by_python == committed, "so did the Python follower"
    assert head - len(committed) > WRITERS, "and there were holes to pass"


@pytest.mark.single_server(citus_support.GLOBAL_LOCK)
def test_an_insert_that_skips_the_recorder_still_takes_the_lock_first(
    ledger_app: Ledger, settings: Settings, conn: Conn
) -> None:
    """A foreign INSERT (no LOCK TABLE) holds the log's EXCLUSIVE lock from its first
    statement, so an append that starts after it waits and commits a higher position:
    it cannot overtake a lower one that is still to commit."""
    append(ledger_app, user("alice"))
    with psycopg.connect(settings.url) as foreign:
        foreign.execute(psycopg.sql.SQL("SET search_path TO {}").format(
            psycopg.sql.Identifier(settings.schema)))  # fmt: skip
        foreign.execute(RAW_EVENT + " RETURNING notification_id")
        pid = foreign.info.backend_pid
        locks = conn.execute(
            "SELECT mode FROM pg_locks WHERE pid = %s AND relation = 'ledger_events'::regclass",
            (pid,),
        ).fetchall()
        assert ("ExclusiveLock",) in locks
        appended: list[int | None] = []
        appender = threading.Thread(
            target=lambda: appended.extend(r.position for r in append(ledger_app, user("bob")))
        )
        appender.start()
        # the event: the append's backend waits for the log's lock, blocked by the foreign one
        deadline = time.monotonic() + 60
        while conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE relation = 'ledger_events'::regclass"
            " AND NOT granted AND %s = ANY(pg_blocking_pids(pid)))",
            (pid,),
        ).fetchone() != (True,):
            assert appender.is_alive() and time.monotonic() < deadline
            time.sleep(0.01)
        assert appender.is_alive() and appended == [], "the append waits for the foreign insert"
        foreign.commit()
    appender.join(30)
    positions = [r.position for r in ledger.read_events(settings)]
    assert appended == [3] and positions == [1, 2, 3]


@pytest.mark.single_server(citus_support.GLOBAL_LOCK)
@pytest.mark.parametrize("statement", ["COPY", "INSERT ... SELECT"])
def test_every_kind_of_insert_takes_the_lock(
    settings: Settings, conn: Conn, statement: str
) -> None:
    with psycopg.connect(settings.url) as foreign:
        foreign.execute(psycopg.sql.SQL("SET search_path TO {}").format(
            psycopg.sql.Identifier(settings.schema)))  # fmt: skip
        if statement == "COPY":
            with foreign.cursor().copy(
                "COPY ledger_events (originator_id, originator_version, topic, state) FROM STDIN"
            ) as copy:
                copy.write_row(
                    (
                        "00000000-0000-4000-8000-000000000001",
                        1,
                        "UserRegistered",
                        foreign_user_state().encode(),
                    )
                )
        else:
            foreign.execute(
                "INSERT INTO ledger_events (originator_id, originator_version, topic, state)"
                " SELECT gen_random_uuid(), 1, 'UserRegistered', convert_to(%s, 'UTF8')"
                " FROM generate_series(1, 3)",
                (foreign_user_state(),),
            )
        locks = conn.execute(
            "SELECT mode FROM pg_locks WHERE pid = %s AND relation = 'ledger_events'::regclass",
            (foreign.info.backend_pid,),
        ).fetchall()
        foreign.rollback()
    assert ("ExclusiveLock",) in locks


def _until(condition: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the followers did not reach the head"
        time.sleep(0.02)
