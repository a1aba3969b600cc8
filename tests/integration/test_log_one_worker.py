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
from ledger.service import Ledger
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
                30,
                31,
                33,
                34,
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


def test_grants_and_publications_answer_about_their_people_as_on_one_server(
    citus: CitusCluster, distributed: Settings, conn: Conn
) -> None:
    """The answers a grant and a publication give about the person they name are those of a
    single server on facts of ``users``: not registered, deleted, erased (its subject gone),
    each naming its field; a revocation (on the ``User`` aggregate) the same."""
    schema = distributed.schema
    b = next(iter(citus_support.organizations()))
    video, *fresh = videos(citus, conn, schema, b, 4)
    conn.commit()
    with api.open_ledger(distributed) as ledger:
        setup = [org(str(b), "B"), user("creator"), user("dave"), user("erin")]
        setup += [publish(video, str(b)), grant("dave", video)]
        gone = [{"type": "user.delete", "user_id": "dave", "occurred_at": t(1, 11)}]
        gone += [{"type": "user.erase", "user_id": "erin", "occurred_at": t(1, 11)}]
        assert statuses(append(ledger, *setup, *gone)) == ["accepted"] * 8
        revoke = {"type": "access.revoke", "user_id": "dave", "content_id": video}
        answers = append(
            ledger,
            grant("nobody", video),
            grant("dave", video),
            grant("erin", video),
            publish(fresh[0], str(b), creator="nobody"),
            publish(fresh[1], str(b), creator="dave"),
            publish(fresh[2], str(b), creator="erin"),
            revoke | {"occurred_at": t(3)},
        )
    assert [(a.status, a.error and (a.error.field, a.error.message)) for a in answers] == [
        ("rejected", ("user_id", "user 'nobody' is not registered")),
        ("rejected", ("user_id", "user 'dave' was deleted")),
        ("rejected", ("user_id", "user 'erin' is not registered")),
        ("rejected", ("creator_id", "user 'nobody' is not registered")),
        ("rejected", ("creator_id", "user 'dave' was deleted")),
        ("rejected", ("creator_id", "user 'erin' is not registered")),
        ("rejected", ("user_id", "user 'dave' was deleted")),
    ]


def test_a_purchase_answers_about_its_customer_as_on_one_server(
    citus: CitusCluster, distributed: Settings, conn: Conn
) -> None:
    """The answers a purchase gives about its customer are those of a single server, now
    that the distributed log decides on facts of ``users``: not registered, deleted, erased
    (its subject gone), a customer of a started purchase deleted before its failure."""
    schema = distributed.schema
    b = next(iter(citus_support.organizations()))
    video, intents = home_ids(citus, conn, schema, b)
    conn.commit()
    with api.open_ledger(distributed) as ledger:
        setup = [org(str(b), "B"), user("creator"), user("dave"), user("erin"), user("fay")]
        setup += [publish(video, str(b)), start(intents[0], customer="fay", content_id=video)]
        gone = [{"type": "user.delete", "user_id": "dave", "occurred_at": t(1, 11)}]
        gone += [{"type": "user.erase", "user_id": "erin", "occurred_at": t(1, 11)}]
        gone += [{"type": "user.delete", "user_id": "fay", "occurred_at": t(2, 12)}]
        assert statuses(append(ledger, *setup, *gone)) == ["accepted"] * 10
        answers = append(
            ledger,
            complete("pi_n", customer="nobody", content_id=video),
            complete("pi_d", customer="dave", content_id=video),
            start("pi_e", customer="erin", content_id=video),
            {"type": "purchase.fail", "stripe_payment_intent_id": intents[0], "occurred_at": t(3)},
        )
    assert [(a.status, a.error and a.error.message) for a in answers] == [
        ("rejected", "user 'nobody' is not registered"),
        ("rejected", "user 'dave' was deleted"),
        ("rejected", "user 'erin' is not registered"),
        ("rejected", "the purchase's customer was deleted"),
    ]


def test_a_deletion_committed_between_the_fact_and_the_append_leaves_no_purchase(
    citus: CitusCluster, distributed: Settings, conn: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the ``User`` aggregate's version check ordered before: a purchase decided on
    the fact that its customer is registered, and the customer's deletion committed (by
    another writer) before the purchase's append. The purchase's row references ``users``,
    whose copy on the worker the deletion removed: its foreign key refuses the append, the
    purchase is decided again, finds the person gone and answers as one server would. No
    purchase row of the deleted person, no purchase event in the log."""
    schema = distributed.schema
    b = next(iter(citus_support.organizations()))
    video, intents = home_ids(citus, conn, schema, b)
    conn.commit()
    with api.open_ledger(distributed) as ledger, api.open_ledger(distributed) as other:
        setup = [org(str(b), "B"), user("creator"), user("carol"), publish(video, str(b))]
        assert statuses(append(ledger, *setup)) == ["accepted"] * 4
        asked = _carol_deleted_after_the_facts(monkeypatch, ledger, other)
        answer = append(ledger, complete(intents[0], customer="carol", content_id=video))
    assert asked[0] is True and False in asked[1:]  # decided on "live", then again on "gone"
    assert [(a.status, a.error and a.error.message) for a in answer] == [
        ("rejected", "user 'carol' was deleted")
    ]
    assert conn.execute("SELECT count(*) FROM purchases").fetchone() == (0,)
    events = conn.execute(
        "SELECT count(*) FROM ledger_events WHERE topic LIKE %s", ("%Purchase%",)
    ).fetchone()
    assert events == (0,)


@pytest.mark.parametrize("command", ["new grant", "grant again", "publication", "revocation"])
def test_a_deletion_between_the_fact_and_a_grant_or_publication_leaves_no_row(
    citus: CitusCluster,
    distributed: Settings,
    conn: Conn,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    """The race of the purchase's test above, for a grant (of a content the person had no
    access to: its row inserted; of one they had: the upsert of a row the deletion's cascade
    removed), a publication (its ``content`` row's ``creator_id``) and a revocation (of her
    access, its row upserted before its deletion: the deletion's cascade removed it, so the
    upsert inserts it and its key is checked): decided on the fact that carol is registered,
    her deletion committed by another writer before the append. The row's foreign key
    refuses the append, the command is decided again and answers as one server would (a
    revocation too: ``was deleted``, not accepted): no row of carol's, no event of the
    command in the log."""
    schema = distributed.schema
    b = next(iter(citus_support.organizations()))
    video, other_video = videos(citus, conn, schema, b, 2)
    conn.commit()
    with api.open_ledger(distributed) as ledger, api.open_ledger(distributed) as other:
        setup = [org(str(b), "B"), user("creator"), user("carol"), publish(video, str(b))]
        setup += [grant("carol", video, at=t(1, 11))]
        assert statuses(append(ledger, *setup)) == ["accepted"] * 5
        asked = _carol_deleted_after_the_facts(monkeypatch, ledger, other)
        attempt, field, topic = {
            "new grant": (grant("carol", other_video), "user_id", "%AccessGranted%"),
            "grant again": (grant("carol", video, "preview"), "user_id", "%AccessGranted%"),
            "publication": (
                publish(other_video, str(b), creator="carol"),
                "creator_id",
                "%ContentPublished%",
            ),
            "revocation": (
                {
                    "type": "access.revoke",
                    "user_id": "carol",
                    "content_id": video,
                    "occurred_at": t(3),
                },
                "user_id",
                "%AccessRevoked%",
            ),
        }[command]
        if command == "new grant":
            assert statuses(append(ledger, publish(other_video, str(b)))) == ["accepted"]
        before = conn.execute(
            "SELECT count(*) FROM ledger_events WHERE topic LIKE %s", (topic,)
        ).fetchone()
        conn.commit()
        answer = append(ledger, attempt)
    assert asked[0] is True and False in asked[1:]  # decided on "live", then again on "gone"
    assert [(a.status, a.error and (a.error.field, a.error.message)) for a in answer] == [
        ("rejected", (field, "user 'carol' was deleted"))
    ]
    assert conn.execute("SELECT count(*) FROM content_access").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM users WHERE id = 'carol'").fetchone() == (0,)
    published = conn.execute("SELECT id::text, creator_id FROM content").fetchall()
    creators = [(video, "creator")] + [(other_video, "creator")] * (command == "new grant")
    assert sorted(published) == sorted(creators)  # a publication of carol's: none
    events = conn.execute(
        "SELECT count(*) FROM ledger_events WHERE topic LIKE %s", (topic,)
    ).fetchone()
    assert events == before


def _carol_deleted_after_the_facts(
    monkeypatch: pytest.MonkeyPatch, ledger: Ledger, other: Ledger
) -> list[bool]:
    """``ledger``'s facts read as they are, then (once) carol's deletion committed by
    ``other``; the list it returns says, for each read, whether everyone was live."""
    read = ledger.recorder.people_of  # type: ignore[attr-defined]
    asked: list[bool] = []

    def then_deleted(values: Any) -> Any:
        found = read(values)
        if not asked:
            deleted = {"type": "user.delete", "user_id": "carol", "occurred_at": t(1, 12)}
            assert statuses(append(other, deleted)) == ["accepted"]
        asked.append(all(p.live for p in found.values()))
        return found

    monkeypatch.setattr(ledger.recorder, "people_of", then_deleted)
    return asked
