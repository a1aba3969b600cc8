"""What the group commit's tests share (``tests/integration/test_group_commit*.py``,
``test_group_per_organization.py``): commands from fields, the log's transactions, the log's
lock held from another connection, a thread seen waiting for it, and callers on threads."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import psycopg

import ledger
from ledger import api
from ledger.commands.base import Command
from ledger.commands.parsing import parse_command
from ledger.commands.results import Result
from ledger.config import Settings
from ledger.database.connections import connect
from ledger.service import Ledger
from tests import citus_support

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


def no_lock_on_the_log(conn: Conn) -> bool:
    """No session holds or awaits a lock on the log. Waited for, not read once: a backend of
    a closed connection is gone a moment after its client, and on the distributed layout
    another test's placing of a table colocated with this log locks it for a moment."""
    found = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE relation = 'ledger_events'::regclass"
    ).fetchone()
    return found == (0,)


def patient(settings: Settings) -> Settings:
    """``settings`` with waits at the log bounded by 300 s, not the default 5 s: the group
    tests hold the log while they queue callers one by one, each seen queued, which can
    outlast 5 s on a loaded machine (at 20 ms, five of them failed with ``LockTimeout``).
    A test of the bound itself sets its own."""
    return replace(settings, lock_timeout="300s")


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
