"""The Citus cluster the suite runs on with ``.ci/citus run`` (issue 28's groundwork).

What these tests hold today, before the ledger has a distributed layout: the harness starts a
real cluster (a coordinator and two workers, each a server of its own), a migrated schema on the
coordinator is made of ordinary local tables (``ledger db upgrade`` distributes nothing), and a
table distributed by ``organization_id`` stores one organization's rows on one worker and
another's on the other, as seen by each worker itself. The ledger's own suite passes on the
coordinator with its tables local (docs: /work/notes/citus-findings.md).
"""

from __future__ import annotations

from itertools import islice
from typing import Any

import psycopg
import pytest
from psycopg import sql

from ledger.config import Settings
from tests import citus_support
from tests.citus_support import CitusCluster

pytestmark = pytest.mark.citus


def test_the_cluster_is_a_coordinator_with_two_workers(citus: CitusCluster) -> None:
    workers = citus.workers()
    assert len(workers) == 2
    coordinator_port = int(citus.url.rsplit(":", 1)[1].split("/")[0])
    assert {w.port for w in workers} == {coordinator_port + 1, coordinator_port + 2}
    for worker in workers:
        with citus.connect_worker(worker) as conn:
            row = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'citus'"
            ).fetchone()
        assert row is not None and row[0] == citus.version


def test_an_upgraded_schema_distributes_nothing(
    citus: CitusCluster, conn: psycopg.Connection[Any], settings: Settings
) -> None:
    """``ledger db upgrade`` on a coordinator leaves every table local: the distributed layout
    is a step of its own (``ledger db distribute``, issue 28), never a side effect."""
    tables = conn.execute(
        "SELECT count(*) FROM pg_tables WHERE schemaname = %s", (settings.schema,)
    ).fetchone()
    assert tables is not None and tables[0] >= 10
    distributed = conn.execute(
        "SELECT p.logicalrelid::regclass::text FROM pg_dist_partition p"
        " JOIN pg_class c ON c.oid = p.logicalrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s",
        (settings.schema,),
    ).fetchall()
    assert distributed == []


def test_rows_of_two_organizations_live_on_different_workers(
    citus: CitusCluster, conn: psycopg.Connection[Any], settings: Settings
) -> None:
    table = sql.Identifier(settings.schema, "organization_rows")
    name = f"{settings.schema}.organization_rows"
    conn.execute(
        sql.SQL(
            "CREATE TABLE {} (organization_id uuid NOT NULL, n integer NOT NULL,"
            " PRIMARY KEY (organization_id, n))"
        ).format(table)
    )
    conn.execute("SELECT create_distributed_table(%s, 'organization_id')", (name,))
    first, second = citus.on_distinct_workers(
        conn, name, islice(citus_support.organizations(), 64), 2
    )
    conn.execute(
        sql.SQL(
            "INSERT INTO {} SELECT %s::uuid, n FROM generate_series(1, 3) n"
            " UNION ALL SELECT %s::uuid, n FROM generate_series(1, 5) n"
        ).format(table),
        (first, second),
    )

    here, there = citus.placement(conn, name, first), citus.placement(conn, name, second)
    assert here.worker != there.worker
    # each worker holds its organization's rows, and none of the other's
    assert citus.count_on_worker(here, "organization_id", first) == 3
    assert citus.count_on_worker(there, "organization_id", second) == 5
    for worker in citus.workers():
        with citus.connect_worker(worker) as on_worker:
            counts = {
                org: _rows_in_shards(on_worker, settings.schema, org) for org in (first, second)
            }
        expected = {first: 3 if worker == here.worker else 0}
        expected[second] = 5 if worker == there.worker else 0
        assert counts == expected, worker


def _rows_in_shards(on_worker: psycopg.Connection[Any], schema: str, organization: object) -> int:
    """The organization's rows in the shards of organization_rows stored on this worker."""
    shards = on_worker.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname ~ '^organization_rows_[0-9]+$' AND c.relkind = 'r'",
        (schema,),
    ).fetchall()
    total = 0
    for shard_schema, shard in shards:
        row = on_worker.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE organization_id = %s").format(
                sql.Identifier(shard_schema, shard)
            ),
            (organization,),
        ).fetchone()
        total += int(row[0]) if row else 0
    return total


def test_a_stopped_worker_fails_its_organizations_and_no_other(
    citus: CitusCluster, conn: psycopg.Connection[Any], settings: Settings
) -> None:
    """A lost worker: an append of an organization it holds is refused with a connection
    failure (SQLSTATE 08006, psycopg ``ConnectionFailure``, naming the remote node), which the
    ledger can answer as a retryable error; another worker's organizations keep appending; and
    once the worker is back, its organizations append again."""
    table = sql.Identifier(settings.schema, "organization_rows")
    name = f"{settings.schema}.organization_rows"
    conn.execute(
        sql.SQL(
            "CREATE TABLE {} (organization_id uuid NOT NULL, n integer NOT NULL,"
            " PRIMARY KEY (organization_id, n))"
        ).format(table)
    )
    conn.execute("SELECT create_distributed_table(%s, 'organization_id')", (name,))
    lost, kept = citus.on_distinct_workers(conn, name, islice(citus_support.organizations(), 64), 2)
    insert = sql.SQL("INSERT INTO {} VALUES (%s, %s)").format(table)

    with citus.stopped(citus.placement(conn, name, lost).worker):
        conn.execute(insert, (kept, 1))
        with pytest.raises(psycopg.errors.ConnectionFailure) as refused:
            conn.execute(insert, (lost, 1))
        assert refused.value.sqlstate == "08006"
        assert "connection to the remote node" in str(refused.value)
        conn.execute(insert, (kept, 2))

    conn.execute(insert, (lost, 1))
    rows = conn.execute(
        sql.SQL("SELECT organization_id, count(*) FROM {} GROUP BY 1").format(table)
    ).fetchall()
    assert dict(rows) == {kept: 2, lost: 1}
