"""The recorder: an append whose decision read a stale aggregate, or whose rows break a
constraint, is refused whole."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError
from psycopg import pq

from ledger import api
from ledger.config import Settings
from ledger.domain import events as ev
from ledger.domain import ids
from ledger.domain.aggregates import User
from ledger.service import Ledger
from projections.changes import Upsert
from projections.registry import changes_for
from tests.support import CONTENT, append, catalogue, grant, subject, t

Conn = psycopg.Connection[Any]


def _zed_registered() -> list[Any]:
    """A new user's events, appended by hand to put the recorder's own checks to work."""
    zed = User._create(
        ev.UserRegistered,
        id=ids.user_id("zed"),
        user_id="zed",
        occurred_at="2026-01-01T00:00:00.000000+00:00",
    )
    return list(zed.collect_events())


def test_a_stale_read_fails_the_append_and_writes_nothing(ledger_app: Ledger, conn: Conn) -> None:
    append(ledger_app, *catalogue(), grant("bob"))
    access_id = ids.access_id(subject(conn, "bob"), CONTENT)
    read_version = ledger_app.repository.get(access_id).version
    append(
        ledger_app,
        {"type": "access.revoke", "user_id": "bob", "content_id": CONTENT, "occurred_at": t(3)},
    )
    events_before = conn.execute("SELECT count(*) FROM ledger_events").fetchone()
    new_events = _zed_registered()
    with pytest.raises(IntegrityError, match="moved on"):
        ledger_app.save(
            *new_events,
            read_versions={access_id: read_version},
            row_changes=changes_for(new_events),
        )
    assert conn.execute("SELECT count(*) FROM ledger_events").fetchone() == events_before
    assert conn.execute("SELECT count(*) FROM users WHERE id = 'zed'").fetchone() == (0,)
    current = ledger_app.repository.get(access_id).version
    ledger_app.save(
        *new_events, read_versions={access_id: current}, row_changes=changes_for(new_events)
    )
    assert conn.execute("SELECT count(*) FROM users WHERE id = 'zed'").fetchone() == (1,)


def test_a_row_that_breaks_a_constraint_fails_the_whole_append_and_the_connection_recovers(
    settings: Settings, conn: Conn
) -> None:
    """The append is one pipeline: a failure in its last statement undoes its first ones.

    One pooled connection serves every append here, so the append after the failure
    proves the failed one left its connection idle, not inside an aborted transaction.
    """
    app = api.open_ledger(settings, pool_size=1)
    try:
        append(app, *catalogue())
        events_before = conn.execute("SELECT count(*) FROM ledger_events").fetchone()
        new_events = _zed_registered()
        too_long = Upsert("users", ("id",), {"id": "z" * 256}, "2026-01-01T00:00:00+00:00")
        with pytest.raises(IntegrityError, match="users_id_length"):
            app.save(*new_events, row_changes=[*changes_for(new_events), too_long])
        assert conn.execute("SELECT count(*) FROM ledger_events").fetchone() == events_before
        assert conn.execute("SELECT count(*) FROM users WHERE id = 'zed'").fetchone() == (0,)
        with app.recorder.datastore.get_connection() as pooled:  # type: ignore[attr-defined]
            assert pooled.pgconn.transaction_status == pq.TransactionStatus.IDLE
        app.save(*new_events, row_changes=changes_for(new_events))
        assert conn.execute("SELECT count(*) FROM users WHERE id = 'zed'").fetchone() == (1,)
    finally:
        app.close()
