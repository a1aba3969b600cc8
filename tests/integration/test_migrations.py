"""The migration runner and ``ledger db``: up, down, up; reruns; edited files; errors."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from ledger.config import Settings
from ledger.database import migrations
from ledger.database.connections import connect
from tests.support import TABLES, answers, catalogue, cli

Conn = psycopg.Connection[Any]


def tables(conn: Conn) -> set[str]:
    return {
        r[0]
        for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    }


def env_for(settings: Settings) -> dict[str, str]:
    import os

    return dict(os.environ, LEDGER_DATABASE_URL=settings.url, LEDGER_SCHEMA=settings.schema)


def test_up_down_up_keeps_the_log(empty_settings: Settings) -> None:
    env = env_for(empty_settings)
    first = cli(env, "db", "upgrade")
    assert first.returncode == 0 and "applied 0001_event_log" in first.stdout
    again = cli(env, "db", "upgrade")
    assert again.returncode == 0 and "up to date" in again.stdout
    import json

    appended = cli(env, "append", stdin="\n".join(json.dumps(c) for c in catalogue()))
    assert [a["status"] for a in answers(appended.stdout)] == ["accepted"] * 5
    with connect(empty_settings, autocommit=True) as conn:
        assert set(TABLES) <= tables(conn)
        down = cli(env, "db", "downgrade", "--to", "base")
        assert down.returncode == 0 and "rolled back 0002_projected_tables" in down.stdout
        assert tables(conn) & set(TABLES) == set()
        assert conn.execute("SELECT count(*) FROM ledger_events").fetchone() == (5,)
        status = cli(env, "db", "status")
        assert "0002_projected_tables\tpending" in status.stdout
        assert cli(env, "db", "upgrade").returncode == 0
        assert set(TABLES) <= tables(conn)


def test_the_log_rolls_back_only_when_empty(empty_settings: Settings) -> None:
    env = env_for(empty_settings)
    cli(env, "db", "upgrade")
    assert cli(env, "append", stdin='{"type": "user.register", "user_id": "u"}').returncode == 0
    refused = cli(env, "db", "downgrade", "--to", "zero")
    assert refused.returncode == 2 and "log holds events" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_an_empty_log_rolls_back_to_zero(empty_settings: Settings) -> None:
    env = env_for(empty_settings)
    cli(env, "db", "upgrade")
    assert cli(env, "db", "downgrade", "--to", "zero").returncode == 0
    with connect(empty_settings, autocommit=True) as conn:
        assert tables(conn) == {"ledger_schema_migrations"}


def test_an_edited_applied_migration_is_refused(settings: Settings, conn: Conn) -> None:
    conn.execute("UPDATE ledger_schema_migrations SET checksum = 'x' WHERE version = 2")
    with connect(settings) as other, pytest.raises(migrations.MigrationError, match="edited"):
        migrations.upgrade(other, settings.schema)


def test_migrations_are_numbered_without_gaps_and_reversible() -> None:
    found = migrations.discover()
    versions = [m.version for m in found]
    # a number reserved for a migration still on its way to main may be missing, no other
    expected = [
        v for v in range(1, versions[-1] + 1) if v in versions or v not in migrations.RESERVED
    ]
    assert versions == expected
    assert all(m.down.strip() for m in found)


def test_connection_failure_is_one_line_and_exit_two(empty_settings: Settings) -> None:
    env = env_for(empty_settings)
    done = cli(env, "--database-url", "postgresql://nobody@127.0.0.1:1/none", "db", "status")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1


def test_append_on_an_unmigrated_database_exits_two(empty_settings: Settings) -> None:
    done = cli(env_for(empty_settings), "append", stdin='{"type": "user.register", "user_id": "u"}')
    assert done.returncode == 2 and "ledger db upgrade" in done.stderr


def _primary_key(conn: Conn, table: str) -> list[str]:
    row = conn.execute(
        "SELECT array_agg(a.attname ORDER BY k.n) FROM pg_constraint c"
        " CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)"
        " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum"
        " WHERE c.conrelid = %s::regclass AND c.contype = 'p'",
        (table,),
    ).fetchone()
    return list(row[0]) if row else []


def test_the_stores_keys_by_organization_up_down_up_with_heartbeats_kept(
    empty_settings: Settings,
) -> None:
    """0022 leads the playback store's keys by the organization (Citus requires it); its
    rollback and a second upgrade keep every heartbeat, and the same heartbeat is never
    stored twice on either side of it."""
    import json

    from tests.support import grant, play

    env = env_for(empty_settings)
    assert cli(env, "db", "upgrade").returncode == 0
    beat = json.dumps(play("alice", 40))
    lines = [json.dumps(c) for c in (*catalogue(), grant("alice"))] + [beat]
    first = cli(env, "append", stdin="\n".join(lines))
    assert [a["status"] for a in answers(first.stdout)][-1] == "accepted"
    keyed = {
        "playback_heartbeats": ["organization_id", "identity", "occurred_at"],
        "playback_base": ["organization_id", "user_id", "content_id"],
    }
    before = {"playback_heartbeats": ["identity", "occurred_at"]}
    before["playback_base"] = ["user_id", "content_id"]
    with connect(empty_settings, autocommit=True) as conn:
        assert {t: _primary_key(conn, t) for t in keyed} == keyed
        migrations.downgrade(conn, empty_settings.schema, to=21)
        assert {t: _primary_key(conn, t) for t in keyed} == before
        # the old key still refuses the same heartbeat twice
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO playback_heartbeats SELECT * FROM playback_heartbeats")
        migrations.upgrade(conn, empty_settings.schema)
        assert {t: _primary_key(conn, t) for t in keyed} == keyed
        assert conn.execute("SELECT count(*) FROM playback_heartbeats").fetchone() == (1,)
    third = cli(env, "append", stdin=beat)
    assert [a["status"] for a in answers(third.stdout)] == ["duplicate"]
