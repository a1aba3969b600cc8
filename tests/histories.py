"""A demo history appended once per test process, then copied row for row into the next
tests' schemas.

About forty tests (the audit's verify, the rebuild, the operator's safety, the stale
projections, verify and status, the event catalogue) start from the same few demo
histories: 150 to 900 lines, each decided, answered and projected by the ledger, 0.5-1.5 s
of a test's setup quiet (``--durations``; test_audit_verify.py's nineteen tests built the
same history nineteen times). What those tests test is what the ledger does *with* the
history (verify it, rebuild it, tamper with it), not the appends themselves (the decision
tests, the properties and the golden logs do). So the first test of a process that asks
for a history appends it as before; its rows are then copied into a schema this process
keeps (the template), and every later test that asks for the same lines on a schema as a
migration left it gets the template's rows copied into its own schema instead, with the
answers the appends gave.

A copy is used only if it is exact: the schema's ``fingerprint`` (tests/schemas.py: every
catalogue entry, every table's rows, every sequence's position) equals the template's,
which equals the schema the history was appended to. A schema that is not as a migration
left it (a test that appended before asking for the history) gets the appends themselves,
as does a Citus coordinator (whose distributed tables this copy does not handle). What a
copied log holds is what the appends wrote, hash chain and positions included; only the
ledger's in-memory aggregate cache starts cold, as after a restart (it is read through).
"""

from __future__ import annotations

import atexit
import hashlib
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from ledger import api
from ledger.commands.results import Result
from ledger.config import Settings
from ledger.service import Ledger
from tests.schemas import fingerprint

Answers = list[tuple[int, Result]]
Fingerprint = frozenset[tuple[str, str, str]]

# the trigger states of pg_trigger.tgenabled, as ALTER TABLE sets them
_STATE = {"A": "ENABLE ALWAYS", "O": "ENABLE", "R": "ENABLE REPLICA", "D": "DISABLE"}


class _Template:
    def __init__(self, schema: str, pristine: Fingerprint) -> None:
        self.schema = schema
        self.pristine = pristine  # the template's fingerprint just migrated, before the rows
        self.full: Fingerprint | None = None  # its fingerprint with the history's rows
        self.answers: Answers = []


_TEMPLATES: dict[tuple[str, str], _Template] = {}  # (database url, lines' digest)


def append_lines(ledger: Ledger, lines: Sequence[bytes], batch: int) -> Answers:
    """``api.append_lines(ledger, lines, batch=batch)`` as a list, on ``ledger``'s schema,
    its rows copied from this process's template of these lines when that is exact."""
    settings = ledger.settings
    digest = hashlib.sha256(b"\n".join(lines) + f"\n{batch}".encode()).hexdigest()
    key = (settings.url, digest)
    with psycopg.connect(settings.url, autocommit=True) as conn:
        if _on_citus(conn):
            return list(api.append_lines(ledger, lines, batch=batch))
        template = _TEMPLATES.get(key)
        if template is None:
            template = _TEMPLATES[key] = _new_template(settings.url)
        if fingerprint(conn, settings.schema) != template.pristine:
            # not as a migration left it: the appends themselves
            return list(api.append_lines(ledger, lines, batch=batch))
        if template.full is None:
            answers = list(api.append_lines(ledger, lines, batch=batch))
            _copy(conn, settings.schema, template.schema)
            full = fingerprint(conn, template.schema)
            assert full == fingerprint(conn, settings.schema), "the template is not a copy"
            template.full, template.answers = full, answers
            return answers
        _copy(conn, template.schema, settings.schema)
        assert fingerprint(conn, settings.schema) == template.full, (
            f"the copy of the history into {settings.schema} is not exact"
        )
        return list(template.answers)


def _new_template(url: str) -> _Template:
    schema = f"h_{uuid.uuid4().hex[:16]}"
    _MADE.append((url, schema))
    api.upgrade(Settings(url=url, schema=schema))
    with psycopg.connect(url, autocommit=True) as conn:
        return _Template(schema, fingerprint(conn, schema))


def _copy(conn: psycopg.Connection[Any], source: str, target: str) -> None:
    """Every row of ``source`` into ``target`` (both migrated alike; ``target``'s rows
    replaced), its playback partitions made by the migrations' own function, its sequences
    where ``source``'s are, the log's triggers off for the copy (the hash chain is copied,
    not computed again) and then as they were in ``source``. Foreign keys and the other
    triggers do not fire (``session_replication_role``): the rows are already consistent."""
    tables = [
        str(row[0])
        for row in conn.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = %s::regnamespace"
            " AND relkind IN ('r', 'p') AND NOT relispartition ORDER BY relname",
            (source,),
        ).fetchall()
    ]
    days = [
        row[0]
        for row in conn.execute(
            "SELECT to_date(substr(c.relname, 22), 'YYYYMMDD') FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent"
            " WHERE c.relnamespace = %s::regnamespace AND p.relname = 'playback_heartbeats'"
            " AND c.relname LIKE 'playback\\_heartbeats\\_p%%' ORDER BY 1",
            (source,),
        ).fetchall()
    ]
    triggers = conn.execute(
        "SELECT t.tgname, t.tgenabled::text FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " WHERE c.relnamespace = %s::regnamespace AND c.relname = 'ledger_events'"
        " AND NOT t.tgisinternal ORDER BY 1",
        (source,),
    ).fetchall()
    sequences = conn.execute(
        "SELECT sequencename FROM pg_sequences WHERE schemaname = %s ORDER BY 1", (source,)
    ).fetchall()
    log = sql.Identifier(target, "ledger_events")
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        for day in days:
            conn.execute(
                sql.SQL("SELECT {}(%s)").format(
                    sql.Identifier(target, "playback_create_partition")
                ),
                (day,),
            )
        conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(log))
        with conn.pipeline():  # one round trip, not two per table
            for table in tables:
                conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(target, table)))
                conn.execute(
                    sql.SQL("INSERT INTO {} SELECT * FROM {}").format(
                        sql.Identifier(target, table), sql.Identifier(source, table)
                    )
                )
            for name, state in triggers:
                conn.execute(
                    sql.SQL("ALTER TABLE {} {} TRIGGER {}").format(
                        log, sql.SQL(_STATE[state]), sql.Identifier(name)
                    )
                )
            for (sequence,) in sequences:
                conn.execute(
                    sql.SQL("SELECT setval(%s::regclass, last_value, is_called) FROM {}").format(
                        sql.Identifier(source, sequence)
                    ),
                    (sql.Identifier(target, sequence).as_string(conn),),
                )


def _on_citus(conn: psycopg.Connection[Any]) -> bool:
    found = conn.execute("SELECT to_regclass('pg_catalog.pg_dist_partition')").fetchone()
    return found is not None and found[0] is not None


_MADE: list[tuple[str, str]] = []  # the templates this process made, dropped at its exit


@atexit.register
def _drop_templates() -> None:
    for url, schema in _MADE:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )
        except psycopg.Error:
            pass  # the server is gone: nothing left to drop on it
