"""On the distributed log, an organization's purchase commits on its own worker alone (issue 28).

A payment intent's claim (``ledger_key_claims``, distributed by the key) lives on any worker;
written inside the organization's append it made that append a two-phase commit whenever its
shard was on the other worker (docs/scaling.md, "The log on Citus"). The recorder now claims
first, in a transaction of its own on the claim's shard (``ledger.log.claims``), so the
append itself is a one-phase commit on the organization's worker. What is counted: the rows
Citus writes to ``pg_dist_transaction`` on the coordinator for every transaction it commits
in two phases (kept until the maintenance daemon's recovery, which the test holds off).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from ledger import api
from ledger.config import Settings
from ledger.database import distribution
from ledger.database.connections import connect
from ledger.domain import ids
from ledger.log.chains import PLATFORM
from tests import citus_support
from tests.citus_support import CitusCluster
from tests.support import append, complete, org, publish, statuses, user

pytestmark = pytest.mark.citus
Conn = psycopg.Connection[Any]


@pytest.fixture
def distributed(citus: CitusCluster, settings: Settings) -> Settings:
    with connect(settings) as conn:
        distribution.distribute(conn, settings.schema)  # `ledger db distribute`
        conn.commit()
    return settings


@pytest.fixture
def no_recovery(citus: CitusCluster) -> Iterator[None]:
    """The coordinator's two-phase-commit recovery held off for the test, so every row it
    writes to ``pg_dist_transaction`` stays there to be counted."""
    with psycopg.connect(citus.url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET citus.recover_2pc_interval TO -1")
        conn.execute("SELECT pg_reload_conf()")
    try:
        yield
    finally:
        with psycopg.connect(citus.url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM RESET citus.recover_2pc_interval")
            conn.execute("SELECT pg_reload_conf()")


def two_phase_commits(conn: Conn) -> int:
    row = conn.execute("SELECT count(*) FROM pg_dist_transaction").fetchone()
    conn.commit()
    assert row is not None
    return int(row[0])


def test_a_purchase_commits_on_its_organizations_worker_alone(
    citus: CitusCluster, distributed: Settings, no_recovery: None, conn: Conn
) -> None:
    schema = distributed.schema
    log = f"{schema}.ledger_events"
    a, b = (str(o) for o in citus.on_distinct_workers(conn, log, citus_support.organizations(), 2))
    video = {a: "11111111-1111-4111-8111-111111111111", b: "22222222-2222-4222-8222-222222222222"}
    intents = {o: [f"pi_one_{o[:8]}_{n}" for n in range(8)] for o in (a, b)}
    # the premise: some intents' claims live on the worker of neither their organization
    home = {o: citus.placement(conn, log, o).worker for o in (a, b)}
    claims = f"{schema}.ledger_key_claims"
    elsewhere = [
        i
        for o in (a, b)
        for i in intents[o]
        if citus.placement(conn, claims, ids.purchase_id(i)).worker != home[o]
    ]
    assert elsewhere, "every claim on its organization's worker: the test proves nothing"
    conn.commit()
    with api.open_ledger(distributed) as ledger:
        setup = [org(a, "A"), org(b, "B"), user("creator"), user("alice")]
        setup += [publish(video[a], a), publish(video[b], b)]
        assert statuses(append(ledger, *setup)) == ["accepted"] * 6
        before = two_phase_commits(conn)
        for o in (a, b):
            for n, intent in enumerate(intents[o]):  # one append each
                bought = complete(intent, content_id=video[o], idempotency_key=f"k-{o}-{n}")
                assert statuses(append(ledger, bought)) == ["accepted"], intent
        assert two_phase_commits(conn) == before
        # the same again: a duplicate, read where the claim says, writing nothing
        again = complete(intents[a][0], content_id=video[a], idempotency_key=f"k-{a}-0")
        assert statuses(append(ledger, again)) == ["duplicate"]
    held = conn.execute(
        "SELECT count(*) FROM ledger_key_claims WHERE claim_id = ANY(%s)",
        ([ids.purchase_id(i) for o in (a, b) for i in intents[o]],),
    ).fetchone()
    assert held == (16,)
    assert conn.execute("SELECT count(*) FROM purchases").fetchone() == (16,)


def test_with_the_platforms_worker_stopped_an_organizations_purchases_wait_for_it(
    citus: CitusCluster, distributed: Settings, conn: Conn
) -> None:
    """What stops, and why (docs/scaling.md, "What is left" 1 a): a purchase writes on its
    organization's worker alone, but its decision and its append's check read its customer's
    ``User`` aggregate, which lives in the platform's chain. With that chain's worker stopped,
    an organization of the other worker, whose content and payment intent are claimed on its
    own worker too, fails its purchase with the error naming the remote node and writes no
    row; once the worker is back the same command goes through (the claim its failed attempt
    left is its organization's, and reused)."""
    schema = distributed.schema
    log, claims = f"{schema}.ledger_events", f"{schema}.ledger_key_claims"
    platform = citus.placement(conn, log, PLATFORM).worker
    other = next(
        o for o in citus_support.organizations() if _worker(citus, conn, log, o) != platform
    )
    b = str(other)
    worker = citus.placement(conn, log, b).worker
    video = next(
        v
        for v in (str(uuid.uuid5(other, f"video-{n}")) for n in range(1000))
        if _worker(citus, conn, claims, ids.content_id(v)) == worker
    )
    intent = next(
        i
        for i in (f"pi_p_{n}" for n in range(1000))
        if _worker(citus, conn, claims, ids.purchase_id(i)) == worker
    )
    conn.commit()
    with api.open_ledger(distributed) as ledger:
        setup = [org(b, "B"), user("creator"), user("alice"), publish(video, b)]
        assert statuses(append(ledger, *setup)) == ["accepted"] * 4
        with citus.stopped(platform), pytest.raises(Exception) as caught:
            append(ledger, complete(intent, content_id=video))
        assert "remote node" in _messages(caught.value), _messages(caught.value)
        assert conn.execute("SELECT count(*) FROM purchases").fetchone() == (0,)
        conn.commit()
        assert statuses(append(ledger, complete(intent, content_id=video))) == ["accepted"]
    assert conn.execute("SELECT count(*) FROM purchases").fetchone() == (1,)


def _worker(citus: CitusCluster, conn: Conn, table: str, value: object) -> citus_support.Worker:
    return citus.placement(conn, table, value).worker


def _messages(error: BaseException | None) -> str:
    """The error and its causes, as one text."""
    found: list[str] = []
    while error is not None:
        found.append(f"{type(error).__name__}: {error}")
        error = error.__cause__ or error.__context__
    return " <- ".join(found)
