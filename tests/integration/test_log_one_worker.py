"""On the distributed log, an organization's purchase commits on its own worker alone (issue 28).

A payment intent's claim (``ledger_key_claims``, distributed by the key) lives on any worker;
written inside the organization's append it made that append a two-phase commit whenever its
shard was on the other worker (docs/scaling.md, "The log on Citus"). The recorder now claims
first, in a transaction of its own on the claim's shard (``ledger.log.claims``), so the
append itself is a one-phase commit on the organization's worker. What is counted: the rows
Citus writes to ``pg_dist_transaction`` on the coordinator for every transaction it commits
in two phases (kept until the maintenance daemon's recovery, which the test holds off).

And the person a purchase, a grant, a revocation or a publication names taken as a fact of
``users`` (``ledger.service.facts``), not read from the platform's chain: with the
platform's worker stopped, the other worker's organizations go on purchasing, granting,
revoking and publishing; the answers about a person are a single server's; and a deletion
committed between the fact and the append leaves no row of the deleted person, and a
revocation answered ``was deleted``.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from ledger import api
from ledger.commands import demo
from ledger.config import Settings
from ledger.database import distribution, legacy, migrations
from ledger.database.connections import connect
from ledger.domain import ids
from ledger.log.chains import LEGACY_MARK, PLATFORM
from tests import citus_support
from tests.citus_support import CitusCluster
from tests.integration.test_golden_log import _golden
from tests.stopped_workers import home_ids, messages, videos, worker_of
from tests.support import append, complete, grant, org, publish, refund, start, statuses, t, user

pytestmark = pytest.mark.citus
Conn = psycopg.Connection[Any]


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


def test_a_revocation_commits_on_its_organizations_worker_alone(
    citus: CitusCluster, distributed: Settings, no_recovery: None, conn: Conn
) -> None:
    """A revocation names its organization (``AccessRevoked`` version 3), so its row's
    deletion, and the upsert of the row before it (``facts.revocation_guard``), go to that
    organization's shard alone: a one-phase commit on its worker. (A deletion by (user,
    content), as before, went to every shard: a two-phase commit across both workers.)"""
    schema = distributed.schema
    log = f"{schema}.ledger_events"
    a, b = (str(o) for o in citus.on_distinct_workers(conn, log, citus_support.organizations(), 2))
    video = {a: "11111111-1111-4111-8111-111111111111", b: "22222222-2222-4222-8222-222222222222"}
    people = ["alice", "bob", "carol"]
    conn.commit()
    with api.open_ledger(distributed) as ledger:
        setup = [org(a, "A"), org(b, "B"), user("creator"), *(user(p) for p in people)]
        setup += [publish(video[a], a), publish(video[b], b)]
        setup += [grant(p, video[o]) for o in (a, b) for p in people]
        assert statuses(append(ledger, *setup)) == ["accepted"] * len(setup)
        before = two_phase_commits(conn)
        for o in (a, b):
            for p in people:  # one append each
                revoke = {"type": "access.revoke", "user_id": p, "content_id": video[o]}
                assert statuses(append(ledger, revoke | {"occurred_at": t(3)})) == ["accepted"]
        assert two_phase_commits(conn) == before
    assert conn.execute("SELECT count(*) FROM content_access").fetchone() == (0,)
    revoked = conn.execute(
        "SELECT ledger_event_organization(state), count(*) FROM ledger_events"
        " WHERE topic = 'AccessRevoked' GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert revoked == sorted([(a, 3), (b, 3)])


def test_on_a_log_written_before_the_chains_the_platforms_chain_stays_in_the_route(
    fresh: Callable[[], Settings],
) -> None:
    """A log distributed from one written before the chains (the golden log of v1) keeps its
    organizations' registrations, and its accesses' and playbacks' first events, in the
    platform's chain (``chains.LEGACY_TOPICS``). A publication or a grant decided on facts
    there still reads that chain for them (``Ledger._route`` until i28m; since, the read
    adds it for an aggregate begun there: ``ledger.log.routed``): a new content of an
    organization registered then is published, not answered "not registered" (as it was
    while their route left the platform's chain out and nothing added it back), and a
    grant of one of its contents is accepted."""
    settings = fresh()
    with connect(settings, autocommit=True) as conn:
        _golden(settings, conn)
        with connect(settings) as placing:
            distribution.distribute(placing, settings.schema)
            placing.commit()
        assert legacy.legacy_claimed(conn, settings.schema)
        assert conn.execute("SELECT legacy_claims FROM ledger_log_order").fetchone() == (True,)
        with connect(settings) as other:  # distributed before 0030: its mark filled from claims
            migrations.downgrade(other, settings.schema, 29)
            other.commit()
            assert legacy.legacy_claimed(other, settings.schema)  # read from the claims
            assert [m.version for m in migrations.upgrade(other, settings.schema)] == [
                m.version for m in migrations.discover() if m.version > 29
            ]
            other.commit()
        assert conn.execute("SELECT legacy_claims FROM ledger_log_order").fetchone() == (True,)
    history = list(demo.history(purchases=120))
    first = next(c for c in history if c["type"] == "content.publish")
    viewer = [c for c in history if c["type"] == "user.register"][-1]["user_id"]
    new = "99999999-0000-4000-8000-000000000001"
    commands = [
        publish(new, first["organization_id"], creator=first["creator_id"], at=t(40)),
        grant(viewer, first["content_id"], "preview", at=t(40, 13)),
        grant(viewer, new, "preview", at=t(40, 14)),
    ]
    with api.open_ledger(settings) as ledger:
        answers = [append(ledger, c)[0] for c in commands]  # one decision each
    assert [(a.status, a.error and a.error.message) for a in answers] == [("accepted", None)] * 3
    with connect(settings) as conn:
        found = conn.execute(
            "SELECT count(*) FROM content_access WHERE user_id = %s AND access_type = 'preview'"
            " AND content_id = ANY(%s::uuid[])",
            (viewer, [first["content_id"], new]),
        ).fetchone()
    assert found == (2,)


def _refund_on(citus: CitusCluster, conn: Conn, schema: str, organization: uuid.UUID) -> str:
    """A refund id whose claim lives on the organization's worker."""
    claims = f"{schema}.ledger_key_claims"
    worker = worker_of(citus, conn, f"{schema}.ledger_events", organization)
    found = (f"re_{str(organization)[:8]}_{n}" for n in range(1000))
    key = ids.command_key_id
    return next(r for r in found if worker_of(citus, conn, claims, key("refund_id", r)) == worker)


def test_with_the_platforms_worker_stopped_the_other_workers_organizations_purchase(
    citus: CitusCluster, distributed: Settings, conn: Conn
) -> None:
    """Issue 28: a stopped worker leaves its organizations' appends answering a clear
    retryable error and the others' appending. The platform's chain (users' registrations
    and deletions) lives on one worker; a purchase takes its customer as a fact of ``users``
    (a reference table, read on the coordinator: ``ledger.service.facts``), so with that
    worker stopped an organization of the other worker completes, starts and refuses
    purchases as before (a deleted customer: ``was deleted``, from the facts), while an
    organization of the stopped worker fails with the error naming the remote node, writes
    nothing, and goes through once the worker is back."""
    schema = distributed.schema
    log = f"{schema}.ledger_events"
    platform = worker_of(citus, conn, log, PLATFORM)
    candidates = list(itertools.islice(citus_support.organizations(), 64))
    b = next(o for o in candidates if worker_of(citus, conn, log, o) != platform)
    a = next(o for o in candidates if worker_of(citus, conn, log, o) == platform)
    (video_b, intents_b), (video_a, intents_a) = (
        home_ids(citus, conn, schema, b),
        home_ids(citus, conn, schema, a),
    )
    refund_b = _refund_on(citus, conn, schema, b)
    conn.commit()
    with api.open_ledger(distributed) as ledger, api.open_ledger(distributed) as cold:
        setup = [org(str(a), "A"), org(str(b), "B"), user("creator"), user("alice")]
        setup += [user("dave"), publish(video_a, str(a)), publish(video_b, str(b))]
        setup += [{"type": "user.delete", "user_id": "dave", "occurred_at": t(1, 11)}]
        assert statuses(append(ledger, *setup)) == ["accepted"] * 8
        # the log's layout known before the stop (a process's first read: "What is left" 1 a)
        assert cold.recorder.is_distributed()  # type: ignore[attr-defined]
        with citus.stopped(platform):
            bought = [complete(i, content_id=video_b) for i in intents_b[:2]]
            assert statuses(append(ledger, *bought)) == ["accepted"] * 2
            assert statuses(append(ledger, start(intents_b[2], content_id=video_b))) == ["accepted"]
            # a refund names no person: nothing of the platform's chain is read or checked,
            # by a process that has cached no aggregate either (facts.APART)
            refunded = refund(intents_b[1], refund_b, 500)
            assert statuses(append(cold, refunded)) == ["accepted"]
            late = complete("pi_dave", customer="dave", content_id=video_b)
            refused = append(ledger, late)
            assert statuses(refused) == ["rejected:not_found"]
            assert refused[0].error is not None
            assert refused[0].error.message == "user 'dave' was deleted"
            with pytest.raises(Exception) as caught:
                append(ledger, complete(intents_a[0], content_id=video_a))
            assert "remote node" in messages(caught.value), messages(caught.value)
            assert isinstance(caught.value, Exception)
        conn.commit()
        rows = conn.execute(
            "SELECT organization_id, count(*) FROM purchases GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert rows == [(b, 3)]  # none of A's: its failed attempt wrote nothing
        conn.commit()
        again = append(ledger, complete(intents_a[0], content_id=video_a))
        assert statuses(again) == ["accepted"]
        # and the platform's chain was never read or checked by B's purchases: its events
        # are those of the setup alone
        assert statuses(append(ledger, complete(intents_b[0], content_id=video_b))) == ["duplicate"]
    assert conn.execute("SELECT count(*) FROM purchases").fetchone() == (4,)
    assert conn.execute(
        "SELECT count(*) FROM ledger_events WHERE organization_id = %s", (PLATFORM,)
    ).fetchone() == (4,)  # creator, alice, dave registered; dave deleted


def test_a_process_started_with_the_marks_worker_stopped_appends_for_the_other_workers(
    citus: CitusCluster, distributed: Settings, conn: Conn
) -> None:
    """A process's first command reads the log's layout, the claims' mark among it
    (``chains.LEGACY_MARK``: whether the appends claim ``chains.LEGACY_TOPICS`` too). Read
    from the claims, it was a routed read on the worker of the mark's shard, and a process
    started while that worker was stopped failed every command of every organization. It is
    kept on the order's row (migration 0030, a reference table read on the coordinator): a
    process started with that worker stopped completes and starts purchases of an
    organization on the other worker, and still knows the mark."""
    schema = distributed.schema
    log, claims = f"{schema}.ledger_events", f"{schema}.ledger_key_claims"
    marks = worker_of(citus, conn, claims, LEGACY_MARK)
    candidates = itertools.islice(citus_support.organizations(), 64)
    b = next(o for o in candidates if worker_of(citus, conn, log, o) != marks)
    video, intents = home_ids(citus, conn, schema, b)
    conn.commit()
    with api.open_ledger(distributed) as ledger:
        setup = [org(str(b), "B"), user("creator"), user("alice"), publish(video, str(b))]
        assert statuses(append(ledger, *setup)) == ["accepted"] * 4
    with citus.stopped(marks), api.open_ledger(distributed) as fresh:
        bought = append(fresh, complete(intents[0], content_id=video))  # its first command
        assert statuses(bought) == ["accepted"], bought
        assert statuses(append(fresh, start(intents[1], content_id=video))) == ["accepted"]
        assert fresh.recorder.legacy_claims is False  # type: ignore[attr-defined]
        assert legacy.legacy_claimed(conn, schema) is False
        conn.commit()
    rows = conn.execute("SELECT organization_id, status FROM purchases ORDER BY 2").fetchall()
    assert rows == [(b, "completed"), (b, "pending")]


def test_with_the_platforms_worker_stopped_the_other_workers_organizations_grant_and_publish(
    citus: CitusCluster, distributed: Settings, conn: Conn
) -> None:
    """Issue 28 for grants, revocations and publications: they take the person they name as
    a fact of ``users`` (their rows' foreign keys order them with a deletion; a revocation's
    row upserted before its deletion, which its event's organization routes to its shard:
    ``facts.revocation_guard``), so with the platform's worker stopped an organization of
    the other worker grants, revokes, publishes, and is refused a deleted person's grant and
    publication as on one server, alone and in a group. Every command of an organization on
    the stopped worker answers the retryable error naming the remote node; nothing of theirs
    is written, and once the worker is back they go through."""
    schema = distributed.schema
    log = f"{schema}.ledger_events"
    platform = worker_of(citus, conn, log, PLATFORM)
    candidates = list(itertools.islice(citus_support.organizations(), 64))
    b = next(o for o in candidates if worker_of(citus, conn, log, o) != platform)
    a = next(o for o in candidates if worker_of(citus, conn, log, o) == platform)
    video_b, later, refused_video = videos(citus, conn, schema, b, 3)
    video_a = videos(citus, conn, schema, a, 1)[0]
    conn.commit()
    with api.open_ledger(distributed) as ledger:
        setup = [org(str(a), "A"), org(str(b), "B"), user("creator"), user("alice")]
        setup += [user("bob"), user("dave"), publish(video_a, str(a)), publish(video_b, str(b))]
        setup += [grant("bob", video_b)]
        setup += [{"type": "user.delete", "user_id": "dave", "occurred_at": t(1, 11)}]
        assert statuses(append(ledger, *setup)) == ["accepted"] * 10
        with citus.stopped(platform):
            assert statuses(append(ledger, grant("alice", video_b))) == ["accepted"]
            both = [publish(later, str(b), creator="alice"), grant("bob", later, "preview")]
            assert statuses(append(ledger, *both)) == ["accepted"] * 2
            refused = append(
                ledger,
                grant("dave", video_b),
                publish(refused_video, str(b), creator="dave"),
                grant("alice", video_b, "preview", at=t(3)),
            )
            assert [(r.status, r.error and (r.error.field, r.error.message)) for r in refused] == [
                ("rejected", ("user_id", "user 'dave' was deleted")),
                ("rejected", ("creator_id", "user 'dave' was deleted")),
                ("accepted", None),
            ]
            revoke = {"type": "access.revoke", "user_id": "bob", "content_id": video_b}
            assert statuses(append(ledger, revoke | {"occurred_at": t(4)})) == ["accepted"]
            mixed = [revoke | {"user_id": "alice", "occurred_at": t(4)}]
            mixed += [grant("bob", video_b, "preview", at=t(5))]
            assert statuses(append(ledger, *mixed)) == ["accepted"] * 2  # a group, on facts
            with pytest.raises(Exception) as caught:
                append(ledger, grant("alice", video_a))
            assert "remote node" in messages(caught.value), messages(caught.value)
        conn.commit()
        rows = conn.execute(
            "SELECT content_id::text, user_id, access_type FROM content_access"
        ).fetchall()
        expected = [(video_b, "bob", "preview"), (later, "bob", "preview")]  # none of A's
        assert sorted(rows) == sorted(expected)
        published = conn.execute("SELECT id::text FROM content ORDER BY 1").fetchall()
        assert sorted(published) == sorted([(video_a,), (video_b,), (later,)])
        conn.commit()
        assert statuses(append(ledger, grant("alice", video_a))) == ["accepted"]
    assert conn.execute("SELECT count(*) FROM content_access").fetchone() == (3,)
    assert conn.execute(
        "SELECT count(*) FROM ledger_events WHERE organization_id = %s", (PLATFORM,)
    ).fetchone() == (5,)  # creator, alice, bob, dave registered; dave deleted
