"""The log is append-only, enforced by the database itself."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from ledger.service import Ledger
from tests.support import append, catalogue

Conn = psycopg.Connection[Any]

CHANGES = [
    "UPDATE ledger_events SET topic = 'Forged'",
    "DELETE FROM ledger_events",
    "TRUNCATE ledger_events",
]


@pytest.mark.parametrize("statement", CHANGES)
@pytest.mark.parametrize("replica", [False, True])
def test_update_delete_truncate_are_refused(
    ledger_app: Ledger, conn: Conn, statement: str, replica: bool
) -> None:
    append(ledger_app, *catalogue())
    with (
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"),
        conn.transaction(),
    ):
        if replica:  # a superuser trying to bypass ordinary triggers
            conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(statement)
    assert conn.execute("SELECT count(*) FROM ledger_events").fetchone() == (5,)


def test_appends_are_chained(ledger_app: Ledger, conn: Conn) -> None:
    append(ledger_app, *catalogue())
    hashes = conn.execute("SELECT hash FROM ledger_events ORDER BY notification_id").fetchall()
    assert len(hashes) == 5 and all(len(bytes(h[0])) == 32 for h in hashes)
    assert len({bytes(h[0]) for h in hashes}) == 5
