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

from ledger import api
from ledger.config import Settings
from ledger.database import distribution, store_placement
from ledger.database.connections import connect
from ledger.playback import partitions
from tests import citus_support
from tests.citus_support import CitusCluster
from tests.support import append, grant, org, play, publish, statuses, t, user

pytestmark = pytest.mark.citus

Conn = psycopg.Connection[Any]
VIDEO_B = "bbbbbbbb-0000-4000-8000-000000000002"


def _distributed(settings: Settings) -> None:
    with connect(settings) as conn:
        distribution.distribute(conn, settings.schema)  # safe to run again
        conn.commit()


def test_distribute_places_the_store(settings: Settings, conn: Conn) -> None:
    _distributed(settings)
    assert store_placement.store_places(conn, settings.schema) == {
        "playback_state": "reference",
        "playback_heartbeats": "distributed",
        "playback_base": "distributed",
        "playback_keys": "distributed",
        "playback_compacted_keys": "distributed",
    }
    colocated = conn.execute(
        "SELECT count(DISTINCT colocationid) FROM pg_dist_partition"
        " WHERE logicalrelid = ANY(%s::regclass[])",
        ([f"{settings.schema}.{t}" for t in ("content", "playback_heartbeats", "playback_base")],),
    ).fetchone()
    assert colocated == (1,)
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
        setup = [user("creator"), user("alice"), user("bob")]
        for organization, video in videos.items():
            setup += [
                org(organization, name=f"org {organization[:4]}"),
                publish(video, organization_id=organization),
                grant("alice", content_id=video),
                grant("bob", content_id=video),
            ]
        assert set(statuses(append(app, *setup))) == {"accepted"}
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


def _day(n: int) -> date:
    return partitions.day(datetime.fromisoformat(t(n)))


def test_an_organizations_facts_and_records_are_routed_to_one_worker(
    settings: Settings, conn: Conn
) -> None:
    """The per-organization read of the distributed write is a router query (one task, on
    the worker that holds the organization), and its insert reads no distributed table."""
    from psycopg import sql

    from ledger.playback import distributed

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
    records = {
        "org": organization,
        "pos": [1],
        "identity": ["x"],
        "at": [at],
        "user": ["alice"],
        "content": [VIDEO_B],
        "p": [1],
        "d": [10],
        "c": [False],
        "k": [None],
    }

    def plan(statement: str, params: dict[str, Any]) -> str:
        query = sql.SQL("EXPLAIN ") + distributed._q(conn, statement, settings.schema)
        return "\n".join(str(r[0]) for r in conn.execute(query, params))

    # the facts: one task, on the organization's worker
    assert "Task Count: 1" in plan(distributed._FACTS, facts)
    # the records: the group's rows (bound arrays, no distributed read) copied by the
    # coordinator to the shard of their organization (where they land: the test above)
    inserted = plan(distributed._RECORDS, records)
    assert "pull to coordinator" in inserted and "Task Count" not in inserted, inserted
    conn.rollback()
