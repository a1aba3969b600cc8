"""The log distributed by organization on the Citus cluster (issue 28, step 2, part built).

``ledger.database.distribution.distribute_log`` places ``ledger_events`` and its chains' lock
rows by ``organization_id`` beside the money tables, the tables its triggers read as
reference tables, and switches the log to the ``organization`` order. What these tests hold:
the log's triggers run on the workers' shards (shape, chain, order), each organization's
events are stored on its own worker with a gapless, verified chain, and an append of
organization A held open holds up no append of B, and the ledger's own append (the recorder,
group commit) records commands there with the same answers as on one server. The chains are
walked one by one here (``verify_chain``); ``ledger audit verify`` and the readers on this
layout are tested by their own modules with ``LEDGER_TEST_DISTRIBUTE=1`` (docs/scaling.md,
"Readers on the distributed log").
"""

from __future__ import annotations

import threading
import time
from itertools import islice
from typing import Any
from uuid import UUID

import orjson
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
        steps = distribution.distribute(conn, settings.schema)  # `ledger db distribute`
        conn.commit()
    log = [s for s in steps if s.table.startswith("ledger_")]
    assert [(s.table, s.place, s.done) for s in log] == [
        *((t, "reference", True) for t in distribution.LOG_REFERENCE),
        *((t, "distributed", True) for t in distribution.LOG_DISTRIBUTED),
        (distribution.CLAIMS, "distributed", True),
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
        distribution.CLAIMS: "distributed",
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


def test_a_key_is_one_namespace_across_organizations_on_the_distributed_log(
    citus: CitusCluster, log_on_citus: Settings, conn: Conn
) -> None:
    """CONTRACT.md, "Idempotency": the same key from two organizations on two workers is
    `duplicate` for the same command and `conflict` for another, whichever sent it first, and
    two sent at once are one `accepted` and one `conflict`: the key's claim
    (``ledger_key_claims``, distributed by the key) lets one append take it, never two."""
    schema = log_on_citus.schema
    log = f"{schema}.ledger_events"
    a, b = (str(o) for o in citus.on_distinct_workers(conn, log, citus_support.organizations(), 2))
    conn.commit()
    video = {a: "11111111-1111-4111-8111-111111111111", b: "22222222-2222-4222-8222-222222222222"}

    def bought(organization: str, key: str, intent: str) -> dict[str, Any]:
        return complete(intent, content_id=video[organization], idempotency_key=key)

    with api.open_ledger(log_on_citus) as one, api.open_ledger(log_on_citus) as two:
        setup = [org(a, "A"), org(b, "B"), user("creator"), user("alice")]
        setup += [publish(video[a], a), publish(video[b], b)]
        assert statuses(append(one, *setup)) == ["accepted"] * 6
        # one after the other: A takes the key; from B's ledger (another cache) the same
        # command is a duplicate, another command with it a conflict, as on one server
        assert statuses(append(one, bought(a, "k-seq", "pi_seq_a"))) == ["accepted"]
        assert statuses(append(two, bought(a, "k-seq", "pi_seq_a"))) == ["duplicate"]
        assert statuses(append(two, bought(b, "k-seq", "pi_seq_b"))) == ["rejected:conflict"]
        # at once: one of the two organizations' appends takes each key, the other is refused
        for n in range(6):
            gate = threading.Barrier(2)
            answers: dict[str, list[str]] = {}

            def send(
                ledger: Any, organization: str, n: int = n, gate: Any = gate, into: Any = answers
            ) -> None:
                command = bought(organization, f"k-{n}", f"pi_{n}_{organization[:8]}")
                gate.wait(30)
                into[organization] = statuses(append(ledger, command))

            threads = [threading.Thread(target=send, args=p) for p in ((one, a), (two, b))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
            assert sorted(answers[a] + answers[b]) == ["accepted", "rejected:conflict"], n
    keys = [f"k-{n}" for n in range(6)] + ["k-seq"]
    claimed = conn.execute(
        "SELECT state FROM ledger_events WHERE topic = 'CommandKeyClaimed'"
    ).fetchall()
    assert sorted(orjson.loads(bytes(s))["key"] for (s,) in claimed) == sorted(keys)
    assert conn.execute(
        "SELECT count(*) FROM ledger_key_claims c JOIN (SELECT DISTINCT"
        " originator_id FROM ledger_events WHERE topic = 'CommandKeyClaimed') e"
        " ON e.originator_id = c.claim_id"
    ).fetchone() == (len(keys),)
    assert conn.execute("SELECT count(*) FROM purchases").fetchone() == (len(keys),)


def test_a_log_distributed_with_events_keeps_its_chains_and_its_keys_claimed(
    citus: CitusCluster, settings: Settings, conn: Conn
) -> None:
    """`ledger db distribute` over a log that has events (appended on the coordinator as a
    plain server): every chain keeps its verified events and head, and a key claimed before
    is still one namespace: another organization's command with it is a `conflict`."""
    schema = settings.schema
    a, b = ORG, "66666666-6666-4666-8666-666666666666"
    other = "55555555-5555-4555-8555-555555555555"
    with api.open_ledger(settings) as ledger:
        before = [org(a, "A"), org(b, "B"), user("creator"), user("alice"), publish(CONTENT, a)]
        before += [publish(other, b), complete("pi_1", idempotency_key="k-1")]
        assert statuses(append(ledger, *before)) == ["accepted"] * 7
    conn.commit()
    counts = dict(
        conn.execute("SELECT organization_id, count(*) FROM ledger_events GROUP BY 1").fetchall()
    )
    with connect(settings) as admin:
        distribution.distribute(admin, schema)
        admin.commit()
    assert distribution.log_is_distributed(conn, schema)
    for chain, count in counts.items():
        walk = verify_chain(conn, schema, chain=UUID(str(chain)))
        assert walk.first_break is None and walk.events == count, chain
    with api.open_ledger(settings) as ledger:
        again = [
            complete("pi_1", idempotency_key="k-1"),
            complete("pi_2", content_id=other, idempotency_key="k-1"),
        ]
        assert statuses(append(ledger, *again)) == ["duplicate", "rejected:conflict"]
        # a payment intent taken before is one too, whichever organization names it
        assert statuses(append(ledger, complete("pi_1", content_id=other))) == ["rejected:conflict"]
    conn.commit()
    assert conn.execute("SELECT count(*) FROM purchases").fetchone() == (1,)
