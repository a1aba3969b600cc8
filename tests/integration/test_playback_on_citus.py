"""The playback store on the distributed layout (docs/scaling.md, "The playback store on
Citus"): `ledger db distribute` places the store's records and base rows by organization
beside content, its keys by the key itself; heartbeats of one organization are stored on the
worker that holds it, another's on the other worker, and the answers and rows are those of a
single server."""

from __future__ import annotations

from datetime import date, datetime
from itertools import islice
from typing import Any

import psycopg
import pytest
from psycopg import sql

from ledger import api
from ledger.config import Settings
from ledger.database import distribution, store_placement
from ledger.database.connections import connect
from ledger.playback import distributed, partitions
from ledger.playback.statements import NEWEST_WINS
from tests import citus_support
from tests.citus_support import CitusCluster
from tests.playback_on_citus import (
    VIDEO_B,
    _distributed,
    alice_granted_video_b,
    granted_in_each,
)
from tests.support import append, play, statuses, t

pytestmark = pytest.mark.citus

Conn = psycopg.Connection[Any]


def test_distribute_places_the_store(settings: Settings, conn: Conn) -> None:
    _distributed(settings)
    assert store_placement.store_places(conn, settings.schema) == {
        "playback_state": "reference",
        "playback_heartbeats": "distributed",
        "playback_base": "distributed",
        "playback_keys": "distributed",
        "playback_compacted_keys": "distributed",
        "playback_heads": "distributed",
    }
    colocated = conn.execute(
        "SELECT count(DISTINCT colocationid) FROM pg_dist_partition"
        " WHERE logicalrelid = ANY(%s::regclass[])",
        (
            [
                f"{settings.schema}.{t}"
                for t in (
                    "content",
                    "playback_heartbeats",
                    "playback_base",
                    "playback_heads",
                    "video_playback",
                )
            ],
        ),
    ).fetchone()
    assert colocated == (1,)
    # video_playback carries its organization since 0026: distributed beside its content
    assert distribution.places(conn, settings.schema)["video_playback"] == "distributed"
    # run again: everything in place, nothing done
    with connect(settings) as again:
        steps = store_placement.distribute_store(again, settings.schema)
        again.commit()
    assert steps and not any(step.done for step in steps)


def test_each_organizations_heartbeats_live_on_its_own_worker(
    citus: CitusCluster, settings: Settings, conn: Conn
) -> None:
    _distributed(settings)
    content = f"{settings.schema}.content"
    first, second = (
        str(o)
        for o in citus.on_distinct_workers(
            conn, content, islice(citus_support.organizations(), 64), 2
        )
    )
    videos = {first: "aaaaaaaa-0000-4000-8000-000000000001", second: VIDEO_B}
    app = api.open_ledger(settings)
    try:
        granted_in_each(app, videos)
        beats = [
            play("alice", 10, content_id=videos[first], at=t(5)),
            play("bob", 20, content_id=videos[first], at=t(5)),
            play("alice", 30, content_id=videos[second], at=t(5)),
            {**play("alice", 96, content_id=videos[first], at=t(6)), "idempotency_key": "k1"},
        ]
        assert statuses(append(app, *beats)) == ["accepted"] * 4
        # the same again: duplicates, nothing written twice
        assert statuses(append(app, *beats)) == ["duplicate"] * 4
    finally:
        app.close()

    stored = {organization: 0 for organization in videos}
    for part in (partitions.name(_day(5)), partitions.name(_day(6))):
        table = f"{settings.schema}.{part}"
        here = citus.placement(conn, table, first)
        there = citus.placement(conn, table, second)
        assert here.worker != there.worker
        stored[first] += citus.count_on_worker(here, "organization_id", first)
        stored[second] += citus.count_on_worker(there, "organization_id", second)
        # neither worker holds the other organization's heartbeats
        assert citus.count_on_worker(here, "organization_id", second) == 0
        assert citus.count_on_worker(there, "organization_id", first) == 0
    assert stored == {first: 3, second: 1}
    rows = conn.execute(
        "SELECT user_id, content_id::text, position_seconds, completed FROM video_playback"
        " ORDER BY 2, 1"
    ).fetchall()
    assert sorted(rows) == sorted(
        [
            ("alice", videos[first], 96, True),
            ("bob", videos[first], 20, False),
            ("alice", videos[second], 30, False),
        ]
    )
    last = conn.execute(
        "SELECT count(*) FROM content_access WHERE last_accessed_at IS NOT NULL"
    ).fetchone()
    assert last == (3,)


def test_a_groups_heartbeats_write_only_their_organizations_worker(
    citus: CitusCluster, settings: Settings, conn: Conn
) -> None:
    """video_playback's rows of one organization sit on the worker of its content, and
    nothing the group's write changes has a placement on the coordinator: before 0026
    video_playback was a table of the coordinator's, written by every group."""
    _distributed(settings)
    content = f"{settings.schema}.content"
    first, second = (
        str(o)
        for o in citus.on_distinct_workers(
            conn, content, islice(citus_support.organizations(), 64), 2
        )
    )
    videos = {first: "aaaaaaaa-0000-4000-8000-000000000001", second: VIDEO_B}
    app = api.open_ledger(settings)
    try:
        granted_in_each(app, videos)
        beats = [
            play("alice", 10, content_id=videos[first], at=t(5)),
            play("bob", 97, content_id=videos[first], at=t(5)),
            play("alice", 30, content_id=videos[second], at=t(5)),
        ]
        assert statuses(append(app, *beats)) == ["accepted"] * 3
        # the content's organization is known now (it never changes): a later group reads
        # no worker but its organization's
        assert {(settings.schema, v) for v in videos.values()} <= distributed._KNOWN.keys()
        later = [play("alice", 40, content_id=videos[first], at=t(6))]
        assert statuses(append(app, *later)) == ["accepted"]
    finally:
        app.close()
    table = f"{settings.schema}.video_playback"
    for organization, rows in ((first, 2), (second, 1)):
        here = citus.placement(conn, table, organization)
        assert here.worker == citus.placement(conn, content, organization).worker
        assert citus.count_on_worker(here, "organization_id", organization) == rows
    elsewhere = citus.placement(conn, table, second)
    assert citus.count_on_worker(elsewhere, "organization_id", first) == 0
    shown = conn.execute(
        "SELECT user_id, content_id::text, organization_id::text, position_seconds, completed"
        " FROM video_playback"
    ).fetchall()
    assert sorted(shown) == sorted(
        [
            ("alice", videos[first], first, 40, False),
            ("bob", videos[first], first, 97, True),
            ("alice", videos[second], second, 30, False),
        ]
    )
    written = ["video_playback", "content_access", "playback_keys", "playback_heartbeats"]
    written += [partitions.name(_day(5)), partitions.name(_day(6))]
    on_coordinator = conn.execute(
        "SELECT s.logicalrelid::text FROM pg_dist_shard s"
        " JOIN pg_dist_placement p ON p.shardid = s.shardid"
        " WHERE p.groupid = 0 AND s.logicalrelid = ANY(%s::regclass[])",
        ([f"{settings.schema}.{t}" for t in written],),
    ).fetchall()
    assert on_coordinator == []


def test_a_content_deleted_after_its_organization_was_known_is_not_found(
    settings: Settings, conn: Conn
) -> None:
    """The kept organization of a content is checked by the routed read: once the content
    is deleted, a heartbeat of it is answered as on one server."""
    _distributed(settings)
    organization = str(next(citus_support.organizations()))
    app = api.open_ledger(settings)
    try:
        alice_granted_video_b(app, organization)
        assert statuses(append(app, play("alice", 10, content_id=VIDEO_B, at=t(5)))) == ["accepted"]
        assert (settings.schema, VIDEO_B) in distributed._KNOWN
        deleted = {"type": "content.delete", "content_id": VIDEO_B}
        assert statuses(append(app, deleted)) == ["accepted"]
        (answer,) = append(app, play("alice", 20, content_id=VIDEO_B, at=t(6)))
    finally:
        app.close()
    assert answer.status == "rejected" and answer.error is not None
    assert answer.error.code == "not_found"
    assert (settings.schema, VIDEO_B) not in distributed._KNOWN
    assert conn.execute("SELECT count(*) FROM video_playback").fetchone() == (0,)


def test_the_upsert_of_the_rows_shown_is_routed_by_its_organization(
    settings: Settings, conn: Conn
) -> None:
    """The write of video_playback binds one organization's rows as literal VALUES, the
    organization a constant: a router statement, one task on that organization's worker
    (no intermediate result through the coordinator, which made the commit two-phase)."""

    _distributed(settings)
    organization = str(next(citus_support.organizations()))
    at = datetime.fromisoformat(t(5))
    row = ("bbbbbbbb-0000-4000-8000-0000000000ff", "alice", VIDEO_B, organization, 1, 10, False)
    statement, params = distributed.values(
        distributed._q(conn, distributed._SHOWN, settings.schema),
        distributed._SHOWN_TYPES,
        [(*row, at, at)],
        sql.SQL(NEWEST_WINS),
    )
    plan = "\n".join(str(r[0]) for r in conn.execute(sql.SQL("EXPLAIN ") + statement, params))
    assert "Task Count: 1" in plan and "pull to coordinator" not in plan, plan
    conn.rollback()


def _day(n: int) -> date:
    return partitions.day(datetime.fromisoformat(t(n)))


def test_an_organizations_facts_and_records_are_routed_to_one_worker(
    settings: Settings, conn: Conn
) -> None:
    """The per-organization read of the distributed write is a router query (one task, on
    the worker that holds the organization), and so is its insert of the records."""

    _distributed(settings)
    organization = str(next(citus_support.organizations()))
    at = datetime.fromisoformat(t(5))
    with connect(settings) as setup:
        partitions.create(setup, settings.schema, {partitions.day(at)})
        setup.commit()
    facts = {
        "org": organization,
        "n": [0],
        "user": ["alice"],
        "content": [VIDEO_B],
        "identity": ["x"],
        "at": [at],
    }
    record = (1, "x", at, "alice", VIDEO_B, organization, 1, 10, False, None)

    def plan(statement: str, params: dict[str, Any]) -> str:
        query = sql.SQL("EXPLAIN ") + distributed._q(conn, statement, settings.schema)
        return "\n".join(str(r[0]) for r in conn.execute(query, params))

    # the facts: one task, on the organization's worker
    assert "Task Count: 1" in plan(distributed._FACTS, facts)
    # the records: the group's rows as literal VALUES, the organization a constant: one
    # task on its worker too
    statement, params = distributed.values(
        distributed._q(conn, distributed._RECORDS, settings.schema),
        distributed._RECORD_TYPES,
        [record],
    )
    inserted = "\n".join(str(r[0]) for r in conn.execute(sql.SQL("EXPLAIN ") + statement, params))
    assert "Task Count: 1" in inserted and "pull to coordinator" not in inserted, inserted
    conn.rollback()
