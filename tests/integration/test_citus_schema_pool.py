"""On the Citus cluster the suite's schema pool resets and reuses distributed schemas as it
does single-server ones (``tests/schemas.py``): without it every test of a distributed run
migrated and distributed a schema of its own (``LEDGER_TEST_DISTRIBUTE=1``, docs/scaling.md)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import date

import psycopg
import pytest
from psycopg import sql

from ledger.config import Settings
from ledger.database import distribution
from ledger.database.connections import connect
from ledger.playback import partitions
from ledger.upkeep.rebuild import rebuild
from tests.schemas import SchemaPool, fingerprint
from tests.support import catalogue_and_purchase

pytestmark = pytest.mark.citus


def _distribute(settings: Settings) -> None:
    with connect(settings) as conn:
        distribution.distribute(conn, settings.schema)
        conn.commit()


@pytest.fixture
def distributed_pool(database_url: str) -> Iterator[SchemaPool]:
    made = SchemaPool(database_url, prepare=_distribute)
    yield made
    made.close()


def test_a_distributed_schema_is_reset_and_reused_exactly_as_distributed(
    distributed_pool: SchemaPool, database_url: str
) -> None:
    used = distributed_pool.take()
    catalogue_and_purchase(used, "pi_pool")
    distributed_pool.give(used.schema)
    again = distributed_pool.take()
    assert (distributed_pool.migrated, distributed_pool.reused) == (1, 1)
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert fingerprint(conn, again.schema) == distributed_pool.pristine
        placed = conn.execute(
            "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid::text LIKE %s",
            (f"{again.schema}.%",),
        ).fetchone()
        assert placed is not None and placed[0] >= 5  # still distributed, under the new name
    catalogue_and_purchase(again, "pi_pool")
    with connect(again, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM purchases").fetchone() == (1,)


def test_every_distributed_schema_of_a_process_is_reused_not_only_its_first(
    distributed_pool: SchemaPool, database_url: str
) -> None:
    """The coordinator holds a placement of each reference table of a schema, named by its
    shard id (``users_102008``), hidden from ``pg_class`` but not its row type from
    ``pg_type``: a schema placed after the pool's first differed from it by those names, so
    only the first was ever reused, and every other test migrated and distributed anew."""
    first, second = distributed_pool.take(), distributed_pool.take()
    distributed_pool.give(first.schema)
    distributed_pool.give(second.schema)
    again = [distributed_pool.take(), distributed_pool.take()]
    assert (distributed_pool.migrated, distributed_pool.reused) == (2, 2)
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert all(fingerprint(conn, t.schema) == distributed_pool.pristine for t in again)
        # the placements are still there, each schema's own
        shards = conn.execute(
            "SELECT count(DISTINCT s.shardid) FROM pg_dist_shard s"
            " JOIN pg_dist_partition p USING (logicalrelid)"
            " WHERE p.partmethod = 'n' AND s.logicalrelid::text LIKE ANY (%s)",
            ([f"{t.schema}.%" for t in again],),
        ).fetchone()
        assert shards is not None and shards[0] >= 2 * 5


def test_a_days_partition_a_test_made_is_dropped_on_the_workers_and_the_schema_reused(
    distributed_pool: SchemaPool, database_url: str
) -> None:
    """A day's partition of the distributed playback store is the test's, not the
    migration's: the reset drops it on the coordinator and on the workers (a DROP under
    ``session_replication_role = replica`` was not carried to them, so such a schema was
    dropped and migrated anew), and the same day's partition can be made again after."""
    used = distributed_pool.take()
    day = date(2026, 1, 6)
    with connect(used, autocommit=True) as conn:
        partitions.create(conn, used.schema, [day])
        assert day in partitions.existing(conn, used.schema)
    distributed_pool.give(used.schema)
    again = distributed_pool.take()
    assert (distributed_pool.migrated, distributed_pool.reused) == (1, 1)
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert fingerprint(conn, again.schema) == distributed_pool.pristine
        left = conn.execute(
            "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid::text = %s",
            (f"{again.schema}.{partitions.name(day)}",),
        ).fetchone()
        assert left == (0,)
    with connect(again, autocommit=True) as conn:
        partitions.create(conn, again.schema, [day])  # no "already exists" on a worker
        assert day in partitions.existing(conn, again.schema)


@pytest.mark.parametrize(
    "only",
    [None, ["users"], ["content"], ["purchases"]],
    ids=["all", "users", "content", "purchases"],
)
def test_a_rebuilt_distributed_schema_is_reset_and_reused(
    distributed_pool: SchemaPool, database_url: str, only: list[str] | None
) -> None:
    """A rebuild of a distributed schema swaps in its shadow's tables and places them again
    (``distribution.restore``); whole, or of one table alone, the result is what ``ledger db
    distribute`` made, and the schema is reused. (A rebuild of ``content`` or ``purchases``
    alone was refused before i28d: the distributed pristine carried Citus's names of their
    NOT NULL constraints, ``content_3841110697_id_not_null``, and purchases' CHECKs as Citus
    re-parsed them, docs/scaling.md "The migration's names on the cluster".)"""
    used = distributed_pool.take()
    catalogue_and_purchase(used, "pi_rebuilt")
    rebuild(used, only, stream=io.StringIO())
    distributed_pool.give(used.schema)
    again = distributed_pool.take()
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert distributed_pool.pristine is not None
        assert fingerprint(conn, again.schema) ^ distributed_pool.pristine == frozenset()
    assert (distributed_pool.migrated, distributed_pool.reused) == (1, 1)
    catalogue_and_purchase(again, "pi_rebuilt")  # and the ledger works on it


def test_a_schema_still_locked_when_given_back_is_reset_at_the_next_take(
    distributed_pool: SchemaPool, database_url: str
) -> None:
    """A session of the test's still holding a lock when the schema is given back (a
    process it killed, not yet gone): the reset then waits for nothing and changes nothing,
    and the schema is kept for the next take's reset instead of dropped (i28l)."""
    used = distributed_pool.take()
    with psycopg.connect(database_url) as holder:
        holder.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(
                sql.Identifier(used.schema, "users")
            )
        )
        distributed_pool.give(used.schema)
        assert (distributed_pool.free, distributed_pool.ready) == ([used.schema], [])
        holder.rollback()
    again = distributed_pool.take()
    assert (distributed_pool.migrated, distributed_pool.reused) == (1, 1)
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert fingerprint(conn, again.schema) == distributed_pool.pristine


def test_the_distributed_logs_triggers_switched_back_on_otherwise_are_put_back(
    distributed_pool: SchemaPool, database_url: str
) -> None:
    """``test_audit_verify.py``'s tampering on the distributed log (``ENABLE TRIGGER ALL``
    after it: ``O`` where the migration's guards are ``A``): put back by the reset, reused."""
    used = distributed_pool.take()
    log = sql.Identifier(used.schema, "ledger_events")
    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
        conn.execute("SET LOCAL citus.enable_unsafe_triggers = on")
        conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER ALL").format(log))
        conn.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER ALL").format(log))
    distributed_pool.give(used.schema)
    again = distributed_pool.take()
    assert (distributed_pool.migrated, distributed_pool.reused) == (1, 1)
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert fingerprint(conn, again.schema) == distributed_pool.pristine
