"""A small, explicit migration runner for plain SQL files.

Each migration is ``NNNN_name.up.sql`` with its rollback ``NNNN_name.down.sql``,
run with ``search_path`` set to the ledger's schema (so a rebuild can run the same
files into a shadow schema). Applied migrations are recorded with a checksum in
``ledger_schema_migrations``; an edited, already-applied file is refused. An
advisory lock, shared with rebuilds (``lock``), serialises upgrades, downgrades and
rebuilds of a schema, and each run is one transaction, so an upgrade applies all of
its migrations or none. Why not alembic or yoyo: see docs/architecture.md.

A migration belongs to the log or to the projections. One whose up file starts with
``-- scope: log`` belongs to the log (its guards and bookkeeping): ``downgrade`` to
"base" keeps it, and a rebuild's shadow schema never runs it. Every other one builds
projected tables or what they need: "base" rolls it back, and a shadow build runs it.

An upgrade that creates projected tables over a non-empty log marks them stale in its
own transaction (``projections.freshness``); ``ledger.api.upgrade`` then fills them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any, Literal

import psycopg
from psycopg import sql

from ledger.errors import ConfigurationError

LOG_VERSION = 1  # 0001_event_log: the log itself
# 0004_read_version_check, the append's guard, written before migrations said their scope:
# the log's (0019 and 0030 restate its function in the form Citus routes), so `--to base`
# keeps it. Rolled back and applied again, it made 0004's form again over 0019's, which a
# distributed log refuses at every append. Its up file cannot say so now (its checksum).
READ_CHECK_VERSION = 4
BASE: Literal["base"] = "base"  # the log alone: every log migration, no projection one
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(up|down)\.sql$")
_LOG_SCOPE = re.compile(r"\A--\s*scope:\s*log\s*$", re.MULTILINE)
# a down file of the log's that runs on the distributed layout as on one server says so
_DISTRIBUTED_DOWN = re.compile(r"^--\s*rolls back on citus\s*$", re.MULTILINE)
SCHEMA_COMMENT = "created by `ledger db upgrade`"
# Numbers handed to work still on its way to main (one branch each): a gap at a reserved
# number is expected until its migration lands, and the file, once there, takes its place.
# Delete an entry when its migration is on main. A number handed out and never used stays,
# so the gap it left is known.
RESERVED: dict[int, str] = {32: "issue 28: handed to a branch (i28d) that needed none; unused"}


class MigrationError(Exception):
    pass


class NotMigrated(MigrationError):
    """The schema has no event log yet: every command but ``db upgrade`` needs one."""

    def __init__(self, schema: str) -> None:
        super().__init__(
            f"the database has no ledger in schema {schema!r} yet: run `ledger db upgrade`"
        )


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

    @property
    def scope(self) -> Literal["log", "projections"]:
        if self.version in (LOG_VERSION, READ_CHECK_VERSION) or _LOG_SCOPE.match(self.up):
            return "log"
        return "projections"

    @property
    def rolls_back_distributed(self) -> bool:
        """Whether its down file also runs on a distributed schema (``_refuse_on_citus``)."""
        return self.scope == "projections" or bool(_DISTRIBUTED_DOWN.search(self.down))


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
    last = versions[-1] if versions else 0
    expected = [v for v in range(1, last + 1) if v in versions or v not in RESERVED]
    if versions != expected:
        raise MigrationError(
            f"migration versions must run 1, 2, 3 ... without gaps (but reserved ones): {versions}"
        )
    return migrations


def lock(conn: psycopg.Connection[Any], schema: str) -> None:
    """The lock that migrations and rebuilds of ``schema`` share, until the transaction ends:
    one waits for the other, so neither sees the other's half-done work."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"ledger.schema:{schema}",))


def try_lock(conn: psycopg.Connection[Any], schema: str) -> bool:
    row = conn.execute(
        "SELECT pg_try_advisory_xact_lock(hashtext(%s))", (f"ledger.schema:{schema}",)
    ).fetchone()
    return bool(row and row[0])


def _prepare(conn: psycopg.Connection[Any], schema: str) -> None:
    lock(conn, schema)
    if not _schema_exists(conn, schema):
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        # the ledger's own schema: `ledger db roles` may give it to the owner role
        conn.execute(
            sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
                sql.Identifier(schema), sql.Literal(SCHEMA_COMMENT)
            )
        )
    conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
    conn.execute(
        "CREATE TABLE IF NOT EXISTS ledger_schema_migrations ("
        " version integer PRIMARY KEY,"
        " name text NOT NULL,"
        " checksum text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )


def _schema_exists(conn: psycopg.Connection[Any], schema: str) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s)", (schema,)
    ).fetchone()
    return bool(row and row[0])


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


def _existing_tables(conn: psycopg.Connection[Any], schema: str) -> set[str]:
    return {
        row[0]
        for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)
        ).fetchall()
    }


def upgrade(conn: psycopg.Connection[Any], schema: str, to: int | None = None) -> list[Migration]:
    """Applies pending migrations (up to ``to``); returns those applied. Safe to rerun.

    Projected tables it creates over a non-empty log are marked stale in the same
    transaction, so that nothing appends to them until they are filled.
    """
    from projections import freshness
    from projections.registry import TABLES

    migrations = discover()
    done: list[Migration] = []
    with conn.transaction():
        _prepare(conn, schema)
        applied = _applied(conn)
        _check_known(migrations, applied)
        before = _existing_tables(conn, schema)
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
        after = _existing_tables(conn, schema)
        created = [t for t in TABLES if t in after and t not in before]
        if created and freshness.log_has_events(conn, schema):
            freshness.mark(conn, schema, created, "created empty over a non-empty log")
    return done


def target(text: str) -> int | Literal["base"]:
    """A ``--to`` value: ``base``, ``zero`` or the number of a known migration."""
    versions = [m.version for m in discover()]
    if text == BASE:
        return BASE
    if text == "zero":
        return 0
    if text.isascii() and text.isdigit() and int(text) in versions:
        return int(text)
    raise ValueError(
        f"--to: {text!r} is not 'base', 'zero' or a migration number "
        f"({versions[0]}-{versions[-1]}; `ledger db status` lists them)"
    )


def downgrade(
    conn: psycopg.Connection[Any], schema: str, to: int | Literal["base"]
) -> list[Migration]:
    """Rolls back migrations: to ``BASE`` every projection migration (the log and its
    guards stay), to a number every migration above it; returns those rolled back,
    newest first."""
    migrations = discover()
    undone: list[Migration] = []
    with conn.transaction():
        if not has_table(conn, schema, "ledger_schema_migrations"):
            return undone  # never migrated: nothing to roll back (and nothing created)
        _prepare(conn, schema)
        applied = _applied(conn)
        _check_known(migrations, applied)
        undoing = [
            m
            for m in reversed(migrations)
            if m.version in applied
            and not (m.scope == "log" if to == BASE else m.version <= int(to))
        ]
        logs = [m for m in undoing if not m.rolls_back_distributed]
        if logs:
            _refuse_on_citus(conn, schema, logs[0])
        for migration in undoing:
            conn.execute(migration.down.encode())
            conn.execute(
                "DELETE FROM ledger_schema_migrations WHERE version = %s", (migration.version,)
            )
            undone.append(migration)
    return undone


def _refuse_on_citus(conn: psycopg.Connection[Any], schema: str, newest: Migration) -> None:
    """On a schema whose tables Citus holds (``ledger db distribute``), the log's migrations
    are not rolled back: their down files put back what one server holds and a distributed
    log or store cannot (keys without ``organization_id``: "cannot create constraint on
    ..."), so such a downgrade would stop half way in a raw error. (A down file that only
    drops what its migration added says ``-- rolls back on citus`` and runs.) Refused
    before any down file runs, in one line saying why and what to do (docs/operations.md,
    "Downgrading").
    The projected tables' migrations roll back there (``--to base``, or down to the newest
    of the log's: ``newest``), as the projected tables' down files handle Citus."""
    if conn.execute("SELECT to_regclass('pg_catalog.pg_dist_partition')").fetchone() == (None,):
        return
    placed = conn.execute(
        "SELECT count(*) FROM pg_dist_partition d JOIN pg_class c ON c.oid = d.logicalrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s",
        (schema,),
    ).fetchone()
    if placed and placed[0]:
        raise ConfigurationError(
            f"--to: schema {schema!r} is distributed (`ledger db distribute`) and rolling back "
            f"{newest.label}, a migration of the log, would put back keys a distributed log "
            "cannot hold: nothing was rolled back; on Citus roll back the projected tables "
            f"only (--to base, or --to {newest.version:04d} or above), or restore the copy "
            "taken before `ledger db distribute` (docs/operations.md, 'Downgrading')"
        )


def status(conn: psycopg.Connection[Any], schema: str) -> list[MigrationState]:
    migrations = discover()
    known = has_table(conn, schema, "ledger_schema_migrations")
    applied = _applied_in(conn, schema) if known else {}
    return [MigrationState(m, applied.get(m.version)) for m in migrations]


def has_table(conn: psycopg.Connection[Any], schema: str, table: str) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = %s)",
        (schema, table),
    ).fetchone()
    return bool(row and row[0])


def require_log(conn: psycopg.Connection[Any], schema: str) -> None:
    """``NotMigrated`` unless the schema holds the event log."""
    if not has_table(conn, schema, "ledger_events"):
        raise NotMigrated(schema)


def pending(conn: psycopg.Connection[Any], schema: str) -> list[Migration]:
    return [s.migration for s in status(conn, schema) if s.applied_at is None]


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
    """The migrations that build projected tables: a shadow schema runs these."""
    return [m for m in discover() if m.scope == "projections"]


_CREATED = {
    "table": re.compile(r"\bCREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.IGNORECASE),
    "function": re.compile(r"\bCREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+(\w+)\s*\(", re.IGNORECASE),
    "type": re.compile(r"\bCREATE\s+TYPE\s+(\w+)", re.IGNORECASE),
    "sequence": re.compile(r"\bCREATE\s+SEQUENCE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.IGNORECASE),
}
_TABLE_BODY = re.compile(r"\bCREATE\s+TABLE\s+(\w+)\s*\((.*?)\n\);", re.IGNORECASE | re.DOTALL)
_SERIAL = re.compile(r"^\s*(\w+)\s+(?:big|small)?serial\b", re.IGNORECASE | re.MULTILINE)
_COMMENT = re.compile(r"--[^\n]*")


def owned_objects() -> dict[str, frozenset[str]]:
    """The names of the objects the migrations create (and the runner's own table), by
    kind: what `ledger db roles` may take over. Anything else in the schema belongs to
    someone else. A test checks that a migrated schema holds exactly these."""
    names: dict[str, set[str]] = {kind: set() for kind in _CREATED}
    names["table"].add("ledger_schema_migrations")
    for migration in discover():
        text = _COMMENT.sub("", migration.up)
        for kind, pattern in _CREATED.items():
            names[kind].update(pattern.findall(text))
        for table, body in _TABLE_BODY.findall(text):
            names["sequence"].update(f"{table}_{column}_seq" for column in _SERIAL.findall(body))
    return {kind: frozenset(found) for kind, found in names.items()}
