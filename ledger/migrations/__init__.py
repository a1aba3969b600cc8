"""A small, explicit migration runner for plain SQL files.

Each migration is ``NNNN_name.up.sql`` with its rollback ``NNNN_name.down.sql``,
run with ``search_path`` set to the ledger's schema (so a rebuild can run the same
files into a shadow schema). Applied migrations are recorded with a checksum in
``ledger_schema_migrations``; an edited, already-applied file is refused. An
advisory lock serialises concurrent upgrades and each run is one transaction, so
an upgrade applies all of its migrations or none. Why not alembic or yoyo: see
docs/operations.md.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql

LOG_VERSION = 1  # 0001_event_log: "base" is the log alone
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(up|down)\.sql$")


class MigrationError(Exception):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    up: str
    down: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.up.encode()).hexdigest()

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


@dataclass(frozen=True)
class MigrationState:
    migration: Migration
    applied_at: datetime | None


def discover() -> list[Migration]:
    found: dict[tuple[int, str], dict[str, str]] = {}
    for entry in resources.files(__name__).iterdir():
        match = _FILE.match(entry.name)
        if match:
            version, name, direction = int(match[1]), match[2], match[3]
            found.setdefault((version, name), {})[direction] = entry.read_text(encoding="utf-8")
    migrations = []
    for (version, name), sides in sorted(found.items()):
        if set(sides) != {"up", "down"}:
            raise MigrationError(f"migration {version:04d}_{name} needs both an up and a down file")
        migrations.append(Migration(version, name, sides["up"], sides["down"]))
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise MigrationError(f"migration versions must run 1, 2, 3 ... without gaps: {versions}")
    return migrations


def _prepare(conn: psycopg.Connection[Any], schema: str) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"ledger.migrations:{schema}",))
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
    conn.execute(
        "CREATE TABLE IF NOT EXISTS ledger_schema_migrations ("
        " version integer PRIMARY KEY,"
        " name text NOT NULL,"
        " checksum text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )


def _applied(conn: psycopg.Connection[Any]) -> dict[int, tuple[str, str, datetime]]:
    rows = conn.execute(
        "SELECT version, name, checksum, applied_at FROM ledger_schema_migrations"
    ).fetchall()
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


def _check_known(
    migrations: list[Migration], applied: dict[int, tuple[str, str, datetime]]
) -> None:
    by_version = {m.version: m for m in migrations}
    for version, (name, checksum, _) in sorted(applied.items()):
        known = by_version.get(version)
        if known is None:
            raise MigrationError(
                f"the database has migration {version:04d}_{name}, which this ledger does not know"
                " (is it older than the database?)"
            )
        if known.checksum != checksum:
            raise MigrationError(f"migration {known.label} was edited after it was applied")


def upgrade(conn: psycopg.Connection[Any], schema: str, to: int | None = None) -> list[Migration]:
    """Applies pending migrations (up to ``to``); returns those applied. Safe to rerun."""
    migrations = discover()
    done: list[Migration] = []
    with conn.transaction():
        _prepare(conn, schema)
        applied = _applied(conn)
        _check_known(migrations, applied)
        for migration in migrations:
            if migration.version in applied or (to is not None and migration.version > to):
                continue
            conn.execute(migration.up.encode())
            conn.execute(
                "INSERT INTO ledger_schema_migrations (version, name, checksum)"
                " VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
            done.append(migration)
    return done


def downgrade(conn: psycopg.Connection[Any], schema: str, to: int) -> list[Migration]:
    """Rolls back migrations above version ``to`` (``LOG_VERSION`` is "base": the
    log stays); returns those rolled back, newest first."""
    migrations = discover()
    undone: list[Migration] = []
    with conn.transaction():
        _prepare(conn, schema)
        applied = _applied(conn)
        _check_known(migrations, applied)
        for migration in reversed(migrations):
            if migration.version <= to or migration.version not in applied:
                continue
            conn.execute(migration.down.encode())
            conn.execute(
                "DELETE FROM ledger_schema_migrations WHERE version = %s", (migration.version,)
            )
            undone.append(migration)
    return undone


def status(conn: psycopg.Connection[Any], schema: str) -> list[MigrationState]:
    migrations = discover()
    exists = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_tables"
        " WHERE schemaname = %s AND tablename = 'ledger_schema_migrations')",
        (schema,),
    ).fetchone()
    applied = _applied_in(conn, schema) if exists and exists[0] else {}
    return [MigrationState(m, applied.get(m.version)) for m in migrations]


def _applied_in(conn: psycopg.Connection[Any], schema: str) -> dict[int, datetime]:
    rows = conn.execute(
        sql.SQL("SELECT version, applied_at FROM {}").format(
            sql.Identifier(schema, "ledger_schema_migrations")
        )
    ).fetchall()
    return {row[0]: row[1] for row in rows}


def head() -> int:
    return discover()[-1].version


def projection_migrations() -> list[Migration]:
    """The migrations that build projected tables (all but the log's)."""
    return [m for m in discover() if m.version > LOG_VERSION]
