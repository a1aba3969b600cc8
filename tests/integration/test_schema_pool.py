"""The schemas ``settings`` and ``fresh`` hand out are exactly what a migration makes, whatever
the test before did with them (``tests/schemas.py``)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql

from ledger import api
from ledger.config import Settings
from ledger.database import migrations
from ledger.database.connections import connect
from ledger.upkeep.rebuild import rebuild
from tests.schemas import SchemaPool, fingerprint
from tests.support import append, catalogue, catalogue_and_purchase, statuses


@pytest.fixture
def pool(database_url: str) -> Iterator[SchemaPool]:
    made = SchemaPool(database_url)
    yield made
    made.close()


def test_a_reset_schema_is_exactly_a_freshly_migrated_one(
    pool: SchemaPool, database_url: str
) -> None:
    used = pool.take()
    app = api.open_ledger(used)
    try:
        assert statuses(append(app, *catalogue())) == ["accepted"] * 5
    finally:
        app.close()
    with psycopg.connect(database_url, autocommit=True) as conn:
        dirty = fingerprint(conn, used.schema)
        assert dirty != pool.pristine  # the purchase is seen
    pool.give(used.schema)
    again = pool.take()
    assert (pool.migrated, pool.reused) == (1, 1)  # reset and reused, not migrated anew
    assert again.schema != used.schema  # under a new name
    with psycopg.connect(database_url, autocommit=True) as conn:
        # a schema just migrated in this process, of the same layout as the pool's (never
        # ``settings``, distributed in a run with LEDGER_TEST_DISTRIBUTE=1)
        assert pool.pristine is not None
        assert fingerprint(conn, again.schema) == pool.pristine
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


def _exists(conn: psycopg.Connection[Any], schema: str) -> bool:
    row = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,))
    return row.fetchone() == (1,)


def test_a_connection_left_open_on_a_given_back_schema_never_sees_the_next_users_rows(
    pool: SchemaPool, database_url: str
) -> None:
    used = pool.take()
    # what a test could leave behind: a session on its schema (a process still running,
    # a pool not closed), idle, its statements prepared
    with connect(used, autocommit=True) as left:
        for _ in range(6):  # psycopg prepares a statement on its fifth run
            left.execute("SELECT count(*) FROM purchases WHERE amount_paid_cents > %s", (0,))
        pool.give(used.schema)
        again = pool.take()
        assert pool.reused == 1
        catalogue_and_purchase(again, "pi_next")
        # the old name is gone: what still uses it reads and writes nothing of the next test's
        with pytest.raises(psycopg.errors.UndefinedTable):
            left.execute("SELECT count(*) FROM purchases WHERE amount_paid_cents > %s", (0,))
        with pytest.raises(psycopg.errors.UndefinedTable):
            left.execute("DELETE FROM purchases")
    with connect(again, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM purchases").fetchone() == (1,)


def test_a_schema_still_locked_is_not_reset_under_its_user(
    pool: SchemaPool, database_url: str
) -> None:
    used = pool.take()
    with connect(used) as holder:  # a transaction still open on the schema
        holder.execute("SELECT count(*) FROM purchases")
        pool.give(used.schema)
        again = pool.take()
        assert (pool.migrated, pool.reused) == (2, 0)
        assert again.schema != used.schema
        assert holder.execute("SELECT count(*) FROM purchases").fetchone() == (0,)
        holder.rollback()
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert pool.pristine is not None
        assert fingerprint(conn, again.schema) == pool.pristine
    pool.close()  # what the reset could not drop (the lock held) goes at the end
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert not _exists(conn, used.schema)
        assert not _exists(conn, again.schema)


@pytest.mark.parametrize("to", [12, 0])
def test_a_downgraded_schema_is_replaced_not_reused(
    pool: SchemaPool, database_url: str, to: int
) -> None:
    used = pool.take()
    with connect(used, autocommit=True) as conn:
        migrations.downgrade(conn, used.schema, to=to)
    pool.give(used.schema)
    again = pool.take()
    assert (pool.migrated, pool.reused) == (2, 0)
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert not _exists(conn, used.schema)
        assert fingerprint(conn, again.schema) == pool.pristine


def test_a_schema_downgraded_and_upgraded_again_is_a_migrations_state_and_reused(
    pool: SchemaPool, database_url: str
) -> None:
    used = pool.take()
    with connect(used, autocommit=True) as conn:
        migrations.downgrade(conn, used.schema, to=5)
        migrations.upgrade(conn, used.schema)
    pool.give(used.schema)
    again = pool.take()
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert fingerprint(conn, again.schema) == pool.pristine
    assert pool.migrated + pool.reused == 2


def test_a_granted_or_commented_schema_is_replaced_not_reused(
    pool: SchemaPool, database_url: str
) -> None:
    first = pool.take()
    second = pool.take()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("GRANT SELECT ON {} TO PUBLIC").format(
                sql.Identifier(first.schema, "purchases")
            )
        )
        conn.execute(
            sql.SQL("COMMENT ON TABLE {} IS 'left by a test'").format(
                sql.Identifier(second.schema, "users")
            )
        )
    pool.give(first.schema)
    pool.give(second.schema)
    taken = [pool.take(), pool.take()]
    assert (pool.migrated, pool.reused) == (4, 0)
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert not _exists(conn, first.schema) and not _exists(conn, second.schema)
        assert all(fingerprint(conn, t.schema) == pool.pristine for t in taken)


def test_the_settings_fixture_hands_out_a_schema_equal_to_a_fresh_migration(
    settings: Settings, empty_settings: Settings, database_url: str, settings_pool: SchemaPool
) -> None:
    """Equal to a fresh migration made as the pool makes its schemas: in a distributed run
    placed by ``ledger db distribute`` too (the pool's ``prepare``)."""
    api.upgrade(empty_settings)
    if settings_pool.prepare is not None:
        settings_pool.prepare(empty_settings)
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert fingerprint(conn, settings.schema) == fingerprint(conn, empty_settings.schema)
        count = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(
                sql.Identifier(settings.schema, "ledger_events")
            )
        )
        assert count.fetchone() == (0,)


def test_a_table_a_test_made_itself_is_dropped_and_the_schema_reused(
    pool: SchemaPool, database_url: str
) -> None:
    """A consumer's table (or a day's partition of the playback store) is the test's, not
    the migration's: the reset drops it, and the schema is then exactly a migrated one."""
    used = pool.take()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {used.schema}.tally (position bigserial, topic text)")
        conn.execute(f"INSERT INTO {used.schema}.tally (topic) VALUES ('made')")
    pool.give(used.schema)
    again = pool.take()
    assert (pool.migrated, pool.reused) == (1, 1)
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass(%s)", (f"{again.schema}.tally",)).fetchone() == (
            None,
        )
        assert pool.pristine is not None
        assert fingerprint(conn, again.schema) == pool.pristine


def test_the_logs_triggers_switched_back_on_otherwise_are_put_back_and_the_schema_reused(
    pool: SchemaPool, database_url: str
) -> None:
    """A tampering test turns the log's triggers off and on again with ``ENABLE TRIGGER
    ALL`` (``O``, where the migration's guards are ``ENABLE ALWAYS``, ``A``), another marks
    a projection stale (its trigger on where the migration left it off): the reset puts
    each back as the migration left it, and the schema is reused (ten of a whole
    distributed run's resets were refused so, i28l)."""
    used = pool.take()
    log = sql.Identifier(used.schema, "ledger_events")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER ALL").format(log))
        conn.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER ALL").format(log))
        assert fingerprint(conn, used.schema) != pool.pristine
    pool.give(used.schema)
    again = pool.take()
    assert (pool.migrated, pool.reused) == (1, 1)
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert fingerprint(conn, again.schema) == pool.pristine


def test_a_compacted_schema_is_reset_and_reused(pool: SchemaPool, database_url: str) -> None:
    """A compaction sets the store's mark (``playback_state``, a row the migration makes):
    the reset puts it back as the migration leaves it, so the schema is reused."""
    used = pool.take()
    api.playback_compact(used, before=datetime(2026, 1, 1, tzinfo=UTC))
    with psycopg.connect(database_url, autocommit=True) as conn:
        mark = conn.execute(
            sql.SQL("SELECT compacted_before FROM {}").format(
                sql.Identifier(used.schema, "playback_state")
            )
        ).fetchone()
        assert mark is not None and mark[0] is not None  # the compaction left its mark
    pool.give(used.schema)
    again = pool.take()
    assert (pool.migrated, pool.reused) == (1, 1)
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert fingerprint(conn, again.schema) == pool.pristine


def test_a_rebuilt_schema_is_reset_and_reused(pool: SchemaPool, database_url: str) -> None:
    """A rebuild swaps in tables its shadow schema made, by the migrations' own statements:
    the schema is then a migration's in every way the fingerprint sees (on PostgreSQL 18 the
    NOT NULL constraints' names too), so it is reset and reused, not dropped and migrated
    anew (``test_rebuild.py``'s every test)."""
    used = pool.take()
    catalogue_and_purchase(used, "pi_rebuilt")
    rebuild(used, stream=io.StringIO())
    pool.give(used.schema)
    again = pool.take()
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert pool.pristine is not None
        left = fingerprint(conn, again.schema) ^ pool.pristine
        assert left == frozenset()
    assert (pool.migrated, pool.reused) == (1, 1)


def test_a_name_differing_past_63_bytes_is_told_apart(pool: SchemaPool, database_url: str) -> None:
    """The fingerprint's entries are named ``table.constraint`` (or ``table.column``), which
    for a long table and constraint runs past PostgreSQL's 63 bytes of a ``name``: they are
    compared whole, so a schema whose constraint was renamed at its end is replaced."""
    used = pool.take()
    long = "ledger_consumer_checkpoints.ledger_consumer_checkpoints_position_check"
    assert len(long) > 63 and any(n == long for _, n, _ in pool.pristine or ())
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER TABLE {} RENAME CONSTRAINT {} TO {}").format(
                sql.Identifier(used.schema, "ledger_consumer_checkpoints"),
                sql.Identifier("ledger_consumer_checkpoints_position_check"),
                sql.Identifier("ledger_consumer_checkpoints_position_checks"),
            )
        )
    pool.give(used.schema)
    pool.take()
    assert (pool.migrated, pool.reused) == (2, 0)
