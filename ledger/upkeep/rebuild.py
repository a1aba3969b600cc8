"""``ledger projections rebuild``: replay the log into shadow tables, then swap them in.

Everything happens in one transaction, so a rebuild killed at any moment (even by
SIGKILL) leaves the live tables untouched and nothing behind that a rerun minds:

0. take the lock migrations take (``ledger.database.migrations.lock``: a rebuild and an
   upgrade or downgrade of the same schema wait for each other) and check that the
   projection migrations are all applied (a downgrade that won the race leaves
   nothing to rebuild into);
1. build the shadow tables from the log up to the head (``ledger.upkeep.shadow``) in a
   schema of a fresh name, created in this transaction, without any lock on the live
   tables — readers and appenders go on;
2. catch up the events appended meanwhile, still without locks;
3. the switch: take the log's EXCLUSIVE lock (the lock every append takes first, so
   appends wait, readers do not), apply the last few events, lock the live tables,
   move them out (to another fresh schema) and the shadow tables in, drop the old
   tables by name (never with CASCADE: an object of someone else's that depends on
   them stops the rebuild instead of vanishing), clear the tables' stale marks, commit.
   Readers see the old tables, complete, until the commit, and the new ones after it.

The only schemas it drops are the two it created in this transaction.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import psycopg
from psycopg import sql

from ledger.config import Settings
from ledger.database import distribution, migrations
from ledger.database.connections import connect
from ledger.errors import ConfigurationError
from ledger.playback import fold as playback
from ledger.privacy.store import all_names
from ledger.privacy.subjects import resolve
from ledger.upkeep import owners, shadow, source
from projections import freshness
from projections.inline import apply_changes
from projections.progress import Progress
from projections.registry import TABLES, changes_for

CATCH_UP_ROUNDS = 5
SWITCH_TAIL = 1_000  # catch up without locks until fewer events than this remain
SWITCH_ATTEMPTS = 30


@dataclass(frozen=True)
class RebuildReport:
    tables: tuple[str, ...]
    position: int
    events: int
    rows: dict[str, int]
    seconds: float
    switch_lock_ms: float
    spills: int = 0  # times the fold wrote its rows out to keep memory bounded


def selected(only: Sequence[str] | None) -> tuple[str, ...]:
    if not only:
        return TABLES
    unknown = [name for name in only if name not in TABLES]
    if unknown:
        raise ConfigurationError(
            f"unknown projection {', '.join(unknown)}; projections: {', '.join(TABLES)}"
        )
    return tuple(t for t in TABLES if t in only)


def apply_tail(
    conn: psycopg.Connection[Any],
    live: str,
    target: str,
    tables: tuple[str, ...],
    after: int,
    upto: int,
) -> int:
    """Applies the events in (after, upto] to the tables in ``target``; returns their count."""
    count = 0
    only = frozenset(tables)
    names = all_names(conn, live)
    for batch in source.events(conn, live, after, upto):
        changes = resolve(changes_for((e for _, e in batch), only), names)
        changes = owners.fill(conn, changes, (target, live))
        with conn.cursor() as cursor:
            apply_changes(cursor, target, changes)
        count += len(batch)
    return count


def apply_chains(
    conn: psycopg.Connection[Any],
    live: str,
    target: str,
    tables: tuple[str, ...],
    reader: source.ChainReader,
) -> int:
    """Applies every event of every chain after ``reader``'s cursor to the tables in
    ``target``, advancing it (a log in the ``organization`` order); returns their count."""
    count = 0
    only = frozenset(tables)
    names = all_names(conn, live)
    for batch in reader.events(conn, live):
        changes = resolve(changes_for((e for _, e in batch), only), names)
        changes = owners.fill(conn, changes, (target, live))
        with conn.cursor() as cursor:
            apply_changes(cursor, target, changes)
        count += len(batch)
    return count


def _incoming_foreign_keys(
    conn: psycopg.Connection[Any], live: str, tables: tuple[str, ...]
) -> list[tuple[str, str, str]]:
    """Foreign keys of live tables not rebuilt that reference rebuilt ones: they must be
    re-pointed at the new tables (as (table, name, definition) with search_path live)."""
    rows = conn.execute(
        "SELECT src.relname, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
        "JOIN pg_class src ON src.oid = c.conrelid JOIN pg_class dst ON dst.oid = c.confrelid "
        "JOIN pg_namespace n ON n.oid = dst.relnamespace "
        "WHERE c.contype = 'f' AND n.nspname = %s AND dst.relname = ANY(%s) "
        "AND NOT (src.relname = ANY(%s)) AND src.relnamespace = dst.relnamespace",
        (live, list(tables), list(tables)),
    ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def _copy_grants(conn: psycopg.Connection[Any], live: str, target: str, table: str) -> None:
    rows = conn.execute(
        "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE a.grantee::regrole::text END, "
        "a.privilege_type FROM pg_class t JOIN pg_namespace n ON n.oid = t.relnamespace, "
        "aclexplode(t.relacl) a WHERE n.nspname = %s AND t.relname = %s "
        "AND a.grantee <> t.relowner",
        (live, table),
    ).fetchall()
    for grantee, privilege in rows:
        conn.execute(
            sql.SQL("GRANT {} ON {} TO {}").format(
                sql.SQL(privilege),
                sql.Identifier(target, table),
                sql.SQL("PUBLIC") if grantee is None else sql.Identifier(grantee.strip('"')),
            )
        )


def _row_security(
    conn: psycopg.Connection[Any], live: str, tables: list[str]
) -> list[sql.Composed]:
    """The statements that give the new tables the live tables' row-level security:
    the ENABLE flag and every policy (run after the swap, with search_path live)."""
    statements: list[sql.Composed] = []
    for table, enabled, forced in conn.execute(
        "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = ANY(%s)",
        (live, tables),
    ).fetchall():
        target = sql.Identifier(live, table)
        if enabled:
            statements.append(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(target))
        if forced:
            statements.append(sql.SQL("ALTER TABLE {} FORCE ROW LEVEL SECURITY").format(target))
    for table, name, permissive, roles, command, using, check in conn.execute(
        "SELECT tablename, policyname, permissive, roles, cmd, qual, with_check FROM pg_policies"
        " WHERE schemaname = %s AND tablename = ANY(%s)",
        (live, tables),
    ).fetchall():
        parts: list[sql.Composable] = [
            sql.SQL("CREATE POLICY {} ON {} AS {} FOR {} TO {}").format(
                sql.Identifier(name),
                sql.Identifier(live, table),
                sql.SQL(permissive),
                sql.SQL(command),
                sql.SQL(", ").join(
                    sql.SQL("PUBLIC") if r == "public" else sql.Identifier(r) for r in roles
                ),
            )
        ]
        if using is not None:
            parts.append(sql.SQL(" USING ({})").format(shadow._trusted(using)))
        if check is not None:
            parts.append(sql.SQL(" WITH CHECK ({})").format(shadow._trusted(check)))
        statements.append(sql.Composed(parts))
    return statements


def _switch(
    conn: psycopg.Connection[Any],
    live: str,
    shadow_schema: str,
    tables: tuple[str, ...],
    after: int,
    reader: source.ChainReader | None = None,
    deferred: Sequence[tuple[str, str, str]] = (),
) -> int:
    """Swaps the shadow tables in; returns the position they reflect. With ``reader``
    the last events are those of every chain after its cursor (under the lock, none is
    in flight: each chain is complete)."""
    conn.execute("SET LOCAL lock_timeout = '2s'")
    conn.execute(
        sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.Identifier(live, "ledger_events"))
    )
    if reader is None:
        position = source.head(conn, live)
        apply_tail(conn, live, shadow_schema, tables, after, position)
    else:
        apply_chains(conn, live, shadow_schema, tables, reader)
        position = source.head(conn, live)  # under the lock: every chain is complete
    present = [t for t in tables if migrations.has_table(conn, live, t)]
    for table in present:
        conn.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(live, table))
        )
    # heartbeats recorded since the build: the live tables are locked, so none is missed
    playback.overlay(conn, live, shadow_schema, tables)
    incoming = _incoming_foreign_keys(conn, live, tables)
    for table, name, _ in incoming:
        conn.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.Identifier(live, table), sql.Identifier(name)
            )
        )
    security = _row_security(conn, live, present)
    placed = distribution.places(conn, live)
    retired = shadow.create_schema(conn, live, "old")
    for table in present:
        _copy_grants(conn, live, shadow_schema, table)
        conn.execute(
            sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                sql.Identifier(live, table), sql.Identifier(retired)
            )
        )
    for table in tables:
        conn.execute(
            sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                sql.Identifier(shadow_schema, table), sql.Identifier(live)
            )
        )
    conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(live)))
    _drop_retired(conn, retired, present)
    # on Citus, each new table goes where the old one was, before the foreign keys that
    # point at it come back (Citus takes none from a distributed table to a local one)
    wanted = {t: p for t, p in placed.items() if t in tables}
    if any(p != "local" for p in placed.values()):  # a dropped table comes back in its place
        wanted.update({t: distribution.layout_place(t) for t in wanted if t not in present})
    distribution.restore(conn, live, wanted)
    for table, name, definition in [*deferred, *incoming]:
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                sql.Identifier(live, table), sql.Identifier(name), shadow._trusted(definition)
            )
        )
    for statement in security:
        conn.execute(statement)
    # the shadow schema was created by this transaction: what is left in it (the
    # migrations' other objects) is this rebuild's own
    conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(shadow_schema)))
    freshness.clear(conn, live, tables)
    return position


def _drop_retired(conn: psycopg.Connection[Any], retired: str, tables: list[str]) -> None:
    """Drops the old tables, all in one statement (their foreign keys to each other go
    with them) and without CASCADE, then their schema."""
    if tables:
        try:
            with conn.transaction():
                conn.execute(
                    sql.SQL("DROP TABLE {}").format(
                        sql.SQL(", ").join(sql.Identifier(retired, t) for t in tables)
                    )
                )
        except psycopg.errors.DependentObjectsStillExist as error:
            detail = (error.diag.message_detail or "").replace("\n", "; ")
            raise ConfigurationError(
                f"the rebuild cannot replace the live tables: objects that are not the "
                f"ledger's depend on them ({detail}); drop them or rebuild the other tables "
                "with --only (the live tables are unchanged)"
            ) from None
    conn.execute(sql.SQL("DROP SCHEMA {}").format(sql.Identifier(retired)))


def _record(
    conn: psycopg.Connection[Any],
    live: str,
    tables: tuple[str, ...],
    position: int,
    seconds: float,
    lock_ms: float,
) -> None:
    if not migrations.has_table(conn, live, "ledger_projection_state"):
        return
    query = sql.SQL(
        "INSERT INTO {} (name, rebuilt_position, rebuilt_at, rebuild_seconds, switch_lock_ms) "
        "VALUES (%s, %s, now(), %s, %s) ON CONFLICT (name) DO UPDATE SET "
        "rebuilt_position = EXCLUDED.rebuilt_position, rebuilt_at = EXCLUDED.rebuilt_at, "
        "rebuild_seconds = EXCLUDED.rebuild_seconds, switch_lock_ms = EXCLUDED.switch_lock_ms"
    ).format(sql.Identifier(live, "ledger_projection_state"))
    for table in tables:
        conn.execute(query, (table, position, seconds, lock_ms))


def _lock(conn: psycopg.Connection[Any], live: str, stream: TextIO | None) -> None:
    if not migrations.try_lock(conn, live):
        out = stream if stream is not None else sys.stderr
        out.write("rebuild: waiting for another migration or rebuild of this schema\n")
        out.flush()
        migrations.lock(conn, live)


def _ready(conn: psycopg.Connection[Any], live: str, tables: tuple[str, ...]) -> tuple[str, ...]:
    """The tables to rebuild: ``tables`` and any other marked stale. Refuses a schema
    whose migrations are not all applied."""
    migrations.require_log(conn, live)
    missing = [m.label for m in migrations.pending(conn, live)]
    if missing:
        raise ConfigurationError(
            f"the database is not fully migrated (pending: {', '.join(missing)}): "
            "run `ledger db upgrade` (it fills the tables it creates)"
        )
    stale = freshness.stale(conn, live)
    return tuple(t for t in TABLES if t in tables or t in stale)


def rebuild(
    settings: Settings, only: Sequence[str] | None = None, stream: TextIO | None = None
) -> RebuildReport:
    tables = selected(only)
    shadow.row_budget()  # a bad LEDGER_REBUILD_ROW_BUDGET is refused before any work
    live = settings.schema
    started = time.monotonic()
    with connect(settings) as conn:
        source.sequential_on_citus(conn, live)
        _lock(conn, live, stream)
        tables = _ready(conn, live, tables)
        total = source.head(conn, live)
        progress = Progress(source.count(conn, live, 0, total), "rebuild", stream)
        shadow_schema = shadow.create_schema(conn, live, "new")
        # in the organization order (always on a log placed on Citus) the catch-up and the
        # switch read each chain after its own position: notification ids are no order there
        reader = source.ChainReader() if source.by_chain(conn, live) else None
        built = shadow.build(
            conn, live, shadow_schema, tables, total, progress.advance, chains=reader
        )
        progress.finish()
        position = built.position
        for _ in range(CATCH_UP_ROUNDS):
            if reader is not None:
                if apply_chains(conn, live, shadow_schema, tables, reader) < SWITCH_TAIL:
                    break
                continue
            newest = source.head(conn, live)
            if newest - position < SWITCH_TAIL:
                break
            apply_tail(conn, live, shadow_schema, tables, position, newest)
            position = newest
        conn.execute("SAVEPOINT ledger_switch")
        for attempt in range(SWITCH_ATTEMPTS):
            switch_started = time.monotonic()
            try:
                saved = None if reader is None else (reader.cursor, reader.head)
                position = _switch(
                    conn, live, shadow_schema, tables, position, reader, built.deferred
                )
                break
            except psycopg.errors.LockNotAvailable:
                conn.execute("ROLLBACK TO SAVEPOINT ledger_switch")
                if reader is not None and saved is not None:  # what the switch read is undone
                    reader.cursor, reader.head = saved
                if attempt == SWITCH_ATTEMPTS - 1:
                    raise ConfigurationError(
                        "could not take the locks for the switch (long-running readers?)"
                    ) from None
                time.sleep(0.5)
        lock_ms = (time.monotonic() - switch_started) * 1000
        seconds = time.monotonic() - started
        _record(conn, live, tables, position, seconds, lock_ms)
        rows = _counted(conn, live, tables)
        conn.commit()
    return RebuildReport(tables, position, built.events, rows, seconds, lock_ms, built.spills)


def _counted(conn: psycopg.Connection[Any], live: str, tables: tuple[str, ...]) -> dict[str, int]:
    """The rows each table holds as switched in: the fold's own count misses the playback
    store's rows, which are folded in by SQL after it (``ledger.playback.fold.overlay``)."""
    counted: dict[str, int] = {}
    for table in tables:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(live, table))
        ).fetchone()
        counted[table] = int(row[0]) if row else 0
    return counted
