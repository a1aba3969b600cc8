"""The log distributed by organization on the Citus cluster (issue 28, step 2, part built).

``ledger.database.distribution.distribute_log`` places ``ledger_events`` and its chains' lock
rows by ``organization_id`` beside the money tables, the tables its triggers read as
reference tables, and switches the log to the ``organization`` order. What these tests hold:
the log's triggers run on the workers' shards (shape, chain, order), each organization's
events are stored on its own worker with a gapless, verified chain, and an append of
organization A held open holds up no append of B, and the ledger's own append (the recorder,
group commit) records commands there with the same answers as on one server. The chains are
walked one by one here (``verify_chain``); ``ledger audit verify`` and the readers on this
layout are tested by their own modules with ``LEDGER_TEST_DISTRIBUTE_LOG=1`` (docs/scaling.md,
"Readers on the distributed log").
"""

from __future__ import annotations

import threading
import time
from itertools import islice
from typing import Any
from uuid import UUID

import psycopg
import pytest

from ledger import api
from ledger.audit.chain import verify_chain
from ledger.audit.guards import check_guards
from ledger.config import Settings
from ledger.database import distribution
from ledger.database.connections import connect
from ledger.log import chains
from tests import citus_support
from tests.citus_support import CitusCluster
from tests.support import (
    CONTENT,
    ORG,
    append,
    complete,
    foreign_user_state,
    org,
    publish,
    statuses,
    user,
)

pytestmark = pytest.mark.citus
Conn = psycopg.Connection[Any]


def insert(conn: Conn, organization: object, user_id: str) -> int:
    row = conn.execute(
        "INSERT INTO ledger_events (originator_id, originator_version, topic, state,"
        " organization_id) VALUES (gen_random_uuid(), 1, 'UserRegistered', %s, %s)"
        " RETURNING position",
        (foreign_user_state(user_id).encode(), organization),
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def log_on_citus(citus: CitusCluster, settings: Settings) -> Settings:
    with connect(settings) as conn:
        distribution.distribute(conn, settings.schema)
        steps = distribution.distribute_log(conn, settings.schema)
        conn.commit()
    assert [(s.table, s.place, s.done) for s in steps] == [
        *((t, "reference", True) for t in distribution.LOG_REFERENCE),
        *((t, "distributed", True) for t in distribution.LOG_DISTRIBUTED),
    ]
    return settings


def test_the_log_is_placed_by_organization_and_a_second_run_changes_nothing(
    log_on_citus: Settings, conn: Conn
) -> None:
    schema = log_on_citus.schema
    with conn.transaction():
        again = distribution.distribute_log(conn, schema)
    assert [s.done for s in again] == [False] * len(again)
    assert distribution.log_places(conn, schema) == {
        **{t: "reference" for t in distribution.LOG_REFERENCE},
        **{t: "distributed" for t in distribution.LOG_DISTRIBUTED},
    }
    colocated = conn.execute(
        "SELECT count(DISTINCT colocationid) FROM pg_dist_partition"
        " WHERE logicalrelid = ANY(%s::regclass[])",
        ([f"{schema}.{t}" for t in ("content", "purchases", *distribution.LOG_DISTRIBUTED)],),
    ).fetchone()
    assert colocated == (1,)
    assert chains.order(conn, schema) == "organization"
    assert check_guards(conn, schema) is None  # every trigger still ENABLE ALWAYS


def test_each_organizations_events_live_on_its_worker_in_a_verified_chain(
    citus: CitusCluster, log_on_citus: Settings, conn: Conn
) -> None:
    schema = log_on_citus.schema
    log = f"{schema}.ledger_events"
    a, b = citus.on_distinct_workers(conn, log, islice(citus_support.organizations(), 64), 2)
    for n in range(3):
        assert insert(conn, a, f"a{n}") == n + 1
    for n in range(5):
        assert insert(conn, b, f"b{n}") == n + 1
    assert insert(conn, chains.PLATFORM, "p") == 1
    conn.commit()
    here, there = citus.placement(conn, log, a), citus.placement(conn, log, b)
    assert here.worker != there.worker
    assert citus.count_on_worker(here, "organization_id", a) == 3
    assert citus.count_on_worker(there, "organization_id", b) == 5
    # each chain's lock row beside its events
    heads = f"{schema}.ledger_chain_heads"
    assert citus.placement(conn, heads, a).worker == here.worker
    assert citus.count_on_worker(citus.placement(conn, heads, a), "organization_id", a) == 1
    for chain, count in ((a, 3), (b, 5), (chains.PLATFORM, 1)):
        walk = verify_chain(conn, schema, chain=UUID(str(chain)))
        assert walk.first_break is None and walk.events == count, chain
    # the shape trigger runs on the shards too: an event that does not decode is refused
    with pytest.raises(psycopg.Error, match="refusing an event"):
        conn.execute(
            "INSERT INTO ledger_events (originator_id, originator_version, topic, state,"
            " organization_id) VALUES (gen_random_uuid(), 1, 'UserRegistered', '{}', %s)",
            (a,),
        )
    conn.rollback()


def test_an_open_append_of_one_organization_holds_up_no_other(
    citus: CitusCluster, log_on_citus: Settings, conn: Conn
) -> None:
    """A's append held open on its worker: B's commits; another of A's waits for A's chain
    (seen waiting in ``citus_lock_waits``: a worker's lock wait is not bounded by the
    coordinator's lock_timeout) and draws the next position once A's commits."""
    settings = log_on_citus
    log = f"{settings.schema}.ledger_events"
    a, b = citus.on_distinct_workers(conn, log, islice(citus_support.organizations(), 64), 2)
    conn.commit()
    waited: list[int] = []
    with connect(settings) as holder, connect(settings) as other, connect(settings) as third:
        assert insert(holder, a, "held") == 1  # A's chain locked, uncommitted
        assert insert(other, b, "b") == 1  # B does not wait for A
        other.commit()
        waiter = threading.Thread(target=lambda: waited.append(insert(third, a, "waits")))
        waiter.start()
        deadline = time.monotonic() + 60
        while conn.execute("SELECT count(*) FROM citus_lock_waits").fetchone() != (1,):
            assert time.monotonic() < deadline, "the second append of A never waited"
            conn.commit()
        assert waited == []
        holder.commit()
        waiter.join(60)
        third.commit()
    assert waited == [2]
    conn.commit()
    for chain, count in ((a, 2), (b, 1)):
        walk = verify_chain(conn, settings.schema, chain=UUID(str(chain)))
        assert walk.first_break is None and walk.events == count


def test_the_ledgers_appends_answer_as_on_one_server_on_the_distributed_log(
    citus: CitusCluster, log_on_citus: Settings, conn: Conn
) -> None:
    schema = log_on_citus.schema
    with api.open_ledger(log_on_citus) as ledger:
        results = append(
            ledger,
            org(ORG, "O"),
            user("creator"),
            publish(CONTENT, ORG),
            user("alice"),
            complete("pi_1"),
            complete("pi_2"),
        )
        assert statuses(results) == ["accepted"] * 6
        again = append(ledger, complete("pi_1"), complete("pi_1", amount=2999))
        assert statuses(again) == ["duplicate", "rejected:conflict"]
    conn.commit()
    placement = citus.placement(conn, f"{schema}.ledger_events", ORG)
    assert citus.count_on_worker(placement, "organization_id", ORG) >= 4  # org, content, 2 buys
    assert citus.count_on_worker(placement, "organization_id", str(chains.PLATFORM)) in (0, 2)
    for chain in (UUID(ORG), chains.PLATFORM):
        walk = verify_chain(conn, schema, chain=chain)
        assert walk.first_break is None and walk.events >= 2, chain
    assert conn.execute("SELECT count(*) FROM purchases").fetchone() == (2,)
