"""A person's deletion and erasure in parts, one organization at a time (issue 28,
``ledger.service.departures``, docs/scaling.md).

On a layout split by organization (a ledger opened ``per_organization``, as on Citus; the
parts are the service's, whatever the server) ``user.delete`` and ``user.erase`` are one
``UserLeftOrganization`` per organization holding rows of the person, each its own
transaction, then the global fact. A process SIGKILLed between two parts (at an observed
point: its second part waiting on a row lock the test holds) leaves the first part done and
nothing else; the same command, retried, does the rest and is ``accepted``, no part twice,
and the tables end exactly as an unsplit deletion leaves them on a single server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from ledger import api
from ledger.config import Settings
from ledger.database.connections import connect
from ledger.service import Ledger
from ledger.upkeep.verify import verify
from tests import citus_support
from tests.integration.test_group_commit import wait_for
from tests.support import (
    CONTENT_2,
    ORG,
    ORG_2,
    append,
    catalogue,
    complete,
    dump_all,
    grant,
    org,
    play,
    publish,
    statuses,
)

Conn = psycopg.Connection[Any]

# the person buys and is granted in two organizations; bob, in both too, stays
HISTORY = [
    *catalogue(),
    org(ORG_2, "Contoso"),
    publish(CONTENT_2, ORG_2),
    complete("pi_a1"),
    complete("pi_a2", content_id=CONTENT_2),
    complete("pi_b1", customer="bob"),
    grant("bob", CONTENT_2),
    # heartbeats: the playback store's statements do not run on a distributed layout yet
    # (docs/scaling.md, "What is left"), so the cluster's run leaves them out
    *(
        []
        if citus_support.distribute_requested()
        else [play("alice", 30), play("alice", 40, content_id=CONTENT_2)]
    ),
]

# a ledger with the deletion in parts, in a process of its own: the one the test kills
APPENDER = """
import json, sys
from ledger import api
from ledger.config import Settings
from ledger.service import Ledger
app = Ledger(Settings(url=sys.argv[1], schema=sys.argv[2]), per_organization=True)
print(json.dumps([r.status for _, r in api.append_lines(app, [sys.argv[3]])]), flush=True)
"""


@pytest.fixture
def split(settings: Settings) -> Iterator[Ledger]:
    app = Ledger(settings, per_organization=True)
    yield app
    app.close()


def _topics(conn: Conn) -> list[str]:
    return [
        r[0]
        for r in conn.execute("SELECT topic FROM ledger_events ORDER BY notification_id").fetchall()
    ]


def _people(conn: Conn, user_id: str) -> dict[str, int]:
    """How many rows of each table name the person."""
    counts = {}
    for table, column in (
        ("users", "id"),
        ("purchases", "customer_id"),
        ("content_access", "user_id"),
        ("video_playback", "user_id"),
    ):
        query = f"SELECT count(*) FROM {table} WHERE {column} = %s"  # fixed names only
        row = conn.execute(query.encode(), (user_id,)).fetchone()
        counts[table] = int(row[0]) if row else -1
    return counts


def _unsplit(fresh: Callable[[], Settings], command: dict[str, Any]) -> dict[str, Any]:
    """The tables after the same history and command on a single server, in one
    transaction: what the parts must end in."""
    settings = fresh()
    app = api.open_ledger(settings)
    try:
        assert set(statuses(append(app, *HISTORY, command))) == {"accepted"}
    finally:
        app.close()
    with connect(settings, autocommit=True) as conn:
        return dump_all(conn)


@pytest.mark.parametrize("kind", ["user.delete", "user.erase"])
def test_a_deletion_is_one_part_per_organization_then_the_global_fact(
    kind: str, split: Ledger, conn: Conn, settings: Settings, fresh: Callable[[], Settings]
) -> None:
    command = {"type": kind, "user_id": "alice"}
    assert set(statuses(append(split, *HISTORY))) == {"accepted"}
    before = len(_topics(conn))
    assert statuses(append(split, command)) == ["accepted"]
    fact = "UserDeleted" if kind == "user.delete" else "UserErased"
    assert _topics(conn)[before:] == ["UserLeftOrganization", "UserLeftOrganization", fact]
    left = conn.execute(
        "SELECT convert_from(state, 'UTF8')::jsonb->>'organization_id' FROM ledger_events"
        " WHERE topic = 'UserLeftOrganization' ORDER BY notification_id"
    ).fetchall()
    assert [r[0] for r in left] == [ORG, ORG_2]
    assert _people(conn, "alice") == dict.fromkeys(_people(conn, "alice"), 0)
    assert _people(conn, "bob")["purchases"] == 1 and _people(conn, "bob")["content_access"] == 2
    assert dump_all(conn) == _unsplit(fresh, command)
    assert verify(settings) == []
    # again: answered as docs/cli.md has it, and nothing recorded
    again = "duplicate" if kind == "user.delete" else "rejected:not_found"
    assert statuses(append(split, command)) == [again]
    assert len(_topics(conn)) == before + 3


def test_a_person_with_rows_in_no_organization_is_deleted_in_one_part(
    split: Ledger, conn: Conn
) -> None:
    assert set(statuses(append(split, *HISTORY, {"type": "user.register", "user_id": "dan"})))
    before = len(_topics(conn))
    assert statuses(append(split, {"type": "user.delete", "user_id": "dan"})) == ["accepted"]
    assert _topics(conn)[before:] == ["UserDeleted"]
    # an unknown person: not_found, and no part run
    assert statuses(append(split, {"type": "user.delete", "user_id": "eve"})) == [
        "rejected:not_found"
    ]
    assert len(_topics(conn)) == before + 1


def _waiting_behind(conn: Conn, blocker: int) -> int | None:
    """The backend (of this server) waiting on a lock ``blocker`` holds: on Citus the wait is
    a worker's, and ``citus_lock_waits`` names both ends by global pid (node and pid)."""
    if citus_support.distribute_requested():
        row = conn.execute(
            "SELECT waiting_gpid %% 10000000000 FROM citus_lock_waits"
            " WHERE blocking_gpid = %s AND waiting_gpid / 10000000000 = 1",
            (blocker,),
        ).fetchone()
    else:
        row = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", (blocker,)
        ).fetchone()
    return int(row[0]) if row else None


def _gone(conn: Conn, pid: int) -> bool:
    row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return row is not None and row[0] == 0


@pytest.mark.parametrize("orphan", ["terminated", "left"])
@pytest.mark.parametrize("kind", ["user.delete", "user.erase"])
def test_a_process_killed_between_parts_is_finished_by_the_retry(
    kind: str,
    orphan: str,
    split: Ledger,
    conn: Conn,
    settings: Settings,
    fresh: Callable[[], Settings],
) -> None:
    command = {"type": kind, "user_id": "alice"}
    assert set(statuses(append(split, *HISTORY))) == {"accepted"}
    before = len(_topics(conn))
    with connect(settings) as blocker:
        # the second part (ORG_2's) will wait on this row lock of alice's purchase there
        blocker.execute(
            "SELECT 1 FROM purchases WHERE organization_id = %s FOR UPDATE", (ORG_2,)
        ).fetchall()
        blocker_pid = blocker.info.backend_pid
        if citus_support.distribute_requested():  # its global pid, as citus_lock_waits has it
            found = blocker.execute("SELECT citus_backend_gpid()").fetchone()
            assert found is not None
            blocker_pid = int(found[0])
        process = subprocess.Popen(
            [sys.executable, "-c", APPENDER, settings.url, settings.schema, json.dumps(command)],
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(lambda: _waiting_behind(conn, blocker_pid) is not None, 120)
            waiting = _waiting_behind(conn, blocker_pid)
            assert waiting is not None
            # the observed point: ORG's part committed, ORG_2's part in its transaction
            assert _topics(conn)[before:] == ["UserLeftOrganization"]
            process.send_signal(signal.SIGKILL)
            assert process.wait(timeout=60) == -signal.SIGKILL
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        if orphan == "terminated":  # the process's server connection lost with it
            conn.execute("SELECT pg_terminate_backend(%s::integer)", (waiting,))
            wait_for(lambda: _gone(conn, waiting), 60)
        blocker.rollback()
    # a backend left behind holds the whole part's transaction, its COMMIT included (sent in
    # one round trip): once the lock is free it commits, then finds its client gone
    wait_for(lambda: _gone(conn, waiting), 60)
    done = 1 if orphan == "terminated" else 2
    assert _topics(conn)[before:] == ["UserLeftOrganization"] * done
    rows = _people(conn, "alice")
    assert rows["users"] == 1  # the global part never ran
    assert rows["purchases"] == 2 - done  # ORG's gone; ORG_2's gone if its part committed
    assert verify(settings) == []  # the tables are the log's, between the parts too
    # the retry, by another process: accepted, the part done is passed over
    retry = Ledger(settings, per_organization=True)
    try:
        assert statuses(append(retry, command)) == ["accepted"]
        fact = "UserDeleted" if kind == "user.delete" else "UserErased"
        assert _topics(conn)[before:] == ["UserLeftOrganization", "UserLeftOrganization", fact]
        assert dump_all(conn) == _unsplit(fresh, command)
        assert verify(settings) == []
        again = "duplicate" if kind == "user.delete" else "rejected:not_found"
        assert statuses(append(retry, command)) == [again]
        assert len(_topics(conn)) == before + 3
    finally:
        retry.close()
