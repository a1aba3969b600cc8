"""``user.erase`` as the writer role (``ledger db roles``, docs/privacy.md): the writer may
delete what the playback store keeps of a person, and never update it."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import sql

from ledger import api
from ledger.config import Settings
from ledger.database.connections import connect
from tests.integration.test_roles import as_role, roles, seed
from tests.support import append, play, t

Conn = psycopg.Connection[Any]
__all__ = ["roles"]  # the fixture, shared with test_roles.py


def test_the_writer_erases_a_person_and_what_the_store_keeps_of_them(
    settings: Settings, roles: dict[str, str], conn: Conn
) -> None:
    """``user.erase`` runs as the writer: it deletes the person's heartbeats, keys and
    compacted rows of the playback store (migration 0016's owners of compacted keys too)."""
    seed(settings, roles)
    with api.open_ledger(as_role(settings, roles["writer"])) as app:
        keyed = {**play("alice", 20, at=t(5)), "idempotency_key": "alice-beat"}
        assert [r.status for r in append(app, keyed)] == ["accepted"]
        erase = {"type": "user.erase", "user_id": "alice", "occurred_at": t(9)}
        assert [r.status for r in append(app, erase)] == ["accepted"]
    for table in ("playback_heartbeats", "playback_base", "playback_compacted_keys"):
        query = sql.SQL("SELECT count(*) FROM {} WHERE user_id = 'alice'").format(
            sql.Identifier(table)
        )
        assert conn.execute(query).fetchone() == (0,), table
    key = "SELECT count(*) FROM playback_keys WHERE idempotency_key = 'alice-beat'"
    assert conn.execute(key).fetchone() == (0,)
    with connect(as_role(settings, roles["writer"]), autocommit=True) as writer:
        # ledger_subjects: added to with a registration, deleted from by an erasure only
        for statement in (
            "UPDATE playback_keys SET fingerprint = 'x'",
            "UPDATE playback_compacted_keys SET user_id = 'x'",
            "UPDATE ledger_subjects SET user_id = 'x'",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                writer.execute(statement)
