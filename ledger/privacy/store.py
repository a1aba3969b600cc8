"""``ledger_subjects`` in SQL (migration 0012): who each subject is, read by the service
and the projections' upkeep, written only with the log's events (``LedgerRecorder``)."""

from __future__ import annotations

from collections.abc import Collection
from functools import lru_cache
from typing import Any

from psycopg import Connection, sql
from psycopg.rows import tuple_row

from ledger.privacy.subjects import SubjectAdded, SubjectChange

TABLE = "ledger_subjects"


@lru_cache(maxsize=16)
def _insert_sql(schema: str) -> sql.Composed:
    # no ON CONFLICT: two registrations of one id at once draw two subjects, and the
    # primary key fails the second append, which is decided again (a duplicate)
    return sql.SQL("INSERT INTO {} (user_id, subject) VALUES (%s, %s)").format(
        sql.Identifier(schema, TABLE)
    )


@lru_cache(maxsize=16)
def _delete_sql(schema: str) -> sql.Composed:
    # the person's row of ``ledger_subjects`` (none for a person registered before
    # subjects, erased by id), and everything the playback store (migration 0011) retains
    # of them, which names them by id: their heartbeats, the idempotency keys those
    # heartbeats used (retained, or compacted: migration 0016 says whose), the keys their
    # heartbeats claimed on the distributed store (migration 0035 says whose: a claim
    # whose group never committed, its process killed, is named by no heartbeat), and
    # their compacted rows (docs/privacy.md). The claims by person a third arm of the
    # keys' IN list, not an OR beside it: an OR with the list's subquery is a scan of every
    # key at each erasure, the arm an index probe (``playback_keys_user``)
    return sql.SQL(
        "WITH gone AS (DELETE FROM {subjects} WHERE subject = %(subject)s), "
        "heartbeats AS (DELETE FROM {hb} WHERE user_id = %(user_id)s "
        "RETURNING idempotency_key), "
        "compacted AS (DELETE FROM {compacted} WHERE user_id = %(user_id)s "
        "RETURNING idempotency_key), "
        "keys AS (DELETE FROM {keys} WHERE idempotency_key IN "
        "(SELECT idempotency_key FROM heartbeats WHERE idempotency_key IS NOT NULL "
        "UNION ALL SELECT idempotency_key FROM compacted "
        "UNION ALL SELECT idempotency_key FROM {keys} WHERE user_id = %(user_id)s)) "
        "DELETE FROM {base} WHERE user_id = %(user_id)s"
    ).format(
        subjects=sql.Identifier(schema, TABLE),
        hb=sql.Identifier(schema, "playback_heartbeats"),
        compacted=sql.Identifier(schema, "playback_compacted_keys"),
        keys=sql.Identifier(schema, "playback_keys"),
        base=sql.Identifier(schema, "playback_base"),
    )


ERASING_LOCK = sql.SQL("SELECT pg_advisory_xact_lock(%s)")
"""Taken first by an append that erases someone: the playback store's writers hold it while
they record (``ledger.playback.store.ADVISORY_LOCK``), so the erasure's DELETE, a later
statement, sees every heartbeat committed before it, and no writer waits on a table lock the
erasure holds while the erasure waits on it."""


def subject_statement(
    schema: str, change: SubjectChange
) -> tuple[sql.Composed, list[Any] | dict[str, Any]]:
    """The statement that writes ``change``, in the append's transaction."""
    if isinstance(change, SubjectAdded):
        return _insert_sql(schema), [change.user_id, change.subject]
    return _delete_sql(schema), {"subject": change.subject, "user_id": change.user_id}


def subjects_of(conn: Connection[Any], schema: str, user_ids: Collection[str]) -> dict[str, str]:
    query = sql.SQL("SELECT user_id, subject FROM {} WHERE user_id = ANY(%s)").format(
        sql.Identifier(schema, TABLE)
    )
    with conn.cursor(row_factory=tuple_row) as cursor:
        return dict(cursor.execute(query, (list(user_ids),), prepare=True).fetchall())


def users_of(conn: Connection[Any], schema: str, subjects: Collection[str]) -> dict[str, str]:
    query = sql.SQL("SELECT subject, user_id FROM {} WHERE subject = ANY(%s)").format(
        sql.Identifier(schema, TABLE)
    )
    with conn.cursor(row_factory=tuple_row) as cursor:
        return dict(cursor.execute(query, (list(subjects),), prepare=True).fetchall())


def all_names(conn: Connection[Any], schema: str) -> dict[str, str]:
    """Every subject to its id: what a rebuild or a verify resolves the log's people by
    (none before migration 0012)."""
    exists = conn.execute("SELECT to_regclass(%s)", (f'"{schema}".{TABLE}',)).fetchone()
    if (
        exists is None
        or (exists[0] if not isinstance(exists, dict) else exists["to_regclass"]) is None
    ):
        return {}
    query = sql.SQL("SELECT subject, user_id FROM {}").format(sql.Identifier(schema, TABLE))
    with conn.cursor(row_factory=tuple_row) as cursor:
        return dict(cursor.execute(query).fetchall())


def clear_identities(conn: Connection[Any], schema: str) -> int:
    """How many events of the log name a person by their id, in the clear: events written
    before subjects (docs/privacy.md, "Older events"). A full read of the log, as the
    chain's walk is."""
    query = sql.SQL(
        # the state decoded in a subquery of the log (a LATERAL one without FROM is refused
        # by Citus: "Subqueries without a FROM clause can only contain immutable functions")
        "SELECT count(*) FROM (SELECT convert_from(e.state, 'UTF8')::jsonb AS s FROM {} e) j"
        " WHERE EXISTS (SELECT 1 FROM unnest(ARRAY['user_id', 'customer_id', 'creator_id']) f"
        " WHERE jsonb_typeof(j.s -> f) = 'string' AND left(j.s ->> f, 8) <> 'subject:')"
    ).format(sql.Identifier(schema, "ledger_events"))
    with conn.cursor(row_factory=tuple_row) as cursor:
        row = cursor.execute(query).fetchone()
    return int(row[0]) if row is not None else 0
