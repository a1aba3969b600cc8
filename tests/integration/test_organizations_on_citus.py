"""``organizations`` distributed by its id, colocated with the money tables (i28o, issue 28).

A reference table is written on every node, so with ``organizations`` one any stopped
worker failed every registration, whatever the organization. Distributed by its id, beside
the organization's own rows and chain, a registration writes its organization's worker
alone: with the other worker stopped it is accepted as on one server, while one of the
stopped worker's organizations answers the retryable error naming the remote node. With
every worker up the table reads whole (``ledger projections verify`` compares it with the
log), and a schema distributed before, with ``organizations`` a reference table, is placed
anew by running ``ledger db distribute`` again, every row kept.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import psycopg
import pytest
from psycopg import sql

from ledger import api
from ledger.config import Settings
from ledger.database import distribution
from tests import citus_support
from tests.citus_support import CitusCluster
from tests.stopped_workers import beside_the_platform, messages, worker_of
from tests.support import append, cli, complete, dump_all, org, publish, statuses, user

pytestmark = pytest.mark.citus
Conn = psycopg.Connection[Any]


def _env(settings: Settings) -> dict[str, str]:
    return {**os.environ, "LEDGER_DATABASE_URL": settings.url, "LEDGER_SCHEMA": settings.schema}


def test_with_the_other_worker_stopped_an_organization_registers_as_on_one_server(
    citus: CitusCluster, distributed: Settings, conn: Conn
) -> None:
    """B's shard (its chain's, its row's: colocated) and the platform's chain on the running
    worker, A's on the stopped one: B registers, and a second registration of B is a
    duplicate, as on one server; A's registration fails naming the remote node and writes
    nothing, and goes through once its worker is back; then the table reads whole."""
    schema = distributed.schema
    log = f"{schema}.ledger_events"
    running, b, a = beside_the_platform(citus, conn, log)
    assert worker_of(citus, conn, f"{schema}.organizations", b) == running  # colocated
    stopped = worker_of(citus, conn, f"{schema}.organizations", a)
    conn.commit()
    with api.open_ledger(distributed) as ledger:
        assert statuses(append(ledger, user("creator"), user("alice"))) == ["accepted"] * 2
        with citus.stopped(stopped):
            assert statuses(append(ledger, org(str(b), "B"))) == ["accepted"]
            assert statuses(append(ledger, org(str(b), "B"))) == ["duplicate"]
            with pytest.raises(Exception) as caught:
                append(ledger, org(str(a), "A"))
            assert "remote node" in messages(caught.value), messages(caught.value)
        conn.commit()
        assert conn.execute("SELECT id, name FROM organizations").fetchall() == [(b, "B")]
        conn.commit()
        assert statuses(append(ledger, org(str(a), "A"))) == ["accepted"]
        video = "0b7e7a5e-8a61-4c49-9a0e-1d1f3c0c0a01"
        bought = [publish(video, str(a)), complete("pi_a", content_id=video)]
        assert statuses(append(ledger, *bought)) == ["accepted"] * 2
    rows = conn.execute("SELECT id, name FROM organizations ORDER BY name").fetchall()
    assert rows == [(a, "A"), (b, "B")]
    verified = cli(_env(distributed), "projections", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_schema_distributed_with_organizations_a_reference_table_is_placed_anew(
    citus: CitusCluster, distributed: Settings, conn: Conn
) -> None:
    """The layout before i28o (``organizations`` a reference table, the money tables and
    the log distributed), with rows: running ``ledger db distribute`` again brings the
    tables it joins by foreign keys back to the coordinator and places them anew, every row
    kept, colocated with the log, and a third run changes nothing."""
    schema = distributed.schema
    first, second, third, fourth = (
        str(o) for o in itertools.islice(citus_support.organizations(), 4)
    )
    video = "5d3c1c2e-0f7a-4f57-8a53-6a7f1b2c3d4e"
    with api.open_ledger(distributed) as ledger:
        history = [org(first, "First"), org(second, "Second"), user("creator"), user("alice")]
        history += [publish(video, second), complete("pi_1", content_id=video)]
        assert statuses(append(ledger, *history)) == ["accepted"] * 6
    name = sql.Identifier(schema, "organizations").as_string(conn)
    conn.execute("SET citus.enable_unsafe_triggers TO on")
    keys = conn.execute(
        "SELECT c.relname, k.conname, pg_get_constraintdef(k.oid) FROM pg_constraint k"
        " JOIN pg_class c ON c.oid = k.conrelid WHERE k.contype = 'f' AND k.confrelid = %s::regclass",
        (name,),
    ).fetchall()
    assert sorted(k[0] for k in keys) == ["content", "content_access", "purchases"]
    # the layout of before: organizations a reference table, its keys as they were
    for owner, constraint, _ in keys:
        conn.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.Identifier(schema, owner), sql.Identifier(constraint)
            )
        )
    conn.execute("SELECT undistribute_table(%s::regclass)", (name,))
    conn.execute("SELECT create_reference_table(%s::regclass)", (name,))
    for owner, constraint, definition in keys:
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                sql.Identifier(schema, owner), sql.Identifier(constraint), sql.SQL(definition)
            )
        )
    assert distribution.places(conn, schema)["organizations"] == "reference"
    with api.open_ledger(distributed) as ledger:  # this code on that layout registers too
        assert statuses(append(ledger, org(third, "Third"))) == ["accepted"]
    before = dump_all(conn)
    placed = cli(_env(distributed), "db", "distribute")
    assert placed.returncode == 0, placed.stderr
    assert "organizations\tdistributed by id\tdone" in placed.stdout, placed.stdout
    wanted = {t: "reference" for t in distribution.REFERENCE}
    wanted |= {t: "distributed" for t in distribution.DISTRIBUTED}
    assert distribution.places(conn, schema) == wanted
    assert dump_all(conn) == before
    tables = [f"{schema}.{t}" for t in (*distribution.DISTRIBUTED, "ledger_events")]
    colocated = conn.execute(
        "SELECT count(DISTINCT colocationid) FROM pg_dist_partition"
        " WHERE logicalrelid = ANY(%s::regclass[])",
        (tables,),
    ).fetchone()
    assert colocated == (1,)
    again = cli(_env(distributed), "db", "distribute")
    assert again.returncode == 0, again.stderr
    assert "\tdone" not in again.stdout, again.stdout
    with api.open_ledger(distributed) as ledger:
        assert statuses(append(ledger, org(fourth, "Fourth"))) == ["accepted"]
    assert conn.execute("SELECT count(*) FROM organizations").fetchone() == (4,)
