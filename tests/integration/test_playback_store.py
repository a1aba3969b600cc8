"""The playback store (issue 26): heartbeats beside the money log, on PostgreSQL."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from ledger import api
from ledger.commands.access import RecordPlayback
from ledger.commands.parsing import parse_command
from ledger.config import Settings
from ledger.database import migrations
from ledger.database.connections import connect
from ledger.domain import clock
from ledger.playback import partitions
from ledger.playback.decide import Heartbeat
from ledger.playback.group import GroupEncoder
from ledger.service import Ledger
from ledger.upkeep.rebuild import rebuild
from ledger.upkeep.verify import verify
from tests import citus_support
from tests.citus_support import PlacingFromHere
from tests.integration.test_golden_log import _load
from tests.integration.test_golden_v2 import GOLDEN, stored
from tests.support import TABLES, append, catalogue, dump_all, grant, play, statuses, t

Conn = psycopg.Connection[Any]


def _quiet_rebuild(settings: Settings) -> None:
    with open("/dev/null", "w") as quiet:
        rebuild(settings, stream=quiet)


def test_a_heartbeat_commits_while_another_connection_holds_the_logs_lock(
    ledger_app: Ledger, settings: Settings, conn: Conn
) -> None:
    append(ledger_app, *catalogue(), grant("alice"))
    with connect(settings) as holder:
        holder.execute("LOCK TABLE ledger_events IN EXCLUSIVE MODE")
        results = append(ledger_app, play("alice", 30, at=t(5)))
        assert statuses(results) == ["accepted"]
        # the lock is still held by the other connection: the heartbeat never waited for it
        held = conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE c.relname = 'ledger_events' AND l.mode = 'ExclusiveLock' AND l.granted "
            "AND l.pid = %s",
            (holder.info.backend_pid,),
        ).fetchone()
        assert held == (1,)
        holder.rollback()
    assert conn.execute("SELECT position_seconds FROM video_playback").fetchone() == (30,)
    assert conn.execute(
        "SELECT count(*) FROM ledger_events WHERE topic = 'PlaybackProgressed'"
    ).fetchone() == (0,)


def test_answers_duplicates_keys_and_the_rows(ledger_app: Ledger, conn: Conn) -> None:
    append(ledger_app, *catalogue(), grant("alice", at=t(2)))
    keyed = {**play("alice", 10, at=t(3)), "idempotency_key": "hb-1"}
    other = {**keyed, "position_seconds": 11}
    results = append(
        ledger_app,
        play("alice", 40, at=t(5)),
        play("alice", 40, at=t(5)),  # the same heartbeat again, in the same group
        keyed,
        other,  # the same key, another payload
        play("alice", 96, at=t(4)),  # older, but reaches 95 %
        play("bob", 5, at=t(5)),  # bob has no access
        play("nobody", 5, at=t(5)),
    )
    assert [r.status for r in results] == [
        "accepted",
        "duplicate",
        "accepted",
        "rejected",
        "accepted",
        "rejected",
        "rejected",
    ]
    assert [r.error.code for r in results if r.error is not None] == [
        "conflict",
        "no_access",
        "not_found",
    ]
    positions = [r.position for r in results if r.status == "accepted"]
    assert positions == sorted(positions) and len(set(positions)) == 3
    assert statuses(append(ledger_app, play("alice", 40, at=t(5)), keyed)) == ["duplicate"] * 2
    row = conn.execute(
        "SELECT position_seconds, completed, updated_at = %s::timestamptz FROM video_playback",
        (t(5),),
    ).fetchone()
    assert row == (40, True, True)
    access = conn.execute(
        "SELECT last_accessed_at = %s::timestamptz FROM content_access WHERE user_id = 'alice'",
        (t(5),),
    ).fetchone()
    assert access == (True,)
    assert conn.execute("SELECT count(*) FROM playback_heartbeats").fetchone() == (3,)


def test_rebuild_and_verify_give_the_rows_the_store_made(
    ledger_app: Ledger, settings: Settings, conn: Conn, placing_from_here: PlacingFromHere
) -> None:
    append(ledger_app, *catalogue(), grant("alice", at=t(2)), grant("bob", at=t(2)))
    beats = [play("alice", p, at=t(3, 12, p)) for p in range(0, 60, 7)]
    beats += [play("bob", 97, at=t(3)), play("bob", 10, at=t(6)), play("alice", 1, at=t(3))]
    random.Random(26).shuffle(beats)
    assert "rejected" not in statuses(append(ledger_app, *beats))
    live = dump_all(conn)
    placing_from_here()  # verify's scratch tables, then the rebuild
    assert verify(settings) == []
    _quiet_rebuild(settings)
    assert dump_all(conn) == live


def test_two_processes_racing_on_one_pair_leave_the_newest(
    ledger_app: Ledger,
    settings: Settings,
    conn: Conn,
    cli_env: dict[str, str],
    placing_from_here: PlacingFromHere,
) -> None:
    append(ledger_app, *catalogue(), grant("alice", at=t(2)))
    minutes = list(range(60))
    random.Random(7).shuffle(minutes)
    files = [
        "\n".join(json.dumps(play("alice", m, at=t(5, 12, m))) for m in minutes if m % 2 == k)
        for k in (0, 1)
    ]
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "ledger", "append"],
            env=cli_env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in files
    ]
    outputs = [w.communicate(f + "\n") for w, f in zip(workers, files, strict=True)]
    assert [w.returncode for w in workers] == [0, 0], outputs
    answers = [json.loads(line) for out, _ in outputs for line in out.splitlines()]
    assert {a["status"] for a in answers} == {"accepted"} and len(answers) == 60
    row = conn.execute(
        "SELECT position_seconds, updated_at = %s::timestamptz FROM video_playback",
        (t(5, 12, 59),),
    ).fetchone()
    assert row == (59, True)
    assert conn.execute("SELECT count(*) FROM playback_heartbeats").fetchone() == (60,)
    placing_from_here()
    assert verify(settings) == []


def test_upgrading_a_log_that_holds_heartbeats_counts_nothing_twice(
    empty_settings: Settings,
) -> None:
    settings = empty_settings
    with connect(settings, autocommit=True) as conn:
        migrations.upgrade(conn, settings.schema, to=10)
        _load(conn, stored("v3"))
        # the tables as the ledger before the store had left them (its golden rows)
        rows = json.loads((GOLDEN / "v3" / "tables.json").read_text(encoding="utf-8"))
        for table in TABLES:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {t} SELECT * FROM jsonb_populate_recordset(NULL::{t}, %s)"
                ).format(t=sql.Identifier(table)),
                (Jsonb(rows[table]),),
            )
        before = dump_all(conn)
        assert before["video_playback"], "the golden log holds heartbeats"
        # migration 0026 gives each row its content's organization, as its last column
        organization = {row[0]: row[1] for row in before["content"]}
        before["video_playback"] = [
            (*row, organization[row[2]]) for row in before["video_playback"]
        ]
    api.upgrade(settings)
    with connect(settings, autocommit=True) as conn:
        assert dump_all(conn) == before
        base = conn.execute("SELECT count(*) FROM playback_base").fetchone()
        assert base == (len(before["video_playback"]),)
        assert verify(settings) == []
        _quiet_rebuild(settings)
        assert dump_all(conn) == before
        # a heartbeat of the log sent again: the log's Playback knows it, a duplicate
        shown = conn.execute(
            "SELECT user_id, content_id::text, position_seconds, duration_seconds, "
            "to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"') "
            "FROM video_playback ORDER BY user_id, content_id LIMIT 1"
        ).fetchone()
    assert shown is not None
    user_id, content_id, position, duration, at = shown
    again = play(user_id, position, duration, content_id, at=at)
    app = api.open_ledger(settings)
    try:
        (answer,) = append(app, again)
    finally:
        app.close()
    assert answer.status == "duplicate"
    with connect(settings, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM playback_heartbeats").fetchone() == (0,)
        assert dump_all(conn) == before


def _heartbeats(*lines: dict[str, Any]) -> list[Heartbeat]:
    parsed = [parse_command(json.dumps(line)) for line in lines]
    return [Heartbeat.of(c, clock.now()) for c in parsed if isinstance(c, RecordPlayback)]


@pytest.mark.single_server(citus_support.PLAYBACK_RECORD)
def test_a_distinct_group_is_decided_alike_with_or_without_the_walk(
    ledger_app: Ledger, settings: Settings, conn: Conn, placing_from_here: PlacingFromHere
) -> None:
    """Migration 0025: a group flagged ``distinct`` skips the walk in order; on the same
    state, its answers and every row it writes are those of the walked form."""
    append(ledger_app, *catalogue(), grant("alice", at=t(2)), play("alice", 50, at=t(6)))
    days = {partitions.day(datetime.fromisoformat(t(day))) for day in (4, 5, 7)}
    placing_from_here()  # the days' partitions made here
    partitions.create(conn, settings.schema, days)
    group = GroupEncoder(settings.schema).encode(
        _heartbeats(
            play("alice", 40, at=t(5)),  # older than the row's: kept in the store only
            play("alice", 96, at=t(4)),  # older, but reaches 95 %: completed turns true
            play("bob", 5, at=t(5)),  # no access
            {**play("alice", 70, at=t(7)), "idempotency_key": "hb-k"},  # the newest
            play("alice", 50, at=t(6)),  # stored already
        )
    )
    flagged = json.loads(group)
    assert flagged[0]["distinct"] is True
    walked = [{k: v for k, v in row.items() if k != "distinct"} for row in flagged]
    outcomes = []
    for form in (walked, flagged):
        with conn.transaction(force_rollback=True):
            answers = conn.execute(
                'SELECT n, status, "position" IS NOT NULL, organization_id, legacy '
                "FROM playback_record(%s, 1)",
                (json.dumps(form),),
            ).fetchall()
            rows = conn.execute(
                "SELECT user_id, position_seconds, completed, updated_at, created_at "
                "FROM video_playback ORDER BY user_id"
            ).fetchall()
            access = conn.execute(
                "SELECT user_id, last_accessed_at, updated_at FROM content_access ORDER BY user_id"
            ).fetchall()
            stored = conn.execute(
                "SELECT identity, idempotency_key, position_seconds FROM playback_heartbeats "
                'ORDER BY "position"'
            ).fetchall()
            keys = conn.execute("SELECT idempotency_key FROM playback_keys").fetchall()
            outcomes.append((answers, rows, access, stored, keys))
    assert outcomes[0] == outcomes[1]
    answers, rows, _, stored, keys = outcomes[1]
    assert [a[1] for a in answers] == ["accepted", "accepted", "no_access", "accepted", "duplicate"]
    assert [(r[1], r[2]) for r in rows] == [(70, True)]
    assert len(stored) == 4 and keys == [("hb-k",)]


@pytest.mark.single_server(citus_support.PLAYBACK_RECORD)
def test_a_group_flagged_distinct_wrongly_applies_nothing_twice(
    ledger_app: Ledger, settings: Settings, conn: Conn, placing_from_here: PlacingFromHere
) -> None:
    """The store flags only groups whose heartbeats share nothing; a group flagged wrongly
    (the same heartbeat twice) collides on the store's primary key and writes nothing."""
    append(ledger_app, *catalogue(), grant("alice", at=t(2)))
    placing_from_here()
    partitions.create(conn, settings.schema, {partitions.day(datetime.fromisoformat(t(5)))})
    same = play("alice", 40, at=t(5))
    group = json.loads(GroupEncoder(settings.schema).encode(_heartbeats(same, same)))
    assert "distinct" not in group[0]  # a repeated heartbeat: the walked form
    group[0]["distinct"] = True
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("SELECT * FROM playback_record(%s, 1)", (json.dumps(group),))
    assert conn.execute("SELECT count(*) FROM playback_heartbeats").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM video_playback").fetchone() == (0,)
    assert statuses(append(ledger_app, same, same)) == ["accepted", "duplicate"]
