"""Per-organization positions, chains and locks (migration 0014, docs/stream.md "Orders").

Each organization's events have their own gapless positions and hash chain; a user's
registration goes to the platform's chain. In the log's ``organization`` order an
organization's open append holds up its own chain only; in the ``global`` order (the
default) it holds up the whole log, as before. The old single chain carries into the
platform's chain, its head recorded and verified before the switch.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any
from uuid import UUID

import orjson
import psycopg
import pytest

from ledger import api
from ledger.audit.chain import GENESIS
from ledger.audit.verify import verify
from ledger.config import Settings
from ledger.database import migrations
from ledger.database.connections import connect
from ledger.log import chains
from ledger.log.recorder import LockTimeout
from tests import citus_support
from tests.support import append, cli, foreign_user_state, org, publish, statuses, user

Conn = psycopg.Connection[Any]
A = "0a000000-0000-4000-8000-00000000000a"
B = "0b000000-0000-4000-8000-00000000000b"
CA, CA2, CB = (f"c{n}000000-0000-4000-8000-000000000000" for n in range(3))


def chain_rows(conn: Conn, organization: str | UUID) -> list[tuple[int, str]]:
    rows = conn.execute(
        "SELECT position, topic FROM ledger_events WHERE organization_id = %s ORDER BY position",
        (organization,),
    ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def test_each_organization_has_its_own_gapless_chain_and_users_the_platforms(
    settings: Settings, conn: Conn
) -> None:
    with api.open_ledger(settings) as ledger:
        results = append(
            ledger,
            org(A, "A"),
            user("creator"),
            org(B, "B"),
            publish(CA, A),
            publish(CB, B),
            publish(CA2, A),
        )
    assert statuses(results) == ["accepted"] * 6
    a, b = chain_rows(conn, A), chain_rows(conn, B)
    assert [p for p, _ in a] == list(range(1, len(a) + 1)) and len(a) >= 3
    assert [p for p, _ in b] == list(range(1, len(b) + 1)) and len(b) >= 2
    assert {t for _, t in chain_rows(conn, chains.PLATFORM)} == {"UserRegistered"}
    checked = verify(conn, settings.schema)
    assert [c.ok for c in checked.checks if c.name == "log"] == [True, True, True]
    assert {h.chain for h in checked.heads} == {"", A, B}


def _hold_open_append(settings: Settings, organization: str) -> psycopg.Connection[Any]:
    """An append of ``organization`` left uncommitted: an event inserted into its chain
    (through the log's triggers, which take the chain's lock) in an open transaction."""
    holder = connect(settings)
    holder.execute(
        "INSERT INTO ledger_events (originator_id, originator_version, topic, state,"
        " organization_id) VALUES (gen_random_uuid(), 1, 'UserRegistered', %s, %s)",
        (foreign_user_state("held").encode(), organization),
    )
    return holder


@pytest.fixture
def two_organizations(settings: Settings) -> Settings:
    with api.open_ledger(settings) as ledger:
        added = append(ledger, org(A, "A"), org(B, "B"), user("creator"))
        assert statuses(added) == ["accepted"] * 3
    return dataclasses.replace(settings, lock_timeout="1s")


def test_in_organization_order_an_open_append_of_one_organization_holds_up_no_other(
    two_organizations: Settings, conn: Conn
) -> None:
    settings = two_organizations
    with conn.transaction():
        chains.set_order(conn, settings.schema, "organization")
    assert chains.order(conn, settings.schema) == "organization"
    holder = _hold_open_append(settings, A)
    try:
        with api.open_ledger(settings) as ledger:
            # B commits while A's append is open
            assert statuses(append(ledger, publish(CB, B))) == ["accepted"]
            # A's own chain waits for it, and the wait is bounded
            with pytest.raises(LockTimeout):
                append(ledger, publish(CA, A))
        assert [t for _, t in chain_rows(conn, B)][-1] == "ContentPublished"
    finally:
        holder.rollback()
        holder.close()
    with api.open_ledger(settings) as ledger:
        assert statuses(append(ledger, publish(CA, A))) == ["accepted"]
    assert [p for p, _ in chain_rows(conn, A)] == [1, 2]  # the rolled-back one left no gap
    checked = verify(conn, settings.schema)
    assert checked.ok, [c.line() for c in checked.checks]


@pytest.mark.single_server(citus_support.GLOBAL_LOCK)
def test_in_global_order_an_open_append_holds_up_every_organization(
    two_organizations: Settings, conn: Conn
) -> None:
    settings = two_organizations
    assert chains.order(conn, settings.schema) == "global"
    holder = _hold_open_append(settings, A)
    try:
        with api.open_ledger(settings) as ledger, pytest.raises(LockTimeout):
            append(ledger, publish(CB, B))
    finally:
        holder.rollback()
        holder.close()


def _raw_event(conn: Conn, user_id: str) -> None:
    conn.execute(
        "INSERT INTO ledger_events (originator_id, originator_version, topic, state)"
        " VALUES (gen_random_uuid(), 1, 'UserRegistered', %s)",
        (foreign_user_state(user_id).encode(),),
    )


def test_the_old_chain_is_verified_recorded_and_carried_into_the_platforms(
    empty_settings: Settings,
) -> None:
    schema = empty_settings.schema
    with connect(empty_settings, autocommit=True) as conn:
        migrations.upgrade(conn, schema, to=13)
        for n in range(5):
            _raw_event(conn, f"old-{n}")
        old = conn.execute(
            "SELECT notification_id, hash FROM ledger_events ORDER BY notification_id"
        ).fetchall()
        migrations.upgrade(conn, schema, to=14)
        origin = conn.execute(
            "SELECT head_position, head_hash, events FROM ledger_chain_origin"
        ).fetchone()
        assert origin == (old[-1][0], old[-1][1], 5)
        carried = conn.execute(
            "SELECT organization_id, position, hash FROM ledger_events ORDER BY notification_id"
        ).fetchall()
        assert carried == [(chains.PLATFORM, n, h) for n, h in old]  # old positions, old hashes
        migrations.upgrade(conn, schema)
    with api.open_ledger(empty_settings) as ledger:
        assert statuses(append(ledger, org(A, "A"), user("new"))) == ["accepted"] * 2
    with connect(empty_settings, autocommit=True) as conn:
        first = conn.execute(
            "SELECT hash FROM ledger_events WHERE organization_id = %s AND position = 1", (A,)
        ).fetchone()
        assert first is not None
        platform = chain_rows(conn, chains.PLATFORM)
        assert [p for p, _ in platform] == [n for n, _ in old] + [old[-1][0] + 1]
        checked = verify(conn, schema)
        assert checked.ok, [c.line() for c in checked.checks]
        # an organization's chain starts from the old head: sha256(origin || uuid)
        genesis = hashlib.sha256(bytes(old[-1][1]) + UUID(A).bytes).digest()
        assert genesis != GENESIS
        refused = "the log holds events chained per organization"
        with pytest.raises(psycopg.Error, match=refused):
            migrations.downgrade(conn, schema, to=13)
        assert migrations.pending(conn, schema) == []


def test_a_broken_old_chain_is_refused_and_nothing_changes(empty_settings: Settings) -> None:
    schema = empty_settings.schema
    with connect(empty_settings, autocommit=True) as conn:
        migrations.upgrade(conn, schema, to=13)
        for n in range(4):
            _raw_event(conn, f"old-{n}")
        second = conn.execute(
            "SELECT notification_id FROM ledger_events ORDER BY notification_id OFFSET 1 LIMIT 1"
        ).fetchone()
        assert second is not None
        with conn.transaction():
            conn.execute("ALTER TABLE ledger_events DISABLE TRIGGER ALL")
            conn.execute(
                "UPDATE ledger_events SET hash = sha256(hash) WHERE notification_id = %s", second
            )
            conn.execute("ALTER TABLE ledger_events ENABLE TRIGGER ALL")
        with pytest.raises(psycopg.Error, match=f"breaks at position {second[0]}"):
            migrations.upgrade(conn, schema, to=14)
        assert next(m.version for m in migrations.pending(conn, schema)) == 14
        assert conn.execute("SELECT to_regclass('ledger_chain_origin')").fetchone() == (None,)


def test_a_log_of_old_events_only_rolls_back_to_one_chain(empty_settings: Settings) -> None:
    schema = empty_settings.schema
    with connect(empty_settings, autocommit=True) as conn:
        migrations.upgrade(conn, schema, to=13)
        _raw_event(conn, "old")
        before = conn.execute("SELECT notification_id, hash FROM ledger_events").fetchall()
        migrations.upgrade(conn, schema, to=14)
        migrations.downgrade(conn, schema, to=13)
        assert conn.execute("SELECT notification_id, hash FROM ledger_events").fetchall() == before
        _raw_event(conn, "after")  # the single chain's trigger again
        assert conn.execute("SELECT count(*) FROM ledger_events").fetchone() == (2,)
        migrations.upgrade(conn, schema, to=14)
        assert conn.execute("SELECT events FROM ledger_chain_origin").fetchone() == (2,)


def test_a_reader_of_each_chain_never_skips_an_event_that_commits_late(
    two_organizations: Settings, conn: Conn, cli_env: dict[str, str]
) -> None:
    """In the organization order, A's open append draws a lower notification id than B's
    committed one: a reader of notification ids that moved past B's would pass A's for ever
    (why docs/stream.md keeps such readers to the global order), a reader of A's chain by
    its positions gets it once it commits."""
    settings = two_organizations
    with conn.transaction():
        chains.set_order(conn, settings.schema, "organization")
    a_before = stream_of(settings, UUID(A))
    holder = _hold_open_append(settings, A)
    try:
        with api.open_ledger(settings) as ledger:
            assert statuses(append(ledger, publish(CB, B))) == ["accepted"]
        b_records = stream_of(settings, UUID(B))
        assert b_records[-1].topic == "ContentPublished"
        assert [r.chain_position for r in b_records] == list(range(1, len(b_records) + 1))
        assert stream_of(settings, UUID(A)) == a_before  # A's open append is not visible
        global_cursor = max(r.position for r in ledger_read(settings, 0))
        holder.commit()
    finally:
        holder.close()
    a_after = stream_of(settings, UUID(A), after=a_before[-1].chain_position)
    assert [r.chain_position for r in a_after] == [a_before[-1].chain_position + 1]
    assert a_after[0].position < global_cursor  # what a reader of notification ids passed
    assert a_after[0].position not in [r.position for r in ledger_read(settings, global_cursor)]
    # the same through the command line: one chain, resumable by its positions
    env = {**cli_env}
    done = cli(env, "events", "--chain", A, "--after", str(a_before[-1].chain_position))
    lines = [orjson.loads(x) for x in done.stdout.splitlines()]
    assert done.returncode == 0 and [x["chain_position"] for x in lines] == [len(a_before) + 1]
    assert lines[0]["organization_id"] == A
    platform = cli(env, "events", "--chain", "platform")
    assert {orjson.loads(x)["topic"] for x in platform.stdout.splitlines()} == {"UserRegistered"}
    bad = cli(env, "events", "--chain", "nope")
    assert bad.returncode == 2 and "a chain is an organization's uuid or 'platform'" in bad.stderr


def stream_of(settings: Settings, chain: UUID, after: int = 0) -> list[Any]:
    return list(ledger_read(settings, after, chain))


def ledger_read(settings: Settings, after: int, chain: UUID | None = None) -> list[Any]:
    from ledger.reading.stream import read_events

    return list(read_events(settings, after=after, chain=chain))
