"""Migrated schemas reused instead of migrated anew: the ``fresh`` and ``settings`` pool.

A migration costs the server about 0.1 s of CPU, and hundreds a run were made. A schema a
test is done with is instead reset and handed to the next one, under a new name: every row
deleted, every sequence back at its start, the tables a migration fills left alone, the
tables a test made itself dropped. It is used only if its ``fingerprint`` (every relation,
column, constraint, index, trigger and its state, function, sequence position, privilege,
owner, comment, and every table's rows) then equals that of a schema just migrated in this
process; else (a test altered, downgraded, granted, rebuilt into new tables, or still holds
a lock) it is dropped and a new one migrated. ``tests/integration/test_schema_pool.py``
holds a reset schema to a freshly migrated one; docs/testing.md says what each step costs.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from ledger import api
from ledger.config import Settings
from tests import citus_support
from tests.schema_sql import _CATALOG, _HOLDS, _PLACEMENT

# the tables a migration fills: never emptied (their rows are compared instead; the store's
# compaction mark, `playback_state`, is set back); and the log's order, which `ledger db
# distribute` sets (a test that switched it is not reused)
FILLED = (
    "ledger_schema_migrations",
    "ledger_event_catalogue",
    "playback_state",
    "ledger_log_order",
)
# a schema still in use (a lock held) is not waited for: it is replaced
_LOCK_TIMEOUT = "500ms"
# the log's trigger that refuses an UPDATE or a DELETE
_LOG_GUARD = "ledger_events_no_update_delete"
# the times a migration writes into them: whether each is set is compared, not its value
_WHEN = {
    "ledger_schema_migrations": "applied_at",
    "ledger_event_catalogue": "superseded_at",
    "ledger_log_order": "changed_at",
}

Fingerprint = frozenset[tuple[str, str, str]]


def fingerprint(conn: psycopg.Connection[Any], schema: str) -> frozenset[tuple[str, str, str]]:
    """What a schema is, its name left out: its catalog entries, where Citus placed its
    tables, and every table's rows (of the times a migration writes, whether each is set)."""
    row = conn.execute("SELECT oid FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    if row is None:
        return frozenset()
    catalog = conn.execute(_CATALOG, {"oid": row[0], "name": schema}).fetchall()
    if _on_citus(conn):
        catalog += conn.execute(_PLACEMENT, {"oid": row[0]}).fetchall()
    tables = sorted(
        name for kind, name, detail in catalog if kind == "relation" and detail[0] == "r"
    )
    rows = conn.execute(_rows(schema, tables)).fetchall() if tables else []
    return _normalised(conn, schema, [*catalog, *rows])


def _rows(schema: str, tables: list[str]) -> sql.Composed:
    """One statement: each table's rows as an md5 of their text, in order."""
    return sql.SQL(" UNION ALL ").join(
        sql.SQL(
            "SELECT 'rows', {name}, md5(coalesce(string_agg({row}, E'\\n' ORDER BY {row}), ''))"
            " FROM {table} t"
        ).format(
            name=sql.Literal(table),
            row=sql.SQL("t::text")
            if table not in _WHEN
            else sql.SQL(
                "(to_jsonb(t) - {time} || jsonb_build_object({time}, t.{column} IS NULL))::text"
            ).format(time=sql.Literal(_WHEN[table]), column=sql.Identifier(_WHEN[table])),
            table=sql.Identifier(schema, table),
        )
        for table in tables
    )


def _normalised(conn: psycopg.Connection[Any], schema: str, entries: list[Any]) -> Fingerprint:
    quoted = sql.Identifier(schema).as_string(conn)
    return frozenset(
        (str(kind), str(name), str(detail).replace(quoted + ".", "").replace(schema, "<schema>"))
        for kind, name, detail in entries
    )


def _name() -> str:
    return f"t_{uuid.uuid4().hex[:16]}"


class SchemaPool:
    """Migrated schemas of one test process: ``take`` one (reset if used before, migrated
    if none is free or the reset did not give a migration's exact state), ``give`` it back
    when its user is done, ``close`` drops them all. ``prepare`` follows each migration
    (``ledger db distribute`` for the suite's distributed runs): its result is part of the
    state a reset schema must equal."""

    def __init__(self, url: str, prepare: Callable[[Settings], None] | None = None) -> None:
        self.url = url
        self.prepare = prepare
        self.free: list[str] = []
        self.ready: list[str] = []  # reset already, as a migration left them
        self.used: list[str] = []  # every schema made (by its current name), for close
        self.pristine: frozenset[tuple[str, str, str]] | None = None
        self.triggers: dict[str, str] = {}  # the log's triggers as a migration leaves them
        self.tables: frozenset[str] = frozenset()  # the tables a migration makes
        self.counted: list[str] = []  # of them, those whose rows the fingerprint counts
        self._citus = False  # whether the server is a Citus coordinator
        self.migrated = 0
        self.reused = 0
        self._conn: psycopg.Connection[Any] | None = None  # the resets' own, kept open
        # on a Citus cluster, schemas are placed, reset and dropped one process at a time
        self.placing = citus_support.placing(url)

    def take(self) -> Settings:
        if self.ready:  # reset when given back (``give``): no hold, no wait
            self.reused += 1
            return Settings(url=self.url, schema=self.ready.pop())
        with self.placing.held():
            return self._take()

    def _take(self) -> Settings:
        while self.free:
            renamed = self._reset(self.free.pop())
            if renamed is not None:
                self.reused += 1
                return Settings(url=self.url, schema=renamed)
        return self._migrate()

    def give(self, schema: str) -> None:
        """On a Citus cluster the schema is reset now if the placing lock is free, so that
        the next ``take`` needs no hold: a test that places in its body holds the lock for
        its whole run (half a minute for a rebuild's), and the other test process then
        waited for it at every take. Else (and on one server, where a hold costs nothing)
        it is reset at the next ``take``."""
        if self.placing.cluster_wide:
            with self.placing.tried() as free:
                if free:
                    try:
                        renamed = self._reset(schema, busy=_StillInUse)
                    except _StillInUse:
                        self.free.append(schema)  # a test's process not yet gone: later
                        return
                    if renamed is not None:
                        self.ready.append(renamed)
                    return
        self.free.append(schema)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        with self.placing.held(), psycopg.connect(self.url, autocommit=True) as conn:
            for schema in self.used:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )
        self.used.clear()
        self.free.clear()
        self.ready.clear()

    def _migrate(self) -> Settings:
        settings = Settings(url=self.url, schema=_name())
        self.used.append(settings.schema)
        api.upgrade(settings)
        if self.prepare is not None:
            self.prepare(settings)
        self.migrated += 1
        if self.pristine is None:
            with psycopg.connect(self.url, autocommit=True) as conn:
                self.pristine = fingerprint(conn, settings.schema)
            kinds = {name: detail[0] for kind, name, detail in self.pristine if kind == "relation"}
            self.tables = frozenset(name for name, kind in kinds.items() if kind in "rp")
            self.counted = sorted(name for name, kind in kinds.items() if kind == "r")
            self.triggers = {
                name.split(".", 1)[1]: detail[0]
                for kind, name, detail in self.pristine
                if kind == "trigger" and name.startswith("ledger_events.")
            }
        return settings

    def _reset(self, schema: str, busy: type[Exception] | None = None) -> str | None:
        """Empties ``schema`` back to a migration's state under a new name (returned); None
        (and the schema dropped) when it cannot be, or is then not exactly that. The new
        name is what keeps a test from ever seeing another's rows: whatever still holds
        the old one (a process the last test left running, a pool it did not close, a
        prepared statement) finds no such schema instead of the next test's tables. With
        ``busy``, a schema still locked by another session (the reset's ``LOCK TABLE`` timed
        out: nothing changed) raises it instead of being dropped: a reset right when the
        test ends (``give``) may meet a process it killed not yet gone, and the take's
        reset, later, finds it gone (two of ``test_cli_exits``' schemas were migrated anew
        so, i28l)."""
        renamed = _name()
        self.used.append(renamed)
        for _ in range(2):  # once more on a new connection if a test terminated this one
            try:
                same = self._emptied(self._connection(), schema, renamed) == self.pristine
            except psycopg.errors.LockNotAvailable:
                if busy is None:
                    same = False
                else:
                    self.used.remove(renamed)
                    raise busy() from None
            except (psycopg.Error, _NotReusable):
                same = False
            if same or self._conn is None or not self._conn.broken:
                break
        if same:
            self.used.remove(schema)
            return renamed
        self._drop(schema)
        self._drop(renamed)
        return None

    def _connection(self) -> psycopg.Connection[Any]:
        """The resets' connection (autocommit: nothing is held between tests), kept open: a
        session per test cost the server its start and a cold catalogue cache (about 4 ms of
        its CPU a reset, docs/testing.md). A lost one is replaced."""
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.url, autocommit=True)
            self._citus = _on_citus(self._conn)
        return self._conn

    def _emptied(self, conn: psycopg.Connection[Any], schema: str, renamed: str) -> Fingerprint:
        """Every row a test wrote deleted (a twentieth of a TRUNCATE's cost, which makes new
        files for every table and index), every sequence back at its start, the tables a
        test made dropped, the schema renamed, then its fingerprint: in two round trips
        (what the schema holds, then the rest pipelined), not fifty (docs/testing.md). The
        log's guard is disabled for the DELETE, as the owner, then put back as the
        migration left it; foreign keys and the projections' triggers are not fired."""
        held = conn.execute(_HOLDS, {"old": schema, "new": renamed}).fetchone()
        if held is None:
            raise _NotReusable(f"{schema} is gone")
        oid, tables, keys, pinned, states = held
        # the log's triggers a test left in another state (`ENABLE TRIGGER ALL` after a
        # tampering: `O` where the migration's are `A`), put back as the migration left them
        switched = [name for name, now in states if self.triggers.get(name, now) != now]
        # the tables a test made itself (a consumer's, a day's partition of the playback
        # store): dropped; whatever they took with them or left is compared below
        made = [table for table in tables if table not in self.tables]
        drop_made = sql.SQL("DROP TABLE {} CASCADE").format(
            sql.SQL(", ").join(sql.Identifier(schema, table) for table in made)
        )
        log = sql.Identifier(schema, "ledger_events")
        guard = sql.Identifier(_LOG_GUARD)
        state = {"A": "ENABLE ALWAYS", "O": "ENABLE", "R": "ENABLE REPLICA", "D": "DISABLE"}
        with conn.pipeline():
            with conn.transaction():
                timeout = sql.SQL("SET LOCAL lock_timeout = {}")
                conn.execute(timeout.format(sql.Literal(_LOCK_TIMEOUT)))
                # a reset lost with the server is redone: no wait for the WAL's flush (3-6 ms)
                conn.execute("SET LOCAL synchronous_commit = off")
                # on a Citus coordinator: the workers see neither the role above (their
                # foreign keys fire: hence the referencing tables first) nor a reference
                # table written after a distributed one in parallel in one transaction
                # (hence one connection per worker); and a distributed log's guard is
                # switched off and on only so (`ledger db distribute`); elsewhere unused
                conn.execute("SET LOCAL citus.multi_shard_modify_mode = 'sequential'")
                conn.execute("SET LOCAL citus.enable_unsafe_triggers = on")
                # no other session may hold any lock on it (a reader's too): that one is in use
                conn.execute(
                    sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                        sql.SQL(", ").join(sql.Identifier(schema, table) for table in tables)
                    )
                )
                if made:
                    # before the role below: under session_replication_role = replica a
                    # Citus coordinator does not carry a DROP to the workers, whose shell
                    # tables then outlived it (a later test's CREATE met "already exists")
                    conn.execute(drop_made)
                conn.execute("SET LOCAL session_replication_role = replica")
                conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(log, guard))
                emptied = [t for t in tables if t in self.tables and t not in FILLED]
                for table in _referencing_first(keys, emptied):
                    conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(schema, table)))
                if "playback_state" in tables:
                    # a compaction's mark, back as a migration leaves it (a compacted schema
                    # was dropped and migrated anew: 14 of 25 examples of a property)
                    conn.execute(
                        sql.SQL(
                            "UPDATE {} SET compacted_before = NULL, compacted_at = NULL"
                        ).format(sql.Identifier(schema, "playback_state"))
                    )
                for name in [_LOG_GUARD, *(name for name in switched if name != _LOG_GUARD)]:
                    conn.execute(
                        sql.SQL("ALTER TABLE {} {} TRIGGER {}").format(
                            log, sql.SQL(state[self.triggers.get(name, "A")]), sql.Identifier(name)
                        )
                    )
                conn.execute(
                    "SELECT setval(format('%%I.%%I', schemaname, sequencename), start_value, false)"
                    " FROM pg_sequences WHERE schemaname = %s",
                    (schema,),
                )
                self._rename(conn, schema, renamed, pinned)
            # its fingerprint (its tables are the migration's, or its catalog differs)
            catalog = conn.execute(_CATALOG, {"oid": oid, "name": renamed})
            placed = conn.execute(_PLACEMENT, {"oid": oid}) if self._citus else None
            rows = conn.execute(_rows(renamed, self.counted))
            entries = [*catalog.fetchall(), *(placed.fetchall() if placed else [])]
            return _normalised(conn, renamed, [*entries, *rows.fetchall()])

    @staticmethod
    def _rename(
        conn: psycopg.Connection[Any], schema: str, renamed: str, pinned: list[list[str]]
    ) -> None:
        """The schema renamed, and the functions that pin their ``search_path`` to it (``SET
        search_path FROM CURRENT`` in the migrations) pinned to the new name."""
        conn.execute(
            sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                sql.Identifier(schema), sql.Identifier(renamed)
            )
        )
        for routine, path in pinned:
            # the path as a constant (``TO``), the value ``FROM CURRENT`` would store: a Citus
            # coordinator refuses ``FROM CURRENT`` on the functions it propagates to workers
            names = [
                name[1:-1].replace('""', '"') if name.startswith('"') else name
                for name in (part.strip() for part in path.split(","))
            ]
            # the routine's signature as PostgreSQL prints it (quoted, qualified), renamed
            paths = sql.SQL(", ").join(map(sql.Identifier, names))
            conn.execute(
                sql.SQL("ALTER ROUTINE {} SET search_path TO {}").format(sql.SQL(routine), paths)
            )

    def _drop(self, schema: str) -> None:
        try:  # on the resets' connection: a new session per drop cost its start
            conn, timeout = self._connection(), sql.SQL("SET LOCAL lock_timeout = {}")
            with self.placing.held(), conn.transaction():
                conn.execute(timeout.format(sql.Literal(_LOCK_TIMEOUT)))
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )
            if schema in self.used:
                self.used.remove(schema)
        except psycopg.Error:
            pass  # still in use: close drops it at the end


class _NotReusable(Exception):
    """A schema the pool drops rather than resets."""


class _StillInUse(Exception):
    """A schema another session still holds a lock on: reset later, not dropped."""


def _on_citus(conn: psycopg.Connection[Any]) -> bool:
    found = conn.execute("SELECT to_regclass('pg_catalog.pg_dist_partition')").fetchone()
    return found is not None and found[0] is not None


def _referencing_first(keys: list[list[str]], tables: list[str]) -> list[str]:
    """``tables`` in an order that empties a table before any table its foreign keys
    reference (on a Citus worker a key's rule still fires: a RESTRICT would refuse)."""
    ordered: list[str] = []
    left = list(tables)
    while left:
        # a table no table still to empty references (the first of the rest on a cycle)
        free = [t for t in left if not any(r == t and c in left for c, r in keys)] or left[:1]
        ordered.extend(free)
        left = [t for t in left if t not in free]
    return ordered
