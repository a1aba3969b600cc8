"""Every stored version reads as the current class, on every read path; the database takes
an earlier version only as history.

Version 1 of every topic carries no provenance; version 2 (``class_version`` 2 in the
state) does. The chain (``ledger.domain.upcasters``) is the one rule: the library's
mapper and ``shapes.check`` give the same event for the same stored bytes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import psycopg
import pytest
from eventsourcing.persistence import StoredEvent

from ledger.domain import upcasters
from ledger.domain.events import EVENTS_BY_TOPIC
from ledger.domain.provenance import UNRECORDED
from ledger.log import shapes
from ledger.log.shapes import UndecodableEvent
from ledger.service import Ledger
from ledger.upkeep.source import decode
from tests.support import foreign_user_state

Conn = psycopg.Connection[Any]
GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden"
INSERT = (
    "INSERT INTO ledger_events (originator_id, originator_version, topic, state, recorded_at)"
    " VALUES (gen_random_uuid(), 1, %s, %s, %s) RETURNING notification_id"
)
PROVENANCE = ("source", "correlation_id", "idempotency_key")


def golden(label: str) -> list[dict[str, Any]]:
    rows = (GOLDEN / label / "events.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(row) for row in rows if row.strip()]


def v1_state() -> dict[str, Any]:
    state = json.loads(foreign_user_state("old"))
    for name in (*PROVENANCE, "class_version"):
        del state[name]
    return state


def superseded_at(conn: Conn) -> datetime:
    row = conn.execute(
        "SELECT DISTINCT superseded_at FROM ledger_event_catalogue WHERE version = 1"
    ).fetchall()
    assert len(row) == 1 and row[0][0] is not None
    moment: datetime = row[0][0]
    return moment


def test_the_library_mapper_and_the_readers_upcast_alike(ledger_app: Ledger) -> None:
    """Every event of both golden logs: the aggregates' path (the library's mapper) and the
    rebuild's and stream's path (``check``) give the same fields, with provenance."""
    for label in ("v1", "v2"):
        for row in golden(label):
            state = row["state"].encode()
            stored = StoredEvent(
                originator_id=UUID(row["originator_id"]),
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=state,
            )
            mapped = ledger_app.mapper.to_domain_event(stored)
            assert type(mapped) is EVENTS_BY_TOPIC[row["topic"]]
            read = decode(row["topic"], state, row["notification_id"])
            fields = {k: v for k, v in vars(read).items() if k != "timestamp"}
            assert {k: vars(mapped)[k] for k in fields} == fields, (label, row["topic"])
            if label == "v1":
                assert (mapped.source, mapped.correlation_id, mapped.idempotency_key) == (
                    UNRECORDED,
                    None,
                    None,
                )
            else:
                assert mapped.source in ("cli", "api", "http", "stripe")


def test_a_new_event_of_an_earlier_version_is_refused_history_is_taken(conn: Conn) -> None:
    old = orjson.dumps(v1_state())
    refused = pytest.raises(psycopg.errors.DataException, match="its version 1 was superseded")
    with refused, conn.transaction():
        conn.execute(INSERT, ("UserRegistered", old, datetime.now(UTC)))
    before = superseded_at(conn) - timedelta(microseconds=1)
    with conn.transaction():
        conn.execute(INSERT, ("UserRegistered", old, before))
    current = foreign_user_state("new").encode()
    with conn.transaction():
        conn.execute(INSERT, ("UserRegistered", current, datetime.now(UTC)))
    read = [
        decode(topic, bytes(state))
        for topic, state in conn.execute(
            "SELECT topic, state FROM ledger_events ORDER BY notification_id"
        )
    ]
    assert [(e.user_id, e.source) for e in read] == [("old", UNRECORDED), ("new", "api")]


@pytest.mark.parametrize(
    ("version", "message"),
    [(3, "is not a version of it"), ("2", "is not a version of it"), (0, "is not a version")],
)
def test_a_version_the_catalogue_does_not_know_is_refused_and_unreadable(
    conn: Conn, version: Any, message: str
) -> None:
    state = {**json.loads(foreign_user_state()), "class_version": version}
    with pytest.raises(psycopg.errors.DataException, match=message), conn.transaction():
        conn.execute(INSERT, ("UserRegistered", orjson.dumps(state), datetime.now(UTC)))
    with pytest.raises(UndecodableEvent, match="version"):
        shapes.check(7, "UserRegistered", orjson.dumps(state))


def test_an_upcast_never_rewrites_the_stored_bytes(ledger_app: Ledger, conn: Conn) -> None:
    """Reading and appending over a v1 event leaves its bytes and hash as stored."""
    before = superseded_at(conn) - timedelta(seconds=1)
    with conn.transaction():
        conn.execute(INSERT, ("UserRegistered", orjson.dumps(v1_state()), before))
    stored = conn.execute("SELECT state, hash FROM ledger_events").fetchall()
    shapes.check(1, "UserRegistered", bytes(stored[0][0]))
    assert conn.execute("SELECT state, hash FROM ledger_events").fetchall() == stored


def test_every_earlier_shape_is_the_later_less_what_its_step_adds() -> None:
    versions = shapes.versions()
    for topic in EVENTS_BY_TOPIC:
        current = upcasters.current_version(topic)
        assert versions[(topic, current)] == shapes.catalogue()[topic]
        for step in upcasters.chain(topic):
            later, earlier = versions[(topic, step.to)], versions[(topic, step.to - 1)]
            assert set(later) - set(earlier) == set(step.adds), topic
            state: dict[str, Any] = {name: None for name in earlier}
            step.apply(state)
            assert set(state) == set(later), topic
