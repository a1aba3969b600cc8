"""The log as a stream: ``ledger events`` and ``ledger.read_events`` / ``read_batches``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ledger
from ledger.config import Settings
from ledger.log.shapes import UndecodableEvent
from ledger.service import Ledger
from tests import citus_support
from tests.support import (
    answers,
    append,
    catalogue,
    cli,
    complete,
    foreign_user_state,
    grant,
    play,
    refund,
    user,
)

Conn = psycopg.Connection[Any]
FIELDS = [
    "position",
    "recorded_at",
    "topic",
    "originator_id",
    "version",
    "data",
    "hash",
    "organization_id",
    "chain_position",
]


def history(app: Ledger) -> None:
    append(
        app,
        *catalogue(),
        complete("pi_1"),
        refund("pi_1", "re_1", 500),
        grant("bob"),
        play("bob", 30),
        user("carol"),
    )


def test_records_are_the_stored_events_decoded(ledger_app: Ledger, conn: Conn) -> None:
    history(ledger_app)
    stored = conn.execute(
        "SELECT notification_id, recorded_at, topic, originator_id, originator_version, hash"
        " FROM ledger_events ORDER BY notification_id"
    ).fetchall()
    records = list(ledger.read_events(ledger_app.settings))
    assert [
        (r.position, r.recorded_at, r.topic, r.originator_id, r.version, r.hash) for r in records
    ] == [(p, at, t, o, v, bytes(h)) for p, at, t, o, v, h in stored]
    completed = next(r for r in records if r.topic == "PurchaseCompleted")
    assert completed.data is not None
    assert completed.data["stripe_payment_intent_id"] == "pi_1"
    assert completed.data["amount_paid_cents"] == 1999
    assert completed.data["occurred_at"] == "2026-01-02T12:00:00.000000+00:00"
    assert isinstance(completed.data["timestamp"], str)  # the library's typed value, plain
    line = completed.as_dict()
    assert list(line) == FIELDS
    assert line["hash"] == completed.hash.hex() and len(line["hash"]) == 64
    assert line["recorded_at"].endswith("+00:00")


@pytest.mark.single_server(citus_support.GLOBAL_POSITION)
def test_the_command_prints_the_same_records_as_json_lines(
    ledger_app: Ledger, cli_env: dict[str, str]
) -> None:
    history(ledger_app)
    done = cli(cli_env, "events")
    assert done.returncode == 0, done.stderr
    assert answers(done.stdout) == [r.as_dict() for r in ledger.read_events(ledger_app.settings)]
    some = cli(cli_env, "events", "--after", "2", "--until", "9", "--topic", "PurchaseCompleted",
               "--topic", "UserRegistered", "--limit", "3")  # fmt: skip
    expected = [
        r.as_dict()
        for r in ledger.read_events(ledger_app.settings, after=2, until=9)
        if r.topic in ("PurchaseCompleted", "UserRegistered")
    ][:3]
    assert some.returncode == 0 and answers(some.stdout) == expected and expected


@pytest.mark.parametrize(
    ("flags", "names"),
    [
        (["--after", "-1"], "--after"),
        (["--after", "x"], "--after"),
        (["--after", "\uff11"], "--after"),  # a full-width digit
        (["--until", "99999999999999999999"], "--until"),
        (["--limit", "0"], "--limit"),
        (["--topic", "PurchaseComplete"], "--topic"),
        (["--after", "5", "--until", "4"], "--until"),
        (["--follow", "yes"], "unrecognized"),
    ],
)
def test_bad_flags_are_a_usage_error(cli_env: dict[str, str], flags: list[str], names: str) -> None:
    done = cli(cli_env, "events", *flags)
    assert done.returncode == 2 and done.stdout == ""
    assert names in done.stderr and "Traceback" not in done.stderr


def test_an_unmigrated_database_is_one_clear_line(empty_settings: Settings) -> None:
    env = dict(
        os.environ, LEDGER_DATABASE_URL=empty_settings.url, LEDGER_SCHEMA=empty_settings.schema
    )
    done = cli(env, "events")
    assert done.returncode == 2 and done.stderr.strip().endswith("run `ledger db upgrade`")
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.single_server(citus_support.GLOBAL_POSITION)
def test_an_event_that_does_not_decode_stops_the_stream_naming_it(
    ledger_app: Ledger, conn: Conn, cli_env: dict[str, str]
) -> None:
    """Only a superuser can store one, with the log's shape trigger off: the stream names
    it, as every reader of the log does, instead of passing it on."""
    append(ledger_app, user("alice"))
    conn.execute("ALTER TABLE ledger_events DISABLE TRIGGER ledger_events_check_shape")
    conn.execute(
        "INSERT INTO ledger_events (originator_id, originator_version, topic, state)"
        " VALUES (gen_random_uuid(), 1, 'UserRegistered', '\\xff00')"
    )
    conn.execute("ALTER TABLE ledger_events ENABLE ALWAYS TRIGGER ledger_events_check_shape")
    append(ledger_app, user("bob"))
    with pytest.raises(UndecodableEvent, match="position 2") as raised:
        list(ledger.read_events(ledger_app.settings))
    assert "UserRegistered" in str(raised.value)
    done = cli(cli_env, "events")
    assert done.returncode == 2
    assert [json.loads(line)["position"] for line in done.stdout.splitlines()] == [1]
    assert len(done.stderr.splitlines()) == 1 and "position 2" in done.stderr, done.stderr


def test_python_arguments_are_checked(settings: Settings) -> None:
    with pytest.raises(ValueError, match="after"):
        list(ledger.read_events(settings, after=-1))
    with pytest.raises(ValueError, match="until"):
        list(ledger.read_events(settings, after=3, until=2))
    with pytest.raises(ValueError, match="limit"):
        list(ledger.read_events(settings, limit=0))
    with pytest.raises(ValueError, match="topic"):
        list(ledger.read_events(settings, topics=["nope"]))
    with pytest.raises(ValueError, match="size"):
        list(ledger.read_batches(settings, size=0))


TOPICS = ["UserRegistered", "PurchaseCompleted", "PurchaseRefunded", "AccessGranted"]


@given(
    after=st.integers(0, 20),
    span=st.none() | st.integers(0, 20),
    topics=st.lists(st.sampled_from(TOPICS), max_size=3),
    limit=st.none() | st.integers(1, 20),
    size=st.integers(1, 7),
)
def test_any_window_is_the_matching_slice_of_the_log(
    ledger_app: Ledger,
    after: int,
    span: int | None,
    topics: list[str],
    limit: int | None,
    size: int,
) -> None:
    """Whatever the range, the topics, the limit and the batch size: exactly the events of
    the log that match, in position order, and batches that end where reading resumes."""
    if not list(ledger.read_events(ledger_app.settings, limit=1)):
        history(ledger_app)
    everything = list(ledger.read_events(ledger_app.settings))
    until = None if span is None else after + span
    matching = [
        r
        for r in everything
        if r.position > after
        and (until is None or r.position <= until)
        and (not topics or r.topic in topics)
    ]
    read = ledger.read_events(
        ledger_app.settings, after=after, until=until, topics=topics, limit=limit
    )
    assert list(read) == matching[:limit]
    batches = list(
        ledger.read_batches(ledger_app.settings, after=after, until=until, topics=topics, size=size)
    )
    assert [r for b in batches for r in b.records] == matching
    ends = [after] + [b.position for b in batches]
    assert ends == sorted(set(ends)), "each batch moves the position on"
    for previous, batch in zip(ends, batches, strict=False):
        assert all(previous < r.position <= batch.position for r in batch.records)
        assert len(batch.records) <= size
    last = min(until, everything[-1].position) if until is not None else everything[-1].position
    assert ends[-1] == max(after, last), "reading ends where the log (or until) does"


def test_following_sees_new_events_and_stops_when_told(ledger_app: Ledger) -> None:
    append(ledger_app, *catalogue())
    stop = threading.Event()
    seen: list[int] = []
    backoff = ledger.Backoff(first=0.01, longest=0.05)

    def follow() -> None:
        for record in ledger.read_events(
            ledger_app.settings, follow=True, stop=stop, backoff=backoff
        ):
            seen.append(record.position)

    follower = threading.Thread(target=follow)
    follower.start()
    positions = [r.position for r in append(ledger_app, user("dave"), user("erin"))]
    _until(lambda: seen and seen[-1] == positions[-1])
    stop.set()
    follower.join(60)
    assert not follower.is_alive()
    assert seen == list(range(1, positions[-1] + 1))


def test_following_until_a_position_stops_there_even_if_it_is_a_hole(
    ledger_app: Ledger, conn: Conn
) -> None:
    """Position 3 rolls back: a follower told to stop at 3 stops once 4 is committed."""
    append(ledger_app, user("a"), user("b"))
    with conn.transaction(force_rollback=True):
        conn.execute(
            "INSERT INTO ledger_events (originator_id, originator_version, topic, state)"
            " VALUES (gen_random_uuid(), 1, 'UserRegistered', convert_to(%s, 'UTF8'))",
            (foreign_user_state(),),
        )
    result: list[list[int]] = []
    idle = threading.Event()  # the follower has polled three times and found nothing new

    class Watched(ledger.Backoff):
        def delays(self) -> Iterator[float]:
            for n, delay in enumerate(super().delays(), start=1):
                if n >= 3:
                    idle.set()
                yield delay

    backoff = Watched(first=0.01, longest=0.05)

    def follow() -> None:
        result.append(
            [
                r.position
                for r in ledger.read_events(
                    ledger_app.settings, until=3, follow=True, backoff=backoff
                )
            ]
        )

    follower = threading.Thread(target=follow)
    follower.start()
    assert idle.wait(60), "the follower polls, finding nothing new"
    assert follower.is_alive(), "3 might still come: it waits"
    assert append(ledger_app, user("c"))[0].position == 4
    follower.join(60)
    assert not follower.is_alive() and result == [[1, 2]]


def _follow(cli_env: dict[str, str], *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ledger", "events", "--follow", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env,
    )


def _read_lines(process: subprocess.Popen[str], count: int) -> list[dict[str, Any]]:
    assert process.stdout is not None
    return [json.loads(process.stdout.readline()) for _ in range(count)]


@pytest.mark.single_server(citus_support.GLOBAL_POSITION)
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_the_follower_stops_cleanly_on_a_signal(
    ledger_app: Ledger, cli_env: dict[str, str], signum: int, status: int
) -> None:
    append(ledger_app, *catalogue())
    follower = _follow(cli_env, "--after", "3")
    try:
        first = _read_lines(follower, 2)
        later = append(ledger_app, user("frank"))[0].position
        assert [line["position"] for line in first + _read_lines(follower, 1)] == [4, 5, later]
        follower.send_signal(signum)
        out, err = follower.communicate(timeout=30)
    finally:
        follower.kill()
    assert follower.returncode == status
    assert out == "", "nothing after the signal, and no partial line"
    assert err.strip().splitlines()[-1] == (
        f"ledger: stopped after position {later}; resume with --after {later}"
    )
    assert "Traceback" not in err


def test_the_follower_stops_at_its_limit(ledger_app: Ledger, cli_env: dict[str, str]) -> None:
    append(ledger_app, user("a"))
    follower = _follow(cli_env, "--limit", "3")
    try:
        append(ledger_app, user("b"))
        append(ledger_app, user("c"), user("d"))
        out, err = follower.communicate(timeout=60)
    finally:
        follower.kill()
    assert follower.returncode == 0 and err == ""
    assert [line["position"] for line in answers(out)] == [1, 2, 3]


def test_a_reader_that_goes_away_ends_the_command_quietly(
    ledger_app: Ledger, cli_env: dict[str, str]
) -> None:
    append(ledger_app, *catalogue(), *[user(f"u{n}") for n in range(300)])
    events = subprocess.Popen(
        [sys.executable, "-m", "ledger", "events"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env,
    )
    assert events.stdout is not None and events.stderr is not None
    events.stdout.readline()
    events.stdout.close()
    status = events.wait(timeout=60)
    assert status == 0 and events.stderr.read() == b""


def _until(condition: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
