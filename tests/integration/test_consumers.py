"""Consumers with a durable checkpoint: each event's effects exactly once, whatever
fails, whoever runs at the same time; rebuilds and downgrades never run them again."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ledger
from ledger import api
from ledger.config import Settings
from ledger.database import migrations
from ledger.database.connections import connect
from ledger.service import Ledger
from tests import citus_support
from tests.support import append, catalogue, cli, complete, foreign_user_state, refund, user

Conn = psycopg.Connection[Any]


class Tally(ledger.Consumer):
    """Writes one row per event it handles (no key: a second handling would show)."""

    name = "tally"
    fail_at: int | None = None  # raise on this position, to test the rollback
    pause = 0.0

    def prepare(self, conn: Conn) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS tally (position bigint NOT NULL, topic text)")

    def handle(self, conn: Conn, record: ledger.EventRecord) -> None:
        if record.position == self.fail_at:
            raise RuntimeError(f"failing at {record.position}")
        conn.execute("INSERT INTO tally VALUES (%s, %s)", (record.position, record.topic))
        if self.pause:
            time.sleep(self.pause)


class Registrations(Tally):
    name = "registrations"
    topics = ("UserRegistered",)


def tally(conn: Conn) -> list[int]:
    return [r[0] for r in conn.execute("SELECT position FROM tally ORDER BY position")]


def positions(settings: Settings, *topics: str) -> list[int]:
    return [r.position for r in ledger.read_events(settings, topics=topics)]


@pytest.mark.single_server(citus_support.GLOBAL_POSITION)
def test_each_event_is_handled_once_and_the_checkpoint_moves_with_the_writes(
    ledger_app: Ledger, settings: Settings, conn: Conn
) -> None:
    append(ledger_app, *catalogue())
    run = ledger.run_consumer(settings, Tally(), size=2)
    assert (run.handled, run.position) == (5, 5)
    assert ledger.consumer_position(settings, "tally") == 5
    assert ledger.run_consumer(settings, Tally()).handled == 0
    append(ledger_app, user("carol"), complete("pi_1"))
    again = ledger.run_consumer(settings, Tally())
    assert again.position == positions(settings)[-1]
    assert tally(conn) == positions(settings)


@pytest.mark.single_server(citus_support.GLOBAL_POSITION)
def test_a_failing_handler_rolls_its_window_back_checkpoint_included(
    ledger_app: Ledger, settings: Settings, conn: Conn
) -> None:
    append(ledger_app, *catalogue(), user("carol"), user("dave"))
    failing = Tally()
    failing.fail_at = 6
    with pytest.raises(RuntimeError, match="failing at 6"):
        ledger.run_consumer(settings, failing, size=4)
    assert tally(conn) == [1, 2, 3, 4], "the first window committed, the second did not"
    assert ledger.consumer_position(settings, "tally") == 4
    assert ledger.run_consumer(settings, Tally(), size=4).handled == 3
    assert tally(conn) == [1, 2, 3, 4, 5, 6, 7]


@pytest.mark.single_server(citus_support.GLOBAL_POSITION)
def test_a_topic_filter_still_moves_the_checkpoint_past_other_events(
    ledger_app: Ledger, settings: Settings, conn: Conn
) -> None:
    append(ledger_app, *catalogue(), complete("pi_1"))
    run = ledger.run_consumer(settings, Registrations(), size=3)
    assert tally(conn) == positions(settings, "UserRegistered")
    assert run.position == positions(settings)[-1]


def test_a_new_consumer_can_start_after_a_position(
    ledger_app: Ledger, settings: Settings, conn: Conn
) -> None:
    append(ledger_app, *catalogue())
    assert ledger.run_consumer(settings, Tally(), start_after=3).handled == 2
    assert tally(conn) == [4, 5]
    assert ledger.run_consumer(settings, Tally(), start_after=0).handled == 0, "only when new"


@pytest.mark.parametrize("name", ["", "Tally", "-x", "a b", "x" * 101, "é", "tally\n"])
def test_a_bad_name_is_refused_naming_the_rule(settings: Settings, name: str) -> None:
    bad = type("Bad", (Tally,), {"name": name})()
    with pytest.raises(ValueError, match="name"):
        ledger.run_consumer(settings, bad)


def consume(url: str, schema: str, seconds: float, pause: float) -> int:
    """One copy of the consumer, following the log for ``seconds``."""
    stop = threading.Event()
    threading.Timer(seconds, stop.set).start()
    copy = Tally()
    copy.pause = pause
    fast = ledger.Backoff(first=0.005, longest=0.05)
    settings = Settings(url=url, schema=schema)
    return ledger.run_consumer(settings, copy, follow=True, stop=stop, size=3, backoff=fast).handled


def consume_until_done(url: str, schema: str, marks: str, pause: float) -> int:
    """One copy of the consumer, following the log from when it says it is ready (a file
    ``ready-<pid>`` in ``marks``) until the test's appends are done (``marks/done`` holds the
    log's last position) and the consumer's checkpoint has reached that position: it
    follows for as long as the appends last, not for a fixed time."""
    settings = Settings(url=url, schema=schema)
    stop = threading.Event()
    done = Path(marks, "done")

    def watch() -> None:
        while not stop.is_set():
            last = int(done.read_text()) if done.exists() else None
            if last is not None and (ledger.consumer_position(settings, "tally") or 0) >= last:
                stop.set()
            else:
                time.sleep(0.01)

    threading.Thread(target=watch, daemon=True).start()
    copy = Tally()
    copy.pause = pause
    fast = ledger.Backoff(first=0.005, longest=0.05)
    Path(marks, f"ready-{os.getpid()}").touch()
    return ledger.run_consumer(settings, copy, follow=True, stop=stop, size=3, backoff=fast).handled


@pytest.mark.single_server(citus_support.GLOBAL_POSITION)
def test_copies_of_a_consumer_running_at_once_handle_each_event_once(
    ledger_app: Ledger, settings: Settings, conn: Conn, tmp_path: Path
) -> None:
    """Three copies follow the log while events are appended, each started before the
    first of them (their ready marks), each stopped once every event is handled."""
    append(ledger_app, *catalogue())
    # the table made before the copies start: three concurrent CREATE TABLE IF NOT EXISTS
    # race on pg_type's unique index (the consumer's prepare is not what is tested here)
    Tally().prepare(conn)
    context = multiprocessing.get_context("spawn")
    with context.Pool(3) as pool:
        copies = pool.starmap_async(
            consume_until_done, [(settings.url, settings.schema, str(tmp_path), 0.002)] * 3
        )
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("ready-*"))) < 3:
            if copies.ready():
                copies.get()  # a copy that failed before it followed: its error, here
            assert time.monotonic() < deadline, "the copies never all started"
            time.sleep(0.01)
        for n in range(40):
            append(ledger_app, user(f"late{n}"))
            time.sleep(0.02)
        (tmp_path / "done.part").write_text(str(positions(settings)[-1]))
        (tmp_path / "done.part").rename(tmp_path / "done")
        handled = copies.get(timeout=120)
    assert sum(handled) == len(positions(settings))
    assert tally(conn) == positions(settings)


@pytest.mark.single_server(citus_support.GLOBAL_POSITION)
def test_a_consumer_killed_mid_window_resumes_from_its_checkpoint(
    ledger_app: Ledger, settings: Settings, conn: Conn
) -> None:
    append(ledger_app, *catalogue(), *[user(f"u{n}") for n in range(60)])
    context = multiprocessing.get_context("spawn")
    slow = context.Process(target=consume, args=(settings.url, settings.schema, 60.0, 0.02))
    slow.start()
    deadline = time.monotonic() + 60
    while (ledger.consumer_position(settings, "tally") or 0) < 10:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert slow.pid is not None
    os.kill(slow.pid, signal.SIGKILL)
    slow.join()
    left = ledger.consumer_position(settings, "tally")
    assert left is not None and tally(conn) == list(range(1, left + 1))
    ledger.run_consumer(settings, Tally())
    assert tally(conn) == positions(settings)


def test_rebuilds_never_run_consumers(
    ledger_app: Ledger, settings: Settings, conn: Conn, cli_env: dict[str, str]
) -> None:
    """A rebuild replays the log into the projected tables only: the consumer's table and
    checkpoint stay as they were, and its next run has nothing to do."""
    append(ledger_app, *catalogue(), complete("pi_1"), refund("pi_1", "re_1", 100))
    ledger.run_consumer(settings, Tally())
    before = (tally(conn), ledger.consumer_position(settings, "tally"))
    for command in (("projections", "rebuild"), ("projections", "verify")):
        assert cli(cli_env, *command).returncode == 0
    assert cli(cli_env, "projections", "rebuild", "--only", "purchases").returncode == 0
    assert (tally(conn), ledger.consumer_position(settings, "tally")) == before
    assert ledger.run_consumer(settings, Tally()).handled == 0
    assert tally(conn) == positions(settings)


def test_a_downgrade_keeps_the_positions_of_consumers_that_ran(
    ledger_app: Ledger, settings: Settings, conn: Conn
) -> None:
    append(ledger_app, *catalogue())
    assert ledger.run_consumer(settings, Tally()).handled == 5
    # one number on one server, a map of chains on a distributed log: kept as it was
    before = ledger.consumer_position(settings, "tally")
    with connect(settings) as other:
        # below 0014 a log of per-organization chains cannot go (docs/stream.md), nor a
        # distributed log through any migration of the log (docs/operations.md): refused,
        # nothing changed; to base (the log's migrations kept) and back, as before
        refusals = "cannot go below 0014|is distributed .* nothing was rolled back"
        with pytest.raises((psycopg.Error, ledger.ConfigurationError), match=refusals):
            migrations.downgrade(other, settings.schema, migrations.LOG_VERSION)
        other.rollback()
        migrations.downgrade(other, settings.schema, migrations.BASE)
        migrations.upgrade(other, settings.schema)
        other.commit()
    assert ledger.consumer_position(settings, "tally") == before
    assert ledger.run_consumer(settings, Tally()).handled == 0


def test_a_downgrade_drops_checkpoints_that_record_no_work(empty_settings: Settings) -> None:
    api.upgrade(empty_settings)
    ledger.run_consumer(empty_settings, Tally())  # an empty log: its checkpoint stays at 0
    with connect(empty_settings) as conn:
        migrations.downgrade(conn, empty_settings.schema, 0)
        left = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1",
            (empty_settings.schema,),
        ).fetchall()
    assert left == [("ledger_schema_migrations",), ("tally",)], "the consumer's own table stays"


def test_a_consumer_on_an_unmigrated_database_is_told_to_upgrade(
    empty_settings: Settings,
) -> None:
    with pytest.raises(ledger.ConfigurationError, match="ledger db upgrade"):
        ledger.run_consumer(empty_settings, Tally())


# --- exactly once, whatever happens: a property ------------------------------------------

STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 4)),
        st.tuples(st.just("consume"), st.integers(1, 5)),
        st.tuples(st.just("fail"), st.integers(1, 5)),
        st.tuples(st.just("roll back"), st.just(1)),
    ),
    min_size=1,
    max_size=12,
)


@pytest.mark.single_server(citus_support.GLOBAL_POSITION)
@given(steps=STEPS)
def test_whatever_the_interleaving_each_event_is_handled_exactly_once(
    fresh: Any, steps: list[tuple[str, int]]
) -> None:
    """Appends, consumer runs of any window size, handlers that fail part-way through a
    window, appends that roll back (holes): the consumer's table ends up with each
    committed event exactly once, in position order."""
    settings = fresh()
    with api.open_ledger(settings) as app, connect(settings, autocommit=True) as conn:
        made = 0
        for action, n in steps:
            if action == "append":
                append(app, *[user(f"u{made + i}") for i in range(n)])
                made += n
            elif action == "roll back":
                with conn.transaction(force_rollback=True):
                    conn.execute(
                        "INSERT INTO ledger_events (originator_id, originator_version, topic,"
                        " state) VALUES (gen_random_uuid(), 1, 'UserRegistered',"
                        " convert_to(%s, 'UTF8'))",
                        (foreign_user_state(),),
                    )
            elif action == "consume":
                ledger.run_consumer(settings, Tally(), size=n)
            else:
                failing = Tally()
                committed = positions(settings)
                done = ledger.consumer_position(settings, "tally") or 0
                ahead = [p for p in committed if p > done]
                if ahead:
                    failing.fail_at = ahead[min(n, len(ahead)) - 1]
                    with pytest.raises(RuntimeError):
                        ledger.run_consumer(settings, failing, size=n)
        ledger.run_consumer(settings, Tally(), size=3)
        handled = (
            tally(conn) if conn.execute("SELECT to_regclass('tally')").fetchone() != (None,) else []
        )
        assert handled == positions(settings)
