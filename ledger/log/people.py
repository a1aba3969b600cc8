"""People as facts of the ``users`` table, for a decision on the distributed log (issue 28).

On Citus a customer's ``User`` aggregate lives in the platform's chain, on one worker, so a
purchase that read it (and checked its version again at append) stopped whenever that
worker did. What a purchase needs of its customer is one fact: registered and not deleted.
``users`` holds it (a row from the registration until the deletion), and is a reference
table with a copy on every node, the coordinator's included; ``ledger_subjects`` (the
subject of each person) is the coordinator's. One statement reads both there, in one
snapshot: a registration writes its subject and its ``users`` row in one transaction, so
the two never disagree in what it sees (two statements could see the subject without the
row, and answer ``was deleted`` for someone just registered).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from psycopg import Connection, sql
from psycopg.rows import tuple_row


@dataclass(frozen=True, slots=True)
class Person:
    """What ``users`` and ``ledger_subjects`` say of an id or a subject: the subject
    (``None``: none, a person registered before subjects, an erased one, or no one), and
    whether the person's ``users`` row exists (registered, not deleted)."""

    subject: str | None
    live: bool


def people_sql(schema: str) -> sql.Composed:
    """Each value given, an id or a subject, with its subject and its ``users`` row.

    Two joins of ``ledger_subjects`` (by id, by subject), each on its unique index; the
    ``users`` row is the person's id's, or the value's itself (an id without a subject)."""
    return sql.SQL(
        "SELECT g.given, coalesce(a.subject, b.subject), u.id IS NOT NULL"
        " FROM unnest(%s::text[]) AS g(given)"
        " LEFT JOIN {subjects} AS a ON a.user_id = g.given"
        " LEFT JOIN {subjects} AS b ON b.subject = g.given"
        " LEFT JOIN {users} AS u ON u.id = coalesce(a.user_id, b.user_id, g.given)"
    ).format(
        subjects=sql.Identifier(schema, "ledger_subjects"),
        users=sql.Identifier(schema, "users"),
    )


def people_of(conn: Connection[Any], schema: str, values: Collection[str]) -> dict[str, Person]:
    """``Person`` of each of these ids or subjects, in one statement."""
    with conn.cursor(row_factory=tuple_row) as cursor:
        rows = cursor.execute(people_sql(schema), (list(values),), prepare=True).fetchall()
    return {given: Person(subject, bool(live)) for given, subject, live in rows}
