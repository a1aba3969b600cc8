"""After a failover every pooled connection is dead at once: the write side's pool must
replace them all when the first fails its check (``ledger.log.datastore.CheckIdle``),
not find them one checkout at a time behind psycopg_pool's backoff (0, 1, 2, 4 s ...),
which with five connections outlasts a 5 s pool timeout."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable

import psycopg
from psycopg.conninfo import make_conninfo

from ledger import api
from ledger.config import Settings
from ledger.log.datastore import LedgerDatastore
from ledger.log.recorder import LedgerRecorder
from tests.support import append, statuses, user

POOL_SIZE = 5
WAIT_S = 30.0  # how long the test waits for the server to show an event, at most


def backends(url: str, application: str) -> set[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application,)
        ).fetchall()
    return {int(row[0]) for row in rows}


def wait_for(what: str, condition: Callable[[], bool]) -> None:
    """Polls ``condition`` until it holds: the event itself, not a margin of time."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"not seen within {WAIT_S} s: {what}"
        time.sleep(0.02)


def test_one_command_succeeds_at_once_after_every_pooled_connection_is_terminated(
    settings: Settings,
) -> None:
    application = f"ledger_test_{uuid.uuid4().hex[:12]}"
    url = make_conninfo(settings.url, application_name=application)
    failover = dataclasses.replace(settings, url=url, pool_timeout="5s")
    with api.open_ledger(failover, pool_size=POOL_SIZE) as ledger:
        recorder = ledger.recorder
        assert isinstance(recorder, LedgerRecorder)
        datastore = recorder.datastore
        assert isinstance(datastore, LedgerDatastore)
        pool = datastore.pool
        # new connections, each idle in the pool and never handed out: each is checked
        # at its first checkout, whatever CHECK_IDLE_S
        pool.drain()
        wait_for(
            "the pool full of new connections",
            lambda: (
                pool.get_stats()["pool_available"] == POOL_SIZE
                and len(backends(settings.url, application)) == POOL_SIZE
            ),
        )
        old = backends(settings.url, application)
        with psycopg.connect(settings.url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (list(old),)
            )
        wait_for("every backend gone", lambda: not backends(settings.url, application))

        # one command, once: the first connection fails its check, the pool is checked
        # whole (every dead one replaced), and the command runs on a new connection. Without
        # the whole-pool check this append raised PoolTimeout after 5 s: its checkout met
        # the dead connections one by one, sleeping 0, 1, 2 s ... between them
        assert statuses(append(ledger, user("after_failover"))) == ["accepted"]
        assert pool.get_stats()["connections_lost"] == POOL_SIZE
        wait_for(
            "the pool refilled",
            lambda: len(backends(settings.url, application)) == POOL_SIZE,
        )
        assert not backends(settings.url, application) & old
        assert statuses(append(ledger, user("next"))) == ["accepted"]
