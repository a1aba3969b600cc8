"""The rebuild's reads of a log without a total order (issue 28, docs/stream.md "Chains and
orders"): in the ``organization`` order, and always on a log placed on Citus, an event with a
lower ``notification_id`` can commit after one with a higher, so a catch-up "after the last
notification id read" would pass it for ever. The rebuild reads each chain after its own
position (``ledger.upkeep.source.ChainReader``) and never does. Runs on one server (the order
switched) and on the distributed log (``LEDGER_TEST_DISTRIBUTE=1``, docs/scaling.md).
"""

from __future__ import annotations

import io
from typing import Any
from uuid import UUID

import psycopg

from ledger import api
from ledger.config import Settings
from ledger.database.connections import connect
from ledger.log import chains
from ledger.upkeep import source
from ledger.upkeep.rebuild import rebuild
from ledger.upkeep.verify import verify
from tests.citus_support import PlacingFromHere
from tests.support import (
    CONTENT,
    CONTENT_2,
    ORG,
    ORG_2,
    append,
    complete,
    dump_all,
    foreign_user_state,
    org,
    publish,
    statuses,
    user,
)

Conn = psycopg.Connection[Any]
A = UUID("0a000000-0000-4000-8000-00000000000a")
B = UUID("0b000000-0000-4000-8000-00000000000b")


def _insert(conn: Conn, organization: UUID, user_id: str) -> int:
    """A registration in ``organization``'s chain, behind the ledger's back (the shape and
    chain triggers still run); its notification id."""
    row = conn.execute(
        "INSERT INTO ledger_events (originator_id, originator_version, topic, state,"
        " organization_id) VALUES (gen_random_uuid(), 1, 'UserRegistered', %s, %s)"
        " RETURNING notification_id",
        (foreign_user_state(user_id).encode(), organization),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _organization_order(settings: Settings) -> None:
    with connect(settings) as conn:
        if chains.order(conn, settings.schema) != "organization":
            chains.set_order(conn, settings.schema, "organization")
        conn.commit()


def _read(settings: Settings, reader: source.ChainReader) -> list[str]:
    """What one catch-up of ``reader`` reads: each event's user (its topic if none)."""
    with connect(settings) as conn, conn.transaction():
        return [
            getattr(e, "user_id", type(e).__name__)
            for batch in reader.events(conn, settings.schema)
            for _, e in batch
        ]


def test_an_event_that_commits_late_is_read_by_the_catch_up(settings: Settings) -> None:
    _organization_order(settings)
    with api.open_ledger(settings) as ledger:
        assert statuses(append(ledger, org(str(A), "A"), org(str(B), "B"))) == ["accepted"] * 2
    reader = source.ChainReader()
    assert _read(settings, reader) == ["OrganizationRegistered"] * 2
    with connect(settings) as late, connect(settings, autocommit=True) as early:
        held = _insert(late, A, "late")  # drawn first, committed last
        assert _insert(early, B, "early") > held
        assert _read(settings, reader) == ["early"]
        late.commit()
    # the notification ids' catch-up would start after "early"'s: it passes "late" for ever
    with connect(settings) as conn, conn.transaction():
        after = [
            e
            for batch in source.events(conn, settings.schema, reader.head, 2**62)
            for _, e in batch
        ]
    assert after == []
    assert _read(settings, reader) == ["late"]
    assert _read(settings, reader) == []  # each event once


def test_a_rebuild_in_the_organization_order_reproduces_every_row(
    settings: Settings, conn: Conn, placing_from_here: PlacingFromHere
) -> None:
    _organization_order(settings)
    history = [
        org(ORG, "A"),
        org(ORG_2, "B"),
        user("creator"),
        user("alice"),
        publish(CONTENT, ORG),
        publish(CONTENT_2, ORG_2),
        *(complete(f"pi_{n}", content_id=CONTENT if n % 2 else CONTENT_2) for n in range(6)),
    ]
    with api.open_ledger(settings) as ledger:
        assert set(statuses(append(ledger, *history))) == {"accepted"}
    before = dump_all(conn)
    assert len(before["purchases"]) == 6 and len(before["content_access"]) == 2
    placing_from_here()
    report = rebuild(settings, stream=io.StringIO())
    assert report.events > len(history)
    assert dump_all(conn) == before
    assert verify(settings) == []
