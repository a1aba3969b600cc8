"""On the distributed store each organization has its own positions and lock (issue 28,
migration 0027, docs/stream.md "The playback store's stream"): a group of one organization's
heartbeats takes nothing on the coordinator and commits on its organization's worker alone,
a group of another organization never waits for it, and a reader keeping a position per
organization (a cursor) never skips a committed record, whatever the interleaving."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg import sql

from ledger.config import Settings
from ledger.database.connections import connect
from ledger.playback import stream
from ledger.reading.cursor import Cursor, parse_cursor
from ledger.service import Ledger
from tests import citus_support
from tests.citus_support import CitusCluster
from tests.playback_placed import VIDEOS, VIEWERS, two_organizations
from tests.serving import serve
from tests.support import append, play, statuses, t

pytestmark = pytest.mark.citus
Conn = psycopg.Connection[Any]


@pytest.fixture
def two(
    citus: CitusCluster, settings: Settings, conn: Conn
) -> Iterator[tuple[Ledger, dict[str, str]]]:
    """The store distributed, two organizations on distinct workers, each with a video that
    every viewer may watch: (the ledger, organization by video)."""
    app, owners = two_organizations(citus, settings, conn)
    try:
        yield app, owners
    finally:
        app.close()


def _count(conn: Conn, query: str, *params: object) -> int:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return int(row[0])


def test_a_held_group_of_one_organization_never_delays_another(
    citus: CitusCluster, settings: Settings, conn: Conn, two: tuple[Ledger, dict[str, str]]
) -> None:
    """Organization A's positions held by an open transaction (its head row, what A's group
    holds to its commit): B's heartbeats commit meanwhile, A's next group waits on A's
    worker, and the coordinator holds no advisory lock and no waiting lock."""
    app, owners = two
    (a, b), (video_a, video_b) = owners.values(), owners.keys()
    first = [play("viewer0", 1, content_id=v, at=t(3)) for v in VIDEOS]
    assert [(r.status, r.position) for r in append(app, *first)] == [("accepted", 1)] * 2
    holder = psycopg.connect(settings.url, autocommit=False)
    try:
        holder.execute(
            sql.SQL("SELECT 1 FROM {} WHERE organization_id = %s FOR UPDATE").format(
                sql.Identifier(settings.schema, "playback_heads")
            ),
            (a,),
        )
        answers: list[Any] = []
        waiting_a = threading.Thread(
            target=lambda: answers.extend(
                append(app, play("viewer1", 2, content_id=video_a, at=t(3)))
            )
        )
        waiting_a.start()
        worker_a = citus.connect_worker(
            citus.placement(conn, f"{settings.schema}.content", a).worker
        )
        with worker_a:
            _until(lambda: _count(worker_a, "SELECT count(*) FROM pg_locks WHERE NOT granted") > 0)
        # A waits on its worker: the coordinator holds nothing that B's group could wait on
        # no advisory lock of a client's (objsubid 1 or 2: pg_advisory_lock's keys) but the
        # test harness's, around placing schemas; Citus's own (objsubid 4 and more: a shard's
        # metadata, held by every routed write of the shard) only shared, which writers
        # never wait on (only a shard move does)
        advisory = conn.execute(
            "SELECT (classid::bigint << 32) | objid::bigint, objsubid, mode FROM pg_locks"
            " WHERE locktype = 'advisory'"
        ).fetchall()
        clients = {key for key, kind, _ in advisory if kind in (1, 2)}
        assert clients <= {citus_support.PLACING_LOCK}, advisory
        assert {mode for _, kind, mode in advisory if kind > 2} <= {"ShareLock"}, advisory
        assert _count(conn, "SELECT count(*) FROM pg_locks WHERE NOT granted") == 0
        b_group = [play(v, 3, content_id=video_b, at=t(3)) for v in VIEWERS[1:]]
        assert [(r.status, r.position) for r in append(app, *b_group)] == [
            ("accepted", 2),
            ("accepted", 3),
            ("accepted", 4),
        ]
        assert waiting_a.is_alive() and not answers, "A's group did not wait for A's head"
    finally:
        holder.rollback()
        holder.close()
    waiting_a.join(timeout=120)
    assert not waiting_a.is_alive()
    assert [(r.status, r.position) for r in answers] == [("accepted", 2)]
    stored = conn.execute(
        "SELECT organization_id::text, array_agg(position ORDER BY position)"
        " FROM playback_heartbeats GROUP BY 1"
    ).fetchall()
    assert dict(stored) == {a: [1, 2], b: [1, 2, 3, 4]}


def test_a_group_of_one_organization_commits_on_its_worker_alone(
    citus: CitusCluster,
    settings: Settings,
    conn: Conn,
    no_recovery: None,
    two: tuple[Ledger, dict[str, str]],
) -> None:
    """No two-phase commit (no row of ``pg_dist_transaction``) for a group of one
    organization's heartbeats (the service groups heartbeats per organization): its facts
    are read before its transaction, its rows written by router statements."""
    app, owners = two
    # the day's partition first: made on every node (DDL), a two-phase commit of its own
    # (which shows the count counts)
    before = _count(conn, "SELECT count(*) FROM pg_dist_transaction")
    assert statuses(append(app, play("viewer0", 1, content_id=VIDEOS[0], at=t(4)))) == ["accepted"]
    made = _count(conn, "SELECT count(*) FROM pg_dist_transaction")
    assert made > before
    for n, video in enumerate(VIDEOS * 3):
        beats = [play(v, 10 + n, content_id=video, at=t(4, 10 + n)) for v in VIEWERS]
        assert statuses(append(app, *beats)) == ["accepted"] * len(VIEWERS)
    for video in VIDEOS:
        assert statuses(append(app, play("viewer0", 50, content_id=video, at=t(4, 20)))) == [
            "accepted"
        ]
    assert _count(conn, "SELECT count(*) FROM pg_dist_transaction") == made
    heads = conn.execute("SELECT organization_id::text, position FROM playback_heads")
    # gapless, each organization's own count: the warm-up, three groups of 4, the last one
    assert dict(heads.fetchall()) == {owners[VIDEOS[0]]: 14, owners[VIDEOS[1]]: 13}


def test_a_reader_by_cursor_never_skips_a_record_of_concurrent_writers(
    settings: Settings, conn: Conn, two: tuple[Ledger, dict[str, str]]
) -> None:
    """Four threads append heartbeats of both organizations while a reader follows the
    store by cursor: it reads every committed record exactly once, each organization's in
    its position order, and the positions of each are 1, 2, 3 ... without a gap."""
    app, owners = two
    done = threading.Event()
    seen: list[tuple[str, int]] = []

    def read() -> None:
        with connect(settings, autocommit=True) as reader:
            cursor = Cursor()
            while True:
                finished = done.is_set()  # read once more after the writers ended
                batch, cursor = stream.read_cursor(reader, settings.schema, cursor, 7)
                seen.extend((r["organization_id"], r["position"]) for r in batch)
                if finished and not batch:
                    return

    def write(viewer: str) -> None:
        for n in range(12):
            video = VIDEOS[n % 2]
            assert statuses(append(app, play(viewer, n, content_id=video, at=t(6, 1, n)))) == [
                "accepted"
            ]

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(v,)) for v in VIEWERS]
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=300)
    done.set()
    reader.join(timeout=120)
    assert not reader.is_alive()
    assert len(seen) == len(set(seen)) == 48
    for organization in owners.values():
        mine = [p for o, p in seen if o == organization]
        assert mine == list(range(1, 25)), organization


def test_playback_events_takes_and_prints_a_cursor_of_every_organization(
    settings: Settings, cli_env: dict[str, str], two: tuple[Ledger, dict[str, str]]
) -> None:
    app, owners = two
    a, b = owners.values()
    beats = [play(v, 5, content_id=video, at=t(7)) for video in VIDEOS for v in VIEWERS[:2]]
    assert statuses(append(app, *beats)) == ["accepted"] * 4
    out, err, code = _events(cli_env)
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert sorted((r["organization_id"], r["position"]) for r in lines) == sorted(
        [(a, 1), (a, 2), (b, 1), (b, 2)]
    )
    # stopped by --limit: the hint names a cursor, and resuming there reads the rest
    out, err, code = _events(cli_env, "--limit", "1", "--after", f"{min(a, b)}:1")
    assert code == 0, err
    (line,) = [json.loads(x) for x in out.splitlines()]
    cursor = parse_cursor(f"{min(a, b)}:1").advanced(
        {UUID(line["organization_id"]): line["position"]}
    )
    rest, err, code = _events(cli_env, "--after", str(cursor))
    assert code == 0, err
    assert len(rest.splitlines()) == 2
    # a bare position past 0 is no order across organizations: refused, one line
    out, err, code = _events(cli_env, "--after", "2")
    assert (code, out) == (2, "")
    assert err.startswith(
        "ledger playback events: error: --after: the playback store is distributed"
    )
    assert "Traceback" not in err


def _events(env: dict[str, str], *flags: str) -> tuple[str, str, int]:
    done = subprocess.run(
        [sys.executable, "-m", "ledger", "playback", "events", *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout, done.stderr, done.returncode


def _until(condition: Any, seconds: float = 60.0) -> None:
    """Waits for ``condition()`` (an event observed in the database), polling."""
    stop = threading.Event()
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        stop.wait(0.05)
    raise AssertionError("the awaited condition never held")


def test_the_http_feed_of_heartbeats_takes_and_answers_a_cursor(
    settings: Settings, two: tuple[Ledger, dict[str, str]]
) -> None:
    """``GET /v1/playback/events`` on the distributed store: ``next_after`` a cursor of
    every organization, ``after`` that cursor resumes, a bare position past 0 refused."""
    app, owners = two
    beats = [play(v, 7, content_id=video, at=t(8)) for video in VIDEOS for v in VIEWERS[:3]]
    assert statuses(append(app, *beats)) == ["accepted"] * 6
    with serve(settings) as served, served.client() as client:
        first = client.get("/v1/playback/events", params={"limit": 4}).json()
        assert len(first["heartbeats"]) == 4
        rest = client.get("/v1/playback/events", params={"after": first["next_after"]}).json()
        read = [(h["organization_id"], h["position"]) for h in first["heartbeats"]]
        read += [(h["organization_id"], h["position"]) for h in rest["heartbeats"]]
        assert sorted(read) == sorted((o, p) for o in owners.values() for p in (1, 2, 3))
        assert parse_cursor(rest["next_after"]) == Cursor({UUID(o): 3 for o in owners.values()})
        bad = client.get("/v1/playback/events", params={"after": "2"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "after"
