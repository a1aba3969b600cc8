"""The ``fresh`` fixture's reused schemas are exactly what a migration makes (``tests/schemas.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from ledger import api
from ledger.config import Settings
from tests.schemas import SchemaPool, fingerprint
from tests.support import append, catalogue, statuses


@pytest.fixture
def pool(database_url: str) -> Iterator[SchemaPool]:
    made = SchemaPool(database_url)
    yield made
    made.close()


def test_a_reset_schema_is_exactly_a_freshly_migrated_one(
    pool: SchemaPool, settings: Settings, database_url: str
) -> None:
    used = pool.take()
    app = api.open_ledger(used)
    try:
        assert statuses(append(app, *catalogue())) == ["accepted"] * 5
    finally:
        app.close()
    with psycopg.connect(database_url, autocommit=True) as conn:
        dirty = fingerprint(conn, used.schema)
        assert dirty != fingerprint(conn, settings.schema)  # the purchase is seen
    pool.give(used.schema)
    again = pool.take()
    assert again.schema == used.schema  # reset and reused, not migrated anew
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert fingerprint(conn, again.schema) == fingerprint(conn, settings.schema)
        # the log's guards are back (the delete is tried below, on events)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"TRUNCATE {again.schema}.ledger_events")
    app = api.open_ledger(again)  # and the ledger works on it from the first notification
    try:
        assert statuses(append(app, *catalogue())) == ["accepted"] * 5
    finally:
        app.close()
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            f"SELECT min(notification_id) FROM {again.schema}.ledger_events"
        ).fetchone()
        assert row == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"DELETE FROM {again.schema}.ledger_events")


def test_a_schema_a_test_altered_is_replaced_not_reused(
    pool: SchemaPool, database_url: str
) -> None:
    used = pool.take()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE {used.schema}.purchases ADD COLUMN extra integer")
    pool.give(used.schema)
    again = pool.take()
    assert again.schema != used.schema
    with psycopg.connect(database_url, autocommit=True) as conn:
        gone = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (used.schema,)
        ).fetchone()
        assert gone == (0,)
        assert pool.pristine is not None
        assert fingerprint(conn, again.schema) == pool.pristine
