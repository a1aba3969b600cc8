"""A reader of the whole platform, chain by chain (docs/stream.md, "Reading every chain").

In the log's ``organization`` order two organizations append at once, without a lock in
common, while readers follow every chain with a cursor: each event is read exactly once,
each chain in its own position order, an append that commits late included. The command
line's follower stops on SIGTERM with a cursor to resume from, which resumes exactly.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from typing import Any
from uuid import UUID

import orjson
import psycopg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

import ledger
from ledger import api
from ledger.config import Settings
from ledger.database.connections import connect
from ledger.log import chains
from ledger.reading.chains import read_chains_window
from ledger.reading.cursor import Cursor, parse_cursor
from tests.serving import serve
from tests.support import append, appender, cli, feed, foreign_user_state, org, publish, statuses
from tests.support import user as register

Conn = psycopg.Connection[Any]
A = "0a000000-0000-4000-8000-00000000000a"
B = "0b000000-0000-4000-8000-00000000000b"


@pytest.fixture
def two_organizations(settings: Settings) -> Settings:
    with api.open_ledger(settings) as app:
        added = append(app, org(A, "A"), org(B, "B"), register("creator"))
        assert statuses(added) == ["accepted"] * 3
    return dataclasses.replace(settings, lock_timeout="5s")


def committed(conn: Conn) -> dict[UUID, list[int]]:
    """Every committed event's chain position, by chain, in chain order."""
    rows = conn.execute(
        "SELECT organization_id, position FROM ledger_events ORDER BY organization_id, position"
    ).fetchall()
    found: dict[UUID, list[int]] = {}
    for chain, position in rows:
        found.setdefault(UUID(str(chain)), []).append(int(position))
    return found


def by_chain(records: list[tuple[UUID, int]]) -> dict[UUID, list[int]]:
    """What a reader read, by chain, in the order it read it."""
    found: dict[UUID, list[int]] = {}
    for chain, position in records:
        found.setdefault(chain, []).append(position)
    return found


def contents(prefix: int, organization: str, count: int) -> str:
    """``count`` content publications of ``organization`` as JSON Lines."""
    lines = (
        publish(f"{prefix:02x}{n:06x}-0000-4000-8000-000000000000", organization, title=f"v{n}")
        for n in range(count)
    )
    return "".join(orjson.dumps(line).decode() + "\n" for line in lines)


def finished(process: subprocess.Popen[str]) -> int:
    """An appender's exit status once its input is all written (its stdin closed)."""
    assert process.stdout is not None and process.stderr is not None
    answers, errors = process.stdout.read(), process.stderr.read()
    status = process.wait(timeout=300)
    assert status == 0, (answers[-500:], errors)
    return status


def wait_for(predicate: Any, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.02)


def test_two_organizations_appending_at_once_are_read_once_each_chain_in_order(
    two_organizations: Settings, conn: Conn, cli_env: dict[str, str]
) -> None:
    settings = two_organizations
    with conn.transaction():
        chains.set_order(conn, settings.schema, "organization")
    stop = threading.Event()
    fast = ledger.Backoff(first=0.005, longest=0.05)
    read: list[tuple[UUID, int]] = []

    def follow() -> None:
        for record in ledger.read_events(
            settings, after=Cursor(), follow=True, stop=stop, backoff=fast
        ):
            read.append((record.organization_id, record.chain_position))

    python_follower = threading.Thread(target=follow)
    python_follower.start()
    # the command line follows too, from nothing given: the log's order decides
    cli_follower = subprocess.Popen(
        [sys.executable, "-m", "ledger", "events", "--follow"],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    printed: list[tuple[UUID, int]] = []

    def collect() -> None:
        assert cli_follower.stdout is not None
        for line in cli_follower.stdout:
            event = orjson.loads(line)
            printed.append((UUID(event["organization_id"]), event["chain_position"]))

    collector = threading.Thread(target=collect)
    collector.start()
    holder = connect(settings)
    try:
        # an append of B held open: it takes B's chain position before B's commit, and
        # commits after them (what a reader of notification_id would pass for ever)
        holder.execute(
            "INSERT INTO ledger_events (originator_id, originator_version, topic, state,"
            " organization_id) VALUES (gen_random_uuid(), 1, 'UserRegistered', %s, %s)",
            (foreign_user_state("held").encode(), B),
        )
        waiting = {**cli_env, "LEDGER_LOCK_TIMEOUT": "300s"}  # B's wait for the held one
        appenders = [appender(waiting), appender(waiting)]
        feeders = [
            threading.Thread(target=feed, args=(appenders[0], contents(0xA0, A, 60))),
            threading.Thread(target=feed, args=(appenders[1], contents(0xB0, B, 60))),
        ]
        for feeder in feeders:
            feeder.start()
        # a rolled-back insert of A's chain meanwhile leaves no position behind
        with connect(settings) as loser:
            loser.execute(
                "INSERT INTO ledger_events (originator_id, originator_version, topic, state,"
                " organization_id) VALUES (gen_random_uuid(), 1, 'UserRegistered', %s, %s)",
                (foreign_user_state("lost").encode(), A),
            )
            loser.rollback()
        # A's appends never wait for B's chain: all of them commit while B's held append
        # is open, and the reader has them, B's 60 still to come
        feeders[0].join()
        assert finished(appenders[0]) == 0
        wait_for(lambda: len(by_chain(read).get(UUID(A), [])) == 61, "A's events")
        assert by_chain(read)[UUID(B)] == [1]
        holder.commit()
        holder.close()
        feeders[1].join()
        assert finished(appenders[1]) == 0
        expected = committed(conn)
        assert len(expected[UUID(B)]) == 62  # its registration, the held event, 60 contents
        counts = {c: len(p) for c, p in expected.items()}
        wait_for(lambda: Counter(c for c, _ in read) == counts, "every event, in Python")
        wait_for(lambda: Counter(c for c, _ in printed) == counts, "every event, printed")
    finally:
        holder.close()
        stop.set()
        python_follower.join()
        cli_follower.send_signal(signal.SIGTERM)
        collector.join()
        assert cli_follower.stderr is not None
        err_bytes = cli_follower.stderr.read()
        cli_follower.wait(timeout=60)
    assert by_chain(read) == expected, "each event once, each chain in its order"
    assert cli_follower.returncode == 0
    assert by_chain(printed) == expected
    # the resume hint is a cursor of every chain, and it resumes exactly
    hint = err_bytes.decode().strip().splitlines()[-1]
    assert hint.startswith("ledger: stopped after cursor ")
    text = hint.rsplit("--after ", 1)[1]
    assert parse_cursor(text) == Cursor({c: p[-1] for c, p in expected.items()})
    assert text.startswith("platform:")
    assert cli(cli_env, "events", "--after", text).stdout == ""
    with api.open_ledger(settings) as app:
        assert statuses(append(app, publish("a1000000-0000-4000-8000-000000000000", A))) == [
            "accepted"
        ]
    again = cli(cli_env, "events", "--after", text)
    assert [orjson.loads(x)["chain_position"] for x in again.stdout.splitlines()] == [
        expected[UUID(A)][-1] + 1
    ]


def test_a_position_of_notification_ids_is_refused_in_the_organization_order(
    two_organizations: Settings, conn: Conn, cli_env: dict[str, str]
) -> None:
    settings = two_organizations
    if chains.order(conn, settings.schema) == "global":  # not on a log placed on Citus
        global_read = cli(cli_env, "events", "--after", "1").stdout.splitlines()
        assert len(global_read) == 2, "global: as ever"
        with conn.transaction():
            chains.set_order(conn, settings.schema, "organization")
    refused = cli(cli_env, "events", "--after", "1")
    assert refused.returncode == 2 and refused.stdout == ""
    assert "--after: the log is in the organization order" in refused.stderr
    assert "Traceback" not in refused.stderr
    # 0, or nothing: every chain from its start
    whole = cli(cli_env, "events", "--after", "0")
    assert whole.returncode == 0 and len(whole.stdout.splitlines()) == 3
    for bad in (
        "platform",
        "nope:1",
        "platform:-1",
        "platform:1,platform:2",
        "platform:x",
        "\u00e9:1",
    ):
        done = cli(cli_env, "events", "--after", bad)
        assert (
            done.returncode == 2 and "not a position (a whole number) nor a cursor" in done.stderr
        )
    both = cli(cli_env, "events", "--after", "platform:1", "--chain", A)
    assert both.returncode == 2 and "takes no --chain nor --until" in both.stderr


def test_a_chain_of_a_log_migrated_before_chains_is_found(settings: Settings, conn: Conn) -> None:
    """Migration 0021 gives every chain of the log its row of ledger_chain_heads (a log of
    before migration 0014 had its events put in the platform's chain without one)."""
    with api.open_ledger(settings) as app:
        append(app, register("u1"), org(A, "A"))
    assert {
        UUID(str(r[0])) for r in conn.execute("SELECT organization_id FROM ledger_chain_heads")
    } >= {
        chains.PLATFORM,
        UUID(A),
    }
    conn.execute("DELETE FROM ledger_chain_heads WHERE organization_id = %s", (chains.PLATFORM,))
    migration = (
        "INSERT INTO ledger_chain_heads (organization_id) SELECT DISTINCT organization_id"
        " FROM ledger_events ON CONFLICT (organization_id) DO NOTHING"
    )
    conn.execute(migration)  # the statement of 0021, as it runs over such a log
    assert [r.topic for r in ledger.read_events(settings, after=Cursor())] == [
        "UserRegistered",
        "OrganizationRegistered",
    ]


@pytest.fixture
def many_chains(settings: Settings) -> Settings:
    """Five chains of different lengths (the platform's, four organizations')."""
    organizations = [str(uuid.UUID(int=n << 64 | 1)) for n in range(1, 5)]
    with api.open_ledger(settings) as app:
        commands: list[dict[str, Any]] = [register("creator")]
        for n, organization in enumerate(organizations):
            commands.append(org(organization, f"o{n}"))
            commands += [
                publish(str(uuid.UUID(int=(n + 1) << 96 | k)), organization, title=f"t{k}")
                for k in range(3 * n)
            ]
        commands += [register(f"u{k}") for k in range(4)]
        assert set(statuses(append(app, *commands))) == {"accepted"}
    return settings


@hsettings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    size=st.integers(min_value=1, max_value=30),
    start=st.dictionaries(st.integers(min_value=0, max_value=4), st.integers(0, 12), max_size=5),
    topics=st.sampled_from(
        [(), ("ContentPublished",), ("UserRegistered", "OrganizationRegistered")]
    ),
)
def test_windows_of_any_size_from_any_cursor_read_every_event_after_it_once_in_chain_order(
    many_chains: Settings, size: int, start: dict[int, int], topics: tuple[str, ...]
) -> None:
    with connect(many_chains, autocommit=True) as conn:
        log = conn.execute(
            "SELECT organization_id, position, topic FROM ledger_events ORDER BY organization_id, position"
        ).fetchall()
        names = sorted({UUID(str(r[0])) for r in log})
        cursor = Cursor({names[k]: p for k, p in start.items() if k < len(names)})
        read: list[tuple[UUID, int]] = []
        windows = 0
        while (
            batch := read_chains_window(conn, many_chains.schema, cursor, topics=topics, size=size)
        ) is not None:
            assert all(batch.cursor[c] >= cursor[c] for c in names), "a cursor never goes back"
            cursor = batch.cursor
            read += [(r.organization_id, r.chain_position) for r in batch.records]
            windows += 1
            assert windows <= len(log), "every window moves on"
    start_at = Cursor({names[k]: p for k, p in start.items() if k < len(names)})
    wanted = [
        (UUID(str(c)), int(p))
        for c, p, topic in log
        if int(p) > start_at[UUID(str(c))] and (not topics or topic in topics)
    ]
    assert by_chain(read) == by_chain(wanted)
    assert cursor == Cursor(
        {c: max(start_at[c], max(p for o, p, _ in log if UUID(str(o)) == c)) for c in names}
    )


def test_the_python_reader_takes_a_cursor_and_no_until(settings: Settings) -> None:
    with pytest.raises(ValueError, match="takes neither until nor chain"):
        list(ledger.read_events(settings, after=Cursor(), until=3))
    assert os.environ.get("LEDGER_TEST_NOTHING") is None  # the run's env is untouched


def test_the_http_feed_pages_every_chain_with_a_cursor(
    two_organizations: Settings, conn: Conn, cli_env: dict[str, str]
) -> None:
    settings = two_organizations
    with api.open_ledger(settings) as app:
        more = [
            publish(f"a{n:07x}-0000-4000-8000-000000000000", A, title=f"a{n}") for n in range(9)
        ]
        more += [
            publish(f"b{n:07x}-0000-4000-8000-000000000000", B, title=f"b{n}") for n in range(4)
        ]
        assert set(statuses(append(app, *more))) == {"accepted"}
    with serve(settings) as served, served.client() as client:
        # the global order (not on a log placed on Citus, always in the organization order):
        # a position, as before; a cursor is taken there too
        if chains.order(conn, settings.schema) == "global":
            assert client.get("/v1/events", params={"after": 2}).json()["next_after"] == 16
        first = client.get("/v1/events", params={"after": "platform:0", "limit": 4}).json()
        assert isinstance(first["next_after"], str) and len(first["events"]) == 4
        with conn.transaction():
            chains.set_order(conn, settings.schema, "organization")
        refused = client.get("/v1/events", params={"after": 2})
        assert refused.status_code == 422 and refused.json()["error"]["field"] == "after"
        bad = client.get("/v1/events", params={"after": "platform:1,nope:2"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "after"
        pages, read, after = 0, [], None
        while True:
            params: dict[str, Any] = {"limit": 4} if after is None else {"limit": 4, "after": after}
            page = client.get("/v1/events", params=params).json()
            assert len(page["events"]) <= 4
            if not page["events"]:
                assert page["next_after"] == after
                break
            read += [(UUID(e["organization_id"]), e["chain_position"]) for e in page["events"]]
            after = page["next_after"]
            pages += 1
        assert pages >= 4 and by_chain(read) == committed(conn)
        assert parse_cursor(after) == Cursor({c: p[-1] for c, p in committed(conn).items()})
        # the same events as ledger events prints from the same cursor
        page = client.get("/v1/events", params={"after": "platform:1", "limit": 1000}).json()
        printed = cli(cli_env, "events", "--after", "platform:1")
        assert sorted(e["position"] for e in page["events"]) == sorted(
            orjson.loads(x)["position"] for x in printed.stdout.splitlines()
        )
