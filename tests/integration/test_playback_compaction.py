"""Retention of the playback store: compaction, status, the stream (issue 26)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime
from typing import Any

import psycopg

from ledger import api
from ledger.config import Settings
from ledger.database import store_placement
from ledger.database.connections import connect
from ledger.service import Ledger
from ledger.upkeep.rebuild import rebuild
from ledger.upkeep.verify import verify
from tests.support import append, catalogue, cli, dump_all, grant, play, statuses, t

Conn = psycopg.Connection[Any]


def _quiet_rebuild(settings: Settings) -> None:
    with open("/dev/null", "w") as quiet:
        rebuild(settings, stream=quiet)


def _history(app: Ledger) -> None:
    """Heartbeats of two viewers over five days, in no order of time."""
    append(app, *catalogue(), grant("alice", at=t(1)), grant("bob", at=t(1)))
    beats = [
        play("alice", 10, at=t(3)),
        play("alice", 97, at=t(2)),  # completes on day 2
        play("bob", 20, at=t(2)),
        play("alice", 30, at=t(5)),
        play("bob", 5, at=t(4)),
        play("alice", 40, at=t(3, 18)),
    ]
    assert statuses(append(app, *beats)) == ["accepted"] * len(beats)


def test_compaction_folds_drops_partitions_and_rebuilds_exactly(
    ledger_app: Ledger, settings: Settings, conn: Conn, cli_env: dict[str, str]
) -> None:
    _history(ledger_app)
    before = api.playback_status(settings)
    assert (before["heartbeats"], before["partitions"]) == (6, 4)
    assert before["oldest"] == "2026-01-02T12:00:00.000000+00:00"
    assert before["retention_seconds"] == 30 * 86400
    live = dump_all(conn)
    assert verify(settings) == []

    done = api.playback_compact(settings, datetime.fromisoformat(t(4, 9)))
    # rounded down to the day: day 2 and day 3 (4 heartbeats, 2 pairs) go whole
    assert (done.records, done.partitions, done.pairs) == (4, 2, 2)
    after = api.playback_status(settings)
    assert (after["heartbeats"], after["partitions"], after["base_rows"]) == (2, 2, 2)
    assert after["compacted_before"] == "2026-01-04T00:00:00.000000+00:00"
    assert dump_all(conn) == live
    assert verify(settings) == []
    _quiet_rebuild(settings)
    assert dump_all(conn) == live

    # before the horizon: refused, whether it is a redelivery or not
    (stale,) = append(ledger_app, play("alice", 10, at=t(3)))
    assert stale.error is not None
    assert (stale.error.code, stale.error.field) == ("invalid_state", "occurred_at")
    assert api.playback_status(settings)["heartbeats"] == 2
    assert statuses(append(ledger_app, play("bob", 50, at=t(6)))) == ["accepted"]
    assert verify(settings) == []

    # the CLI: status in JSON, a compaction that finds nothing, the stream
    status = cli(cli_env, "playback", "status", "--format", "json")
    assert json.loads(status.stdout)["heartbeats"] == 3
    again = cli(cli_env, "playback", "compact", "--before", "2026-01-03T00:00:00+00:00")
    assert again.returncode == 0 and "0 heartbeats folded" in again.stdout
    events = cli(cli_env, "playback", "events", "--limit", "2")
    lines = [json.loads(line) for line in events.stdout.splitlines()]
    assert [r["occurred_at"][:10] for r in lines] == ["2026-01-05", "2026-01-04"]
    # resumed after the last line: a position, or on the distributed store (each
    # organization its own positions, migration 0027) a cursor naming its organization
    last = lines[-1]
    resume = str(last["position"])
    if store_placement.store_is_distributed(conn, settings.schema):
        resume = f"{last['organization_id']}:{resume}"
    rest = cli(cli_env, "playback", "events", "--after", resume)
    assert [json.loads(line)["user_id"] for line in rest.stdout.splitlines()] == ["bob"]


def test_a_compaction_killed_midway_leaves_the_store_exact(
    ledger_app: Ledger, settings: Settings, conn: Conn, cli_env: dict[str, str]
) -> None:
    _history(ledger_app)
    live = dump_all(conn)
    store = conn.execute("SELECT count(*) FROM playback_heartbeats").fetchone()
    with connect(settings) as holder:
        # the partitions' drop waits for this lock, after the base is written
        holder.execute("LOCK TABLE ONLY playback_heartbeats IN ACCESS SHARE MODE")
        env = {**cli_env, "LEDGER_LOCK_TIMEOUT": "60s"}
        compaction = subprocess.Popen(
            [sys.executable, "-m", "ledger", "playback", "compact", "--before", t(4)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        waiting = None
        while waiting is None and compaction.poll() is None:
            row = conn.execute(
                "SELECT a.pid FROM pg_stat_activity a WHERE a.wait_event_type = 'Lock' "
                "AND a.query LIKE 'DROP TABLE%%' AND a.datname = current_database() "
                "AND a.pid <> %s",
                (holder.info.backend_pid,),
            ).fetchone()
            waiting = row[0] if row else None
        assert waiting is not None, compaction.communicate()
        os.kill(compaction.pid, signal.SIGKILL)
        compaction.wait()
        holder.rollback()
    # the server ends the killed client's transaction: wait for its backend to go
    while conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (waiting,)).fetchone():
        pass
    assert conn.execute("SELECT count(*) FROM playback_base").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM playback_heartbeats").fetchone() == store
    assert verify(settings) == []
    _quiet_rebuild(settings)
    assert dump_all(conn) == live
    done = api.playback_compact(settings, datetime.fromisoformat(t(4)))
    assert done.records == 4
    assert verify(settings) == []
