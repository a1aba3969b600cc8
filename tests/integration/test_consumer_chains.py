"""Consumers keep one checkpoint per chain (migration 0021, docs/stream.md "Consumers with
a durable checkpoint"): an old single checkpoint carries over; in the ``organization`` order
a consumer killed mid-window while two organizations append resumes with nothing skipped
nor handled twice; the log may switch order under a consumer."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from typing import Any
from uuid import UUID

import psycopg

import ledger
from ledger import api
from ledger.config import Settings
from ledger.database import distribution, migrations
from ledger.database.connections import connect
from ledger.log import chains
from ledger.reading.cursor import Cursor
from tests.support import append, org, publish, statuses
from tests.support import user as register

Conn = psycopg.Connection[Any]
A = "0a000000-0000-4000-8000-00000000000a"
B = "0b000000-0000-4000-8000-00000000000b"


class Tally(ledger.Consumer):
    """One row per event handled (no key: a second handling would show). Stalls (in the
    database, where a test can see it) on the event of ``stall_at``'s chain position."""

    name = "chains-tally"
    stall_at: tuple[str, int] | None = None

    def prepare(self, conn: Conn) -> None:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS chains_tally"
            " (organization_id uuid NOT NULL, position bigint NOT NULL, seq bigserial)"
        )

    def handle(self, conn: Conn, record: ledger.EventRecord) -> None:
        conn.execute(
            "INSERT INTO chains_tally (organization_id, position) VALUES (%s, %s)",
            (record.organization_id, record.chain_position),
        )
        if self.stall_at == (str(record.organization_id), record.chain_position):
            conn.execute("SELECT pg_sleep(600) /* chains-tally stalls */")


def handled(conn: Conn) -> dict[UUID, list[int]]:
    """What the consumer handled, by chain, in the order it handled it."""
    found: dict[UUID, list[int]] = {}
    rows = conn.execute("SELECT organization_id, position FROM chains_tally ORDER BY seq")
    for chain, position in rows:
        found.setdefault(UUID(str(chain)), []).append(int(position))
    return found


def committed(conn: Conn) -> dict[UUID, list[int]]:
    found: dict[UUID, list[int]] = {}
    rows = conn.execute(
        "SELECT organization_id, position FROM ledger_events ORDER BY organization_id, position"
    )
    for chain, position in rows:
        found.setdefault(UUID(str(chain)), []).append(int(position))
    return found


def contents(prefix: int, organization: str, count: int) -> list[dict[str, Any]]:
    return [
        publish(f"{prefix:02x}{n:06x}-0000-4000-8000-000000000000", organization, title=f"v{n}")
        for n in range(count)
    ]


def test_an_old_single_checkpoint_carries_over_to_each_chain(empty_settings: Settings) -> None:
    schema = empty_settings.schema
    api.upgrade(empty_settings)
    with api.open_ledger(empty_settings) as app:
        log = [org(A, "A"), register("u1"), org(B, "B"), register("creator")]
        log += [*contents(0xA0, A, 3), register("u2")]
        assert set(statuses(append(app, *log))) == {"accepted"}
    with connect(empty_settings, autocommit=True) as conn:
        migrations.downgrade(conn, schema, 17)  # a log of before, with its events
        # the consumer of before: handled everything up to notification_id 5
        conn.execute("INSERT INTO ledger_consumer_checkpoints (name, position) VALUES ('old', 5)")
        upto = conn.execute(
            "SELECT organization_id, max(position) FROM ledger_events"
            " WHERE notification_id <= 5 GROUP BY organization_id"
        ).fetchall()
        migrations.upgrade(conn, schema)
    assert ledger.consumer_cursor(empty_settings, "old") == Cursor(
        {UUID(str(c)): int(p) for c, p in upto}
    )
    assert ledger.consumer_position(empty_settings, "old") == 5

    class Old(Tally):
        name = "old"

    run = ledger.run_consumer(empty_settings, Old())
    with connect(empty_settings, autocommit=True) as conn:
        rest = conn.execute(
            "SELECT organization_id, position FROM ledger_events WHERE notification_id > 5"
            " ORDER BY notification_id"
        ).fetchall()
        read = [(c, p) for c, ps in handled(conn).items() for p in ps]
        assert sorted(read) == sorted((UUID(str(c)), int(p)) for c, p in rest)
        assert run.handled == len(rest) == 3
        assert run.cursor == Cursor({c: ps[-1] for c, ps in committed(conn).items()})


def consume(url: str, schema: str, stall: tuple[str, int] | None) -> int:
    """One copy of the consumer, following the log (until killed, or for 120 s)."""
    stop = threading.Event()
    threading.Timer(120, stop.set).start()
    copy = Tally()
    copy.stall_at = stall
    fast = ledger.Backoff(first=0.005, longest=0.05)
    settings = Settings(url=url, schema=schema)
    return ledger.run_consumer(settings, copy, follow=True, stop=stop, size=7, backoff=fast).handled


def test_a_consumer_killed_mid_window_in_organization_order_resumes_exactly(
    settings: Settings, conn: Conn
) -> None:
    with api.open_ledger(settings) as app:
        assert set(statuses(append(app, org(A, "A"), org(B, "B"), register("creator")))) == {
            "accepted"
        }
    with conn.transaction():
        chains.set_order(conn, settings.schema, "organization")
    Tally().prepare(conn)
    context = multiprocessing.get_context("spawn")
    doomed = context.Process(target=consume, args=(settings.url, settings.schema, (A, 12)))
    doomed.start()
    try:
        with api.open_ledger(settings) as app:
            for n in range(20):  # the two organizations' appends interleaved
                both = [*contents(0x10 + n, A, 1), *contents(0x40 + n, B, 1)]
                assert statuses(append(app, *both)) == ["accepted"] * 2
        deadline = time.monotonic() + 120
        while not conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE query LIKE '%chains-tally stalls%'"
            " AND pid <> pg_backend_pid()"
        ).fetchone():
            assert time.monotonic() < deadline and doomed.is_alive(), "the consumer stalls"
            time.sleep(0.02)
        before = ledger.consumer_cursor(settings, "chains-tally")
        assert before is not None and before[UUID(A)] < 12, "the stalled window is not committed"
        assert doomed.pid is not None
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.join()
        # its server side sleeps on until it next talks to the client: end it, as the
        # server does once it sees the connection gone
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE query LIKE '%chains-tally stalls%' AND pid <> pg_backend_pid()"
        )
    finally:
        if doomed.is_alive():
            doomed.kill()
    # the killed window left nothing: the next run starts from the checkpoint
    run = ledger.run_consumer(settings, Tally(), size=5)
    assert handled(conn) == committed(conn), "each event once, each chain in its order"
    assert run.cursor == Cursor({c: ps[-1] for c, ps in committed(conn).items()})
    assert ledger.consumer_cursor(settings, "chains-tally") == run.cursor


def test_the_log_may_switch_order_under_a_consumer(settings: Settings, conn: Conn) -> None:
    if distribution.log_is_distributed(conn, settings.schema):
        # a log placed on Citus keeps the organization order for good (no global lock
        # there): what holds is its half, the consumer reading by its map, each event once
        with api.open_ledger(settings) as app:
            append(app, org(A, "A"), org(B, "B"), register("creator"), *contents(0xA0, A, 4))
            first = ledger.run_consumer(settings, Tally(), size=3)
            append(app, *contents(0xB0, B, 5), register("u1"))
            second = ledger.run_consumer(settings, Tally(), size=2)
        assert (first.handled, second.handled, second.position) == (7, 6, 0)
        assert handled(conn) == committed(conn)
        assert second.cursor == Cursor({c: ps[-1] for c, ps in committed(conn).items()})
        return
    with api.open_ledger(settings) as app:
        append(app, org(A, "A"), org(B, "B"), register("creator"), *contents(0xA0, A, 4))
        first = ledger.run_consumer(settings, Tally(), size=3)
        assert first.position == 7 and first.handled == 7
        with conn.transaction():
            chains.set_order(conn, settings.schema, "organization")
        append(app, *contents(0xB0, B, 5), register("u1"))
        second = ledger.run_consumer(settings, Tally(), size=2)
        assert second.handled == 6 and second.position == 7  # the global place stays
        with conn.transaction():
            chains.set_order(conn, settings.schema, "global")
        append(app, *contents(0xC0, A, 3), register("u2"))
        third = ledger.run_consumer(settings, Tally(), size=4)
    assert third.handled == 4
    assert handled(conn) == committed(conn)
    head = conn.execute("SELECT max(notification_id) FROM ledger_events").fetchone()
    assert head is not None and third.position == head[0]
