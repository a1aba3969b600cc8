"""The log's order as state of its own (migration 0018).

The `organization` order is one row of ``ledger_log_order`` that the global-lock trigger
reads, no longer that trigger disabled: every trigger of the log stays ``ENABLE ALWAYS`` in
either order, and a disabled one is named by ``audit verify`` as tampering. Only the log's
owner changes the order; switched at any point between appends, each chain stays gapless
and the log verifies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import api
from ledger.audit.guards import TRIGGERS, check_guards
from ledger.audit.verify import verify
from ledger.config import Settings
from ledger.database import migrations
from ledger.database.connections import connect
from ledger.log import chains
from tests import citus_support
from tests.integration.test_roles import as_role, drop_roles
from tests.support import append, foreign_user_state, org, publish, statuses, user

Conn = psycopg.Connection[Any]
A = "0a000000-0000-4000-8000-00000000000a"
B = "0b000000-0000-4000-8000-00000000000b"
CA = "ca000000-0000-4000-8000-000000000000"
CHAINS = (str(chains.PLATFORM), A, B)


def triggers(conn: Conn) -> dict[str, str]:
    """The state of each guard of the log (``ledger.audit.guards.TRIGGERS``)."""
    rows = conn.execute(
        "SELECT t.tgname, t.tgenabled FROM pg_trigger t"
        " WHERE t.tgrelid = 'ledger_events'::regclass AND t.tgname = ANY(%s)",
        (list(TRIGGERS),),
    ).fetchall()
    return {str(name): str(state) for name, state in rows}


def last_events(conn: Conn) -> dict[str, tuple[int, bytes | None]]:
    rows = conn.execute(
        "SELECT DISTINCT ON (organization_id) organization_id, position, hash"
        " FROM ledger_events ORDER BY organization_id, position DESC"
    ).fetchall()
    return {str(o): (int(p), bytes(h)) for o, p, h in rows}


def raw_insert(conn: Conn, chain: str, user_id: str) -> None:
    conn.execute(
        "INSERT INTO ledger_events (originator_id, originator_version, topic, state,"
        " organization_id) VALUES (gen_random_uuid(), 1, 'UserRegistered', %s, %s)",
        (foreign_user_state(user_id).encode(), chain),
    )


@pytest.mark.single_server(citus_support.ORDER_SWITCH)
def test_the_organization_order_is_a_row_and_every_trigger_stays_enabled(
    settings: Settings, conn: Conn
) -> None:
    with api.open_ledger(settings) as ledger:
        assert statuses(append(ledger, org(A, "A"), user("creator"))) == ["accepted"] * 2
    assert set(triggers(conn).values()) == {"A"}
    with conn.transaction():
        chains.set_order(conn, settings.schema, "organization")
    assert chains.order(conn, settings.schema) == "organization"
    assert conn.execute("SELECT log_order FROM ledger_log_order").fetchall() == [("organization",)]
    assert set(triggers(conn).values()) == {"A"}  # no trigger changed
    with api.open_ledger(settings) as ledger:
        assert statuses(append(ledger, publish(CA, A))) == ["accepted"]
    assert check_guards(conn, settings.schema) is None
    checked = verify(conn, settings.schema)
    assert checked.ok, [c.line() for c in checked.checks]
    # the global lock's trigger disabled is tampering now, in either order
    conn.execute("ALTER TABLE ledger_events DISABLE TRIGGER ledger_events_insert_lock")
    assert check_guards(conn, settings.schema) == (
        "the trigger ledger_events_insert_lock on ledger_events is disabled"
    )
    conn.execute("ALTER TABLE ledger_events ENABLE ALWAYS TRIGGER ledger_events_insert_lock")
    with conn.transaction():
        chains.set_order(conn, settings.schema, "global")
        chains.set_order(conn, settings.schema, "global")  # again: nothing changes
    assert chains.order(conn, settings.schema) == "global"
    assert conn.execute("SELECT count(*) FROM ledger_log_order").fetchone() == (0,)
    assert check_guards(conn, settings.schema) is None


@pytest.mark.single_server(citus_support.GLOBAL_LOCK)
def test_the_trigger_takes_the_global_lock_only_in_the_global_order(
    settings: Settings, conn: Conn
) -> None:
    """Any insert (not only the recorder's) reads the order: in the global order it holds
    the log's EXCLUSIVE lock to its commit, in the organization order only its chain's row."""

    def holds_the_log_lock() -> bool:
        with connect(settings) as other:
            raw_insert(other, A, "held")
            found = conn.execute(
                "SELECT count(*) FROM pg_locks l WHERE l.pid = %s AND l.mode = 'ExclusiveLock'"
                " AND l.relation = 'ledger_events'::regclass",
                (other.info.backend_pid,),
            ).fetchone()
            other.rollback()
        return found == (1,)

    assert holds_the_log_lock()
    with conn.transaction():
        chains.set_order(conn, settings.schema, "organization")
    assert not holds_the_log_lock()


@pytest.fixture
def roles(settings: Settings) -> Iterator[dict[str, str]]:
    from ledger.database.roles import create_roles

    prefix = f"o{UUID(int=hash(settings.schema) & (2**64 - 1)).hex[-8:]}"
    with connect(settings, autocommit=True) as conn:
        names = create_roles(conn, settings.schema, prefix, login=True)
    yield names
    drop_roles(settings, names.values())


@pytest.mark.single_server(citus_support.ORDER_SWITCH)
def test_the_writer_reads_the_order_but_only_the_owner_changes_it(
    settings: Settings, roles: dict[str, str]
) -> None:
    writer = as_role(settings, roles["writer"])
    with connect(writer, autocommit=True) as conn:
        assert chains.order(conn, settings.schema) == "global"
        for statement in (
            "UPDATE ledger_log_order SET log_order = 'organization'",
            "DELETE FROM ledger_log_order",
            "INSERT INTO ledger_log_order (log_order) VALUES ('organization')",
            "ALTER TABLE ledger_events DISABLE TRIGGER ledger_events_insert_lock",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            chains.set_order(conn, settings.schema, "organization")
    with api.open_ledger(writer) as ledger:  # the writer's appends run the triggers
        assert (
            statuses(append(ledger, org(A, "A"), user("creator"), publish(CA, A)))
            == ["accepted"] * 3
        )


@pytest.mark.single_server(citus_support.ORDER_SWITCH)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(CHAINS), st.booleans(), st.booleans()), min_size=1, max_size=12
    )
)
def test_any_switches_of_the_order_keep_every_chain_gapless_and_verified(
    fresh: Callable[[], Settings], steps: list[tuple[str, bool, bool]]
) -> None:
    """Any sequence of inserts into any chains, some rolled back, the order switched on the
    way: each chain's positions are gapless from 1, every guard stays in place, and the
    whole log verifies."""
    settings = fresh()
    with connect(settings, autocommit=True) as conn:
        for n, (chain, commit, switch) in enumerate(steps):
            if switch:
                with conn.transaction():
                    now = chains.order(conn, settings.schema)
                    flipped: chains.Order = "organization" if now == "global" else "global"
                    chains.set_order(conn, settings.schema, flipped)
            with connect(settings) as other:
                raw_insert(other, chain, f"u{n}")
                raw_insert(other, chain, f"v{n}")
                if commit:
                    other.commit()
                else:
                    other.rollback()
        assert set(triggers(conn).values()) == {"A"}
        assert check_guards(conn, settings.schema) is None
        for chain in CHAINS:
            found = conn.execute(
                "SELECT array_agg(position ORDER BY position) FROM ledger_events"
                " WHERE organization_id = %s",
                (chain,),
            ).fetchone()
            positions = (found[0] if found else None) or []
            assert positions == list(range(1, len(positions) + 1))
        checked = verify(conn, settings.schema)
        assert checked.ok, [c.line() for c in checked.checks]
        # the order put back as migrated (no row), once everything above is asserted: the
        # schema pool reuses only a schema a migration's state, and a switched one was
        # dropped and a new one migrated for the next example (docs/testing.md, eighth pass)
        with conn.transaction():
            chains.set_order(conn, settings.schema, "global")


def test_an_upgrade_keeps_the_organization_order_as_a_row(empty_settings: Settings) -> None:
    """A log of 0017 in the organization order (the trigger disabled): 0018 records the order
    as a row and enables the trigger; the chains continue without the global lock. Rolled
    back, the order is the disabled trigger again."""
    schema = empty_settings.schema
    with connect(empty_settings, autocommit=True) as conn:
        migrations.upgrade(conn, schema, to=17)
        for n in range(3):
            raw_insert(conn, A, f"a{n}")
        conn.execute("ALTER TABLE ledger_events DISABLE TRIGGER ledger_events_insert_lock")
        assert chains.order(conn, schema) == "organization"
        migrations.upgrade(conn, schema, to=18)
        assert chains.order(conn, schema) == "organization"
        assert set(triggers(conn).values()) == {"A"}
        raw_insert(conn, A, "a-after")
        migrations.downgrade(conn, schema, to=17)
        assert triggers(conn)["ledger_events_insert_lock"] == "D"
        assert chains.order(conn, schema) == "organization"
        raw_insert(conn, B, "b-below")
        migrations.upgrade(conn, schema)
        assert chains.order(conn, schema) == "organization"
        assert last_events(conn)[A][0] == 4 and last_events(conn)[B][0] == 1
        checked = verify(conn, schema)
        assert checked.ok, [c.line() for c in checked.checks]


def test_a_log_in_the_global_order_has_no_row_and_stays_global(empty_settings: Settings) -> None:
    schema = empty_settings.schema
    with connect(empty_settings, autocommit=True) as conn:
        migrations.upgrade(conn, schema, to=17)
        migrations.upgrade(conn, schema)
        assert conn.execute("SELECT count(*) FROM ledger_log_order").fetchone() == (0,)
        assert chains.order(conn, schema) == "global"
        migrations.downgrade(conn, schema, to=17)
        assert triggers(conn)["ledger_events_insert_lock"] == "A"
        migrations.upgrade(conn, schema)
