"""``ledger db distribute``: the distributed layout on a Citus coordinator (issue 28).

On the cluster (tests marked ``citus``): the shared tables become reference tables and the
money tables are distributed by organization, colocated; running it again changes nothing;
appends through the CLI then land each organization's rows on its worker, and a rebuild
puts its fresh tables back in the same places with the same rows. On a server without
Citus it is refused in one line and changes nothing.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from itertools import islice
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ledger import api
from ledger.config import Settings
from ledger.database import distribution, migrations, store_placement
from ledger.database.connections import connect
from tests import citus_support
from tests.citus_support import CitusCluster
from tests.integration.test_append_limits import wait_for
from tests.support import answers, cli, complete, dump_all, grant, org, publish, refund, user

# the money tables, the log and its keys' claims, then the playback store
# (distribution.distribute_log, store_placement.distribute_store)
PLACED = len(
    distribution.REFERENCE
    + distribution.DISTRIBUTED
    + distribution.LOG_REFERENCE
    + distribution.LOG_DISTRIBUTED
    + (distribution.CLAIMS,)
    + store_placement.STORE_REFERENCE
    + store_placement.STORE_DISTRIBUTED
    + store_placement.STORE_BY_KEY
)
Conn = psycopg.Connection[Any]


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env["LEDGER_DATABASE_URL"] = settings.url
    env["LEDGER_SCHEMA"] = settings.schema
    return env


@pytest.fixture
def without_citus(settings: Settings) -> Iterator[Settings]:
    """A migrated schema on a server (or, on the cluster, a database) without Citus."""
    if citus_support.citus_version(settings.url) is None:
        yield settings
        return
    name = f"nocitus_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(settings.url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(settings.url)
    params["dbname"] = name
    other = Settings(url=make_conninfo("", **params), schema=settings.schema)
    try:
        api.upgrade(other)
        yield other
    finally:
        with psycopg.connect(settings.url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_without_citus_it_is_refused_in_one_line_and_changes_nothing(
    without_citus: Settings,
) -> None:
    done = cli(_env(without_citus), "db", "distribute")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == ["ledger: " + str(distribution.NoCitus())]
    with psycopg.connect(without_citus.url) as conn:
        assert distribution.places(conn, without_citus.schema) == {
            t: "local" for t in (*distribution.REFERENCE, *distribution.DISTRIBUTED)
        }


def _organizations_on_two_workers(citus: CitusCluster, conn: Conn, schema: str) -> list[str]:
    found = citus.on_distinct_workers(
        conn, f"{schema}.purchases", islice(citus_support.organizations(), 64), 2
    )
    return [str(o) for o in found]


def _history(first: str, second: str) -> list[dict[str, Any]]:
    content = [str(uuid.uuid5(uuid.UUID(o), "content")) for o in (first, second)]
    return [
        org(first, "First"),
        org(second, "Second"),
        user("creator"),
        user("alice"),
        user("bob"),
        publish(content[0], first),
        publish(content[1], second),
        complete("pi_a1", content_id=content[0]),
        complete("pi_a2", customer="bob", content_id=content[0]),
        complete("pi_b1", content_id=content[1]),
        refund("pi_b1", "re_b1", 500),
        grant("bob", content_id=content[1]),
    ]


@pytest.mark.citus
def test_distribute_places_the_tables_and_a_second_run_changes_nothing(
    citus: CitusCluster, settings: Settings, conn: Conn
) -> None:
    env = _env(settings)
    first = cli(env, "db", "distribute")
    assert first.returncode == 0, first.stderr
    assert [line.split("\t")[-1] for line in first.stdout.splitlines()] == ["done"] * PLACED
    wanted = {t: "reference" for t in distribution.REFERENCE}
    wanted |= {t: "distributed" for t in distribution.DISTRIBUTED}
    assert distribution.places(conn, settings.schema) == wanted
    assert distribution.log_is_distributed(conn, settings.schema)  # the log with them
    again = cli(env, "db", "distribute")
    assert again.returncode == 0, again.stderr
    assert [line.split("\t")[-1] for line in again.stdout.splitlines()] == [
        "in place already"
    ] * PLACED
    colocated = conn.execute(
        "SELECT count(DISTINCT colocationid) FROM pg_dist_partition"
        " WHERE logicalrelid = ANY(%s::regclass[])",
        ([f"{settings.schema}.{t}" for t in distribution.DISTRIBUTED],),
    ).fetchone()
    assert colocated == (1,)


@pytest.mark.citus
def test_a_reader_of_the_whole_database_meets_no_deadlock_with_the_placing(
    citus: CitusCluster, settings: Settings, conn: Conn
) -> None:
    """A reader that locks every table in the order of their oids, as ``pg_dump`` does, and
    holds the first of the schema when ``ledger db distribute`` starts: the placing waits
    for it, then places everything. Before, the placing locked the money tables first and
    the log last: ``deadlock detected`` in ``_log_keys`` against such a reader (a test's
    ``pg_dump`` of the whole database, twice in the suite's distributed runs)."""
    tables = [
        sql.Identifier(settings.schema, str(name))
        for (name,) in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY c.oid",
            (settings.schema,),
        )
    ]
    log = tables.index(sql.Identifier(settings.schema, "ledger_events"))
    reader = psycopg.connect(settings.url)
    try:
        reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        lock = sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE")
        for table in tables[: log + 1]:  # the dump under way: up to the log
            reader.execute(lock.format(table))
        placed: list[object] = []

        def place() -> None:
            try:
                with connect(settings) as placing:
                    placed.append(distribution.distribute(placing, settings.schema))
            except psycopg.Error as error:
                placed.append(error)

        thread = threading.Thread(target=place)
        thread.start()
        assert wait_for(lambda: waiting_on(conn, settings.schema)), "the placing never waited"
        for table in tables[log + 1 :]:  # the rest of the dump: no deadlock
            reader.execute(lock.format(table))
        reader.rollback()
        thread.join(timeout=300)
    finally:
        reader.close()
    assert len(placed) == 1 and isinstance(placed[0], list), placed
    assert distribution.log_is_distributed(conn, settings.schema)


def waiting_on(conn: Conn, schema: str) -> bool:
    """Whether a session waits for a lock on a table of ``schema``."""
    row = conn.execute(
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT l.granted AND n.nspname = %s",
        (schema,),
    ).fetchone()
    return row is not None and row[0] > 0


@pytest.mark.citus
def test_appends_land_each_organization_on_its_worker_and_a_rebuild_keeps_the_layout(
    citus: CitusCluster, settings: Settings, conn: Conn
) -> None:
    env = _env(settings)
    assert cli(env, "db", "distribute").returncode == 0
    first, second = _organizations_on_two_workers(citus, conn, settings.schema)
    lines = "".join(json.dumps(c) + "\n" for c in _history(first, second))
    done = cli(env, "append", "-", stdin=lines)
    assert done.returncode == 0, done.stderr
    assert {a["status"] for a in answers(done.stdout)} == {"accepted"}

    table = f"{settings.schema}.purchases"
    here, there = citus.placement(conn, table, first), citus.placement(conn, table, second)
    assert here.worker != there.worker
    assert citus.count_on_worker(here, "organization_id", first) == 2
    assert citus.count_on_worker(there, "organization_id", second) == 1
    access = f"{settings.schema}.content_access"
    # colocated: an organization's access rows live on the worker of its purchases
    assert citus.placement(conn, access, first).worker == here.worker
    assert (
        citus.count_on_worker(citus.placement(conn, access, second), "organization_id", second) == 2
    )

    # content too (migration 0015): an organization's videos on the worker of its money rows
    content = f"{settings.schema}.content"
    assert citus.placement(conn, content, first).worker == here.worker
    assert citus.count_on_worker(citus.placement(conn, content, first), "organization_id", first)

    before = dump_all(conn)
    keys_before = _content_keys(conn)
    assert keys_before == CONTENT_KEYS_ON_CITUS
    rebuilt = cli(env, "projections", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert dump_all(conn) == before
    wanted = {t: "reference" for t in distribution.REFERENCE}
    wanted |= {t: "distributed" for t in distribution.DISTRIBUTED}
    assert distribution.places(conn, settings.schema) == wanted
    assert _content_keys(conn) == keys_before  # the rebuilt tables' keys as the old ones'

    verified = cli(env, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    revenue = cli(env, "audit", "revenue")
    assert revenue.returncode == 0, revenue.stderr


# the keys to and of content on the cluster: the composite foreign keys of the colocated money
# tables, and none of what Citus cannot hold on a distributed content
CONTENT_KEYS_ON_CITUS = {
    ("content_access", "content_access_content_id_fkey"): (
        "FOREIGN KEY (organization_id, content_id) REFERENCES content(organization_id, id)"
        " ON DELETE CASCADE"
    ),
    ("purchases", "purchases_content_id_fkey"): (
        "FOREIGN KEY (organization_id, content_id) REFERENCES content(organization_id, id)"
        " ON DELETE RESTRICT"
    ),
    ("content", "content_pkey"): "PRIMARY KEY (organization_id, id)",
    # video_playback carries its content's organization since migration 0026
    ("video_playback", "video_playback_content_id_fkey"): (
        "FOREIGN KEY (organization_id, content_id) REFERENCES content(organization_id, id)"
        " ON DELETE CASCADE"
    ),
}


def _content_keys(conn: Conn) -> dict[tuple[str, str], str]:
    rows = conn.execute(
        "SELECT c.relname, k.conname, pg_get_constraintdef(k.oid) FROM pg_constraint k"
        " JOIN pg_class c ON c.oid = k.conrelid"
        " WHERE c.relnamespace = current_schema()::regnamespace"
        " AND (k.confrelid = 'content'::regclass OR (k.conrelid = 'content'::regclass"
        "  AND k.contype IN ('p', 'u')))"
    ).fetchall()
    return {(r[0], r[1]): r[2] for r in rows}


@pytest.mark.citus
def test_a_layout_of_before_migration_0015_is_placed_anew(
    citus: CitusCluster, empty_settings: Settings
) -> None:
    """A schema distributed before content was (content a reference table, as the first
    layout had it), then upgraded: `ledger db distribute` brings the tables back to the
    coordinator and places them anew, every row kept, and again changes nothing."""
    settings = empty_settings
    schema = settings.schema
    with psycopg.connect(settings.url, autocommit=True) as conn:
        migrations.upgrade(conn, schema, to=13)
    with psycopg.connect(settings.url, autocommit=True) as conn:
        name = lambda t: sql.Identifier(schema, t).as_string(conn)  # noqa: E731
        for table in ("users", "organizations", "content"):
            conn.execute("SELECT create_reference_table(%s::regclass)", (name(table),))
        conn.execute(
            "SELECT create_distributed_table(%s::regclass, 'organization_id')",
            (name("purchases"),),
        )
        conn.execute(
            "SELECT create_distributed_table(%s::regclass, 'organization_id', colocate_with => %s)",
            (name("content_access"), name("purchases")),
        )
    api.upgrade(settings)
    env = _env(settings)
    first, second = (str(o) for o in islice(citus_support.organizations(), 2))
    lines = "".join(json.dumps(c) + "\n" for c in _history(first, second))
    done = cli(env, "append", "-", stdin=lines)
    assert done.returncode == 0, done.stderr
    with psycopg.connect(settings.url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        assert distribution.places(conn, schema)["content"] == "reference"
        before = dump_all(conn)
        placed = cli(env, "db", "distribute")
        assert placed.returncode == 0, placed.stderr
        assert [line.split("\t")[-1] for line in placed.stdout.splitlines()] == ["done"] * PLACED
        wanted = {t: "reference" for t in distribution.REFERENCE}
        wanted |= {t: "distributed" for t in distribution.DISTRIBUTED}
        assert distribution.places(conn, schema) == wanted
        assert dump_all(conn) == before
        assert _content_keys(conn) == CONTENT_KEYS_ON_CITUS
        again = cli(env, "db", "distribute")
        assert [line.split("\t")[-1] for line in again.stdout.splitlines()] == [
            "in place already"
        ] * PLACED


def _constraints(conn: Conn, schema: str) -> dict[tuple[str, str], str]:
    """The constraints of the tables ``ledger db distribute`` places, by table and name."""
    rows = conn.execute(
        "SELECT c.relname, k.conname, pg_get_constraintdef(k.oid) FROM pg_constraint k"
        " JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = ANY(%s)",
        (schema, [*distribution.REFERENCE, *distribution.DISTRIBUTED]),
    ).fetchall()
    return {(str(table), str(name)): str(definition) for table, name, definition in rows}


@pytest.mark.citus
def test_the_placed_tables_keep_the_migrations_constraint_names_and_checks(
    citus: CitusCluster, settings: Settings, conn: Conn
) -> None:
    """`ledger db distribute` places each table as the migration made it: the names of its
    NOT NULL constraints (PostgreSQL 18 names them) and its CHECKs as the migration's text
    read back. Before, placing ``users`` took the local tables keyed to it into Citus's
    metadata, and each was then made again from a copy of a transient name
    (``content_3841110697_id_not_null``, purchases' CHECKs as Citus re-parsed them), where a
    rebuild of one table alone swapped in the migration's: the layout depended on which path
    made it (docs/scaling.md, "The migration's names on the cluster")."""
    schema = settings.schema
    migrated = _constraints(conn, schema)
    assert ("purchases", "purchases_status_check") in migrated
    assert ("content", "content_id_not_null") in migrated  # PostgreSQL 18: NOT NULL named
    cannot_hold = set(distribution.CITUS_CANNOT_HOLD)
    wanted = {key: text for key, text in migrated.items() if key not in cannot_hold}
    env = _env(settings)
    first, second = (str(o) for o in islice(citus_support.organizations(), 2))
    lines = "".join(json.dumps(c) + "\n" for c in _history(first, second))
    done = cli(env, "append", "-", stdin=lines)
    assert done.returncode == 0, done.stderr
    placed = cli(env, "db", "distribute")
    assert placed.returncode == 0, placed.stderr
    assert _constraints(conn, schema) == wanted
    for table in ("content", "purchases"):  # a rebuild of one table alone: the same
        rebuilt = cli(env, "projections", "rebuild", "--only", table)
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert _constraints(conn, schema) == wanted, table
    again = cli(env, "db", "distribute")
    assert again.returncode == 0, again.stderr
    assert _constraints(conn, schema) == wanted
