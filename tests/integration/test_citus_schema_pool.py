"""On the Citus cluster the suite's schema pool resets and reuses distributed schemas as it
does single-server ones (``tests/schemas.py``): without it every test of a distributed run
migrated and distributed a schema of its own (``LEDGER_TEST_DISTRIBUTE=1``, docs/scaling.md)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from ledger import api
from ledger.config import Settings
from ledger.database import distribution
from ledger.database.connections import connect
from tests.schemas import SchemaPool, fingerprint
from tests.support import append, catalogue, complete, statuses

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
    app = api.open_ledger(used)
    try:  # rows in reference tables (users, organizations) and distributed ones (content,
        # purchases, content_access), keys between them
        assert statuses(append(app, *catalogue(), complete("pi_pool"))) == ["accepted"] * 6
    finally:
        app.close()
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
    app = api.open_ledger(again)
    try:
        assert statuses(append(app, *catalogue(), complete("pi_pool"))) == ["accepted"] * 6
    finally:
        app.close()
    with connect(again, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM purchases").fetchone() == (1,)
