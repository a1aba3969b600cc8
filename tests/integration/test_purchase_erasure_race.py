"""``purchase.complete`` racing ``user.erase`` of its customer from another writer
(docs/privacy.md, "Races"), on both layouts: each interleaving forced by a foreign
transaction holding a lock, each wait observed (``pg_locks`` on one server,
``citus_lock_waits`` on the distributed layout: ``test_erasure_races.waiting``), never a
sleep standing in for an event.

What an erasure keeps of a purchase (docs/privacy.md, "``user.erase``"): the money facts,
in the log under the person's subject, which no row names any more, so ``audit revenue``
counts them to the cent; the ``purchases`` row goes (by the erasure's part for the
organization on the distributed layout, else by the cascade of its delete of the ``users``
row). What orders the two: on one server the log's table lock; on the distributed log the
rows, the organization's chain row (which the erasure's part for that organization takes
too) and the ``users`` row (which the purchase's row references and the erasure's global
part deletes; docs/scaling.md, "A purchase's customer as a fact")."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from ledger import api
from ledger.audit.verify import verify as audit_verify
from ledger.config import Settings
from ledger.domain import ids
from ledger.playback.store import stream_lock
from ledger.service import Ledger
from tests import citus_support
from tests.integration.test_erasure import erase, history, totals
from tests.integration.test_erasure_races import foreign, nothing_survives, started, waiting
from tests.support import (
    CONTENT,
    CONTENT_2,
    ORG,
    ORG_2,
    append,
    complete,
    org,
    publish,
    statuses,
    t,
)

Conn = psycopg.Connection[Any]
AMOUNT, FEES = 1999, (199, 800)  # tests.support.complete's


def patient(settings: Settings) -> Settings:
    """``settings`` whose appends wait for a lock as long as the tests wait for a thread:
    a wait held open while the next one is observed outlasts ``LEDGER_LOCK_TIMEOUT``'s 5 s
    default on a loaded machine, and the writer would give up (``LockTimeout``) where the
    race is meant to go on."""
    return dataclasses.replace(settings, lock_timeout="60s")


@pytest.fixture
def ledger_app(settings: Settings) -> Iterator[Ledger]:
    """The erasing writer (conftest's, with ``patient`` settings)."""
    app = api.open_ledger(patient(settings))
    yield app
    app.close()


@pytest.fixture
def other(settings: Settings) -> Iterator[Ledger]:
    """Another writer: its own pool, its own caches (as another process has)."""
    app = Ledger(patient(settings))
    yield app
    app.close()


def plus_one_purchase(report: Any) -> Any:
    """``report`` (``audit revenue``'s, all of it in January 2026, in usd) with one more
    purchase of ``complete``'s amount and fees."""
    platform, organization = FEES
    added = {
        "purchases": 1,
        "gross_cents": AMOUNT,
        "net_cents": AMOUNT,
        "platform_fee_cents": platform,
        "organization_fee_cents": organization,
        "creator_payout_cents": AMOUNT - platform - organization,
    }
    assert len(report["rows"]) == 1 and len(report["totals"]) == 1
    return {
        part: [{**row, **{k: row[k] + n for k, n in added.items()}} for row in report[part]]
        for part in ("rows", "totals")
    }


def purchase_events(conn: Conn, intent: str) -> dict[str, bytes]:
    """The log's events of the payment intent's purchase aggregate: each topic's state."""
    rows = conn.execute(
        "SELECT topic, state FROM ledger_events WHERE originator_id = %s",
        (ids.purchase_id(intent),),
    ).fetchall()
    return {str(row[0]).rsplit(":", 1)[-1]: bytes(row[1]) for row in rows}


def subject_of(conn: Conn, person: str) -> str:
    row = conn.execute("SELECT subject FROM ledger_subjects WHERE user_id = %s", (person,))
    found = row.fetchone()
    assert found is not None
    return str(found[0])


@pytest.mark.parametrize("where", ["the person's organization", "another organization"])
def test_an_erasure_waits_for_a_purchase_being_written_then_erases_it(
    ledger_app: Ledger, other: Ledger, settings: Settings, conn: Conn, where: str
) -> None:
    """The purchase is in its append when the erasure starts: held at its grant's row of
    ``content_access``, which a foreign transaction holds, holding the log's lock on one
    server, its organization's chain row and its ``users`` row's key share on the
    distributed log. The erasure waits for it (on one server for the log's lock; on the
    distributed log, in the person's organization, its part there appends to that chain;
    in another, where the person had no row and no part runs, its global part's delete of
    ``users`` waits for the key share), the purchase commits (``accepted``), and the erasure
    then removes its row with the rest (by the part, or by the ``users`` row's cascade).
    Its money stays counted: ``audit revenue`` is what it was plus this purchase, its events
    stay in the log under the person's subject, which nothing names any more."""
    person = f"racing-{uuid.uuid4().hex}"
    append(ledger_app, *history(person))
    organization, content = ORG, CONTENT
    if where == "another organization":
        organization, content = ORG_2, CONTENT_2
        setup = [org(ORG_2, "Other"), publish(CONTENT_2, ORG_2)]
        assert statuses(append(ledger_app, *setup)) == ["accepted"] * 2
    subject = subject_of(conn, person)
    before = totals(conn, settings.schema)
    with foreign(settings) as held:
        if organization == ORG:  # the person's access row there, locked
            held.execute(
                "SELECT 1 FROM content_access WHERE organization_id = %s AND user_id = %s"
                " AND content_id = %s FOR UPDATE",
                (ORG, person, CONTENT),
            ).fetchall()
        else:  # no row yet: one with the grant's key, uncommitted, of someone else (its
            # foreign key shares bob's users row, not the person's)
            held.execute(
                "INSERT INTO content_access (id, user_id, content_id, organization_id,"
                " access_type) VALUES (%s, 'bob', %s, %s, 'preview')",
                (ids.access_id(person, content), content, organization),
            )
        buy = complete("pi_racing", customer=person, content_id=content, at=t(5, 13))
        buying, buy_answer = started(lambda: append(other, buy))
        writer = waiting(conn, citus_support.waits_name(held))  # written, its grant held
        erasing, erase_answer = started(lambda: append(ledger_app, erase(person)))
        eraser = waiting(conn, writer)  # the erasure waits for the purchase
        assert erase_answer == [] and buy_answer == []
        assert eraser != writer
        held.rollback()
        buying.join(60)
        erasing.join(60)
    assert statuses(buy_answer) == ["accepted"]
    assert statuses(erase_answer) == ["accepted"]
    assert totals(conn, settings.schema) == plus_one_purchase(before)  # counted, once
    recorded = purchase_events(conn, "pi_racing")
    assert sorted(recorded) == ["PurchaseCompleted", "PurchaseOpened"]
    completed = json.loads(recorded["PurchaseCompleted"])
    assert completed["customer_id"] == subject  # pseudonymous, and whose nothing says
    assert completed["amount_paid_cents"] == AMOUNT
    assert conn.execute(
        "SELECT count(*) FROM ledger_subjects WHERE subject = %s", (subject,)
    ).fetchone() == (0,)
    assert audit_verify(conn, settings.schema).ok
    nothing_survives(conn, settings, person, f"no-key-{person}")


def test_a_purchase_decided_before_an_erasure_and_written_after_finds_no_one(
    ledger_app: Ledger, other: Ledger, settings: Settings, conn: Conn
) -> None:
    """The purchase is decided (the person registered) before the erasure commits and
    written after: its write waits for the erasure, fails, and decided again the person is
    gone: ``not_found``. Nothing counted, nothing written; ``audit revenue`` as before.

    On one server the erasure is held at the person's row of ``ledger_subjects`` (its last
    statement), holding the log's table lock, for which the purchase's append waits. On the
    distributed log the purchase is held first at its key's claim (``ledger_key_claims``, a
    row a foreign transaction inserted: decided, nothing written), the erasure then runs its
    part for the organization and is held at the subject's row in its global part, and the
    purchase let go: its row's foreign key waits for the erasure's delete of ``users``. The
    claims it took (its payment intent's, its idempotency key's) stay its organization's,
    naming no one, a lease: the same intent and key, in a command for another customer, are
    accepted after (docs/scaling.md, "A claim's lease")."""
    person = f"racing-{uuid.uuid4().hex}"
    append(ledger_app, *history(person))
    # the other writer knows the person (their subject and user aggregate cached)
    assert statuses(append(other, complete("pi_known", customer=person, at=t(5)))) == ["accepted"]
    before = totals(conn, settings.schema)
    key = f"key-racing-{uuid.uuid4().hex}"
    buy = complete("pi_racing", customer=person, at=t(5, 13), idempotency_key=key)
    with foreign(settings) as held:
        if citus_support.distribute_requested():
            with foreign(settings) as claimer:
                claimer.execute(
                    "INSERT INTO ledger_key_claims (claim_id, organization_id) VALUES (%s, %s)",
                    (ids.purchase_id("pi_racing"), ORG),
                )
                buying, buy_answer = started(lambda: append(other, buy))
                writer = waiting(conn, citus_support.waits_name(claimer))  # decided, held
                held.execute(
                    "SELECT 1 FROM ledger_subjects WHERE user_id = %s FOR UPDATE", (person,)
                ).fetchall()
                erasing, erase_answer = started(lambda: append(ledger_app, erase(person)))
                eraser = waiting(conn, citus_support.waits_name(held))  # parts done, held
                assert buy_answer == [] and erase_answer == []
                claimer.rollback()
                assert waiting(conn, eraser) == writer  # the purchase's write waits for it
        else:
            held.execute("SELECT 1 FROM ledger_subjects WHERE user_id = %s FOR UPDATE", (person,))
            erasing, erase_answer = started(lambda: append(ledger_app, erase(person)))
            eraser = waiting(conn, citus_support.waits_name(held))
            buying, buy_answer = started(lambda: append(other, buy))
            waiting(conn, eraser, "relation")  # the purchase waits for the log's lock
        assert erase_answer == [] and buy_answer == []
        held.rollback()
        erasing.join(60)
        buying.join(60)
    assert statuses(erase_answer) == ["accepted"]
    assert statuses(buy_answer) == ["rejected:not_found"]
    assert totals(conn, settings.schema) == before  # nothing counted, nothing lost
    assert purchase_events(conn, "pi_racing") == {}  # nothing written
    assert audit_verify(conn, settings.schema).ok
    nothing_survives(conn, settings, person, "pi_racing")
    # its keys harm no one: the payment intent and the idempotency key, in a command for a
    # customer still registered, go through (on one server none was kept)
    again = complete("pi_racing", customer="bob", at=t(5, 14), idempotency_key=key)
    assert statuses(append(other, again)) == ["accepted"]
    assert totals(conn, settings.schema) == plus_one_purchase(before)


def test_a_purchase_recorded_after_the_erasure_was_decided_is_erased_with_the_rest(
    ledger_app: Ledger, other: Ledger, settings: Settings, conn: Conn
) -> None:
    """The erasure is decided, and on the distributed log its part for the person's
    organization committed, when a purchase of the person there comes: the erasure is held
    at the playback store's advisory lock, which it takes first in its transaction (the
    global part, on the distributed log), by a foreign transaction holding it. The purchase,
    which takes no such lock, is recorded (``accepted``: the person is still registered),
    after the part that removed their rows there; then the erasure goes on, and its delete of
    the ``users`` row takes the purchase's row with it (docs/events.md, "A deletion in
    parts": "any row made since a part ran"). The money stays counted, the tables are the
    log's (``projections verify`` exact), and nothing of the person survives."""
    person = f"racing-{uuid.uuid4().hex}"
    append(ledger_app, *history(person))
    subject = subject_of(conn, person)
    before = totals(conn, settings.schema)
    with foreign(settings) as held:
        held.execute("SELECT pg_advisory_xact_lock(%s)", (stream_lock(settings.schema),))
        erasing, erase_answer = started(lambda: append(ledger_app, erase(person)))
        held_here(conn, held.info.backend_pid, "advisory")  # the coordinator's lock
        parts = conn.execute(
            "SELECT count(*) FROM ledger_events WHERE topic LIKE %s", ("%UserLeftOrganization%",)
        ).fetchone()
        assert parts == ((1,) if citus_support.distribute_requested() else (0,))
        assert conn.execute(
            "SELECT count(*) FROM purchases WHERE customer_id = %s", (person,)
        ).fetchone() == ((0,) if citus_support.distribute_requested() else (2,))
        buy = complete("pi_racing", customer=person, at=t(5, 13))
        assert statuses(append(other, buy)) == ["accepted"]  # not held behind the erasure
        assert conn.execute(
            "SELECT count(*) FROM purchases WHERE customer_id = %s", (person,)
        ).fetchone() == ((1,) if citus_support.distribute_requested() else (3,))
        assert erase_answer == []
        held.rollback()
        erasing.join(60)
    assert statuses(erase_answer) == ["accepted"]
    assert totals(conn, settings.schema) == plus_one_purchase(before)
    completed = json.loads(purchase_events(conn, "pi_racing")["PurchaseCompleted"])
    assert completed["customer_id"] == subject
    assert audit_verify(conn, settings.schema).ok
    nothing_survives(conn, settings, person, f"no-key-{person}")


def held_here(conn: Conn, holder: int, locktype: str) -> int:
    """The backend of this server that waits for a lock ``holder`` holds (``pg_locks``): the
    playback store's advisory lock is the coordinator's own on the distributed layout too."""
    query = (
        "SELECT pid FROM pg_locks WHERE NOT granted AND locktype = %s"
        " AND %s = ANY(pg_blocking_pids(pid))"
    )
    deadline = time.monotonic() + 60
    while (row := conn.execute(query, (locktype, holder)).fetchone()) is None:
        assert time.monotonic() < deadline, f"nothing waits for backend {holder}"
        time.sleep(0.01)  # polling for the wait to show, not standing in for it
    return int(row[0])
