"""The events that still name a person in the clear (docs/privacy.md, "Older events").

Events written before subjects (migration 0012) name people by their id, and the log is
never rewritten: erasing such a person removes every row, but these events stay. The
erasure's answer says which (``older_events``: how many, and the first ``LISTED``
positions, so that a person with a hundred thousand old events gets an answer of bounded
size), and ``ledger users older-events USER_ID`` (``GET /v1/users/{user_id}/older-events``)
lists every one of them, page by page, before or after the erasure: what an operator
needs to answer the person, and to copy the log into a fresh pseudonymous chain.

An event names the person when one of its person fields (``user_id``, ``customer_id``,
``creator_id``) is their id. The log is read whole (a rare request that must miss
nothing), each event's bytes first searched for the id as JSON writes it, so only the few
that hold it are parsed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from functools import lru_cache
from typing import Any

from psycopg import Connection, sql
from psycopg.rows import dict_row

from ledger.commands.base import Command
from ledger.commands.catalogue import EraseUser
from ledger.commands.results import Result
from ledger.domain import ids
from ledger.domain.errors import Rejected
from ledger.privacy.subjects import PERSON_FIELDS

LISTED = 100
"""Positions listed in an erasure's answer; ``count`` says how many there are in all."""
PAGE = 1000
"""Events per page of ``GET /v1/users/{user_id}/older-events``."""


@lru_cache(maxsize=16)
def _naming_sql(schema: str) -> sql.Composed:
    """Each person field compared by ``->>``, the text ``jsonb_each_text`` gave for a
    top-level key: the same rows, in an expression of the row alone. A correlated
    ``EXISTS`` over ``jsonb_each_text`` was refused by Citus on a distributed log
    (``NotSupportedError``: the erasure answered ``not counted``); this form is pushed
    down to every shard as it is, and on one server it is the same filter."""
    document = sql.SQL("convert_from(e.state, 'UTF8')::jsonb")
    fields = sql.SQL(" OR ").join(
        sql.SQL("{} ->> {} = %(user_id)s").format(document, sql.Literal(field))
        for field in PERSON_FIELDS
    )
    return sql.SQL(
        "SELECT notification_id, topic, originator_id, originator_version, recorded_at "
        "FROM {events} e "
        "WHERE e.notification_id > %(after)s AND position(%(needle)s in e.state) > 0 "
        "AND ({fields}) "
        "ORDER BY e.notification_id"
    ).format(events=sql.Identifier(schema, "ledger_events"), fields=fields)


@lru_cache(maxsize=16)
def _known_sql(schema: str) -> sql.Composed:
    return sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE originator_id = %s)").format(
        sql.Identifier(schema, "ledger_events")
    )


def _params(user_id: str, after: int) -> dict[str, Any]:
    needle = json.dumps(user_id, ensure_ascii=False).encode()  # as the log's JSON writes it
    return {"after": after, "needle": needle, "user_id": user_id}


def naming(
    conn: Connection[Any], schema: str, user_id: str, after: int = 0, limit: int | None = None
) -> list[dict[str, Any]]:
    """The events after position ``after`` that name ``user_id`` in the clear, in order
    (at most ``limit``)."""
    query = _naming_sql(schema)
    if limit is not None:
        query = sql.Composed([query, sql.SQL(" LIMIT {}").format(sql.Literal(limit))])
    with conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(query, _params(user_id, after)).fetchall()
    return [
        {
            "position": row["notification_id"],
            "topic": row["topic"],
            "originator_id": str(row["originator_id"]),
            "version": row["originator_version"],
            "recorded_at": row["recorded_at"].isoformat(),
        }
        for row in rows
    ]


def summary(conn: Connection[Any], schema: str, user_id: str) -> dict[str, Any] | None:
    """What an erasure answers of the older events naming ``user_id``: their ``count``,
    the ``first`` ``LISTED`` positions, and ``listed_by`` (where to find them all);
    ``None`` when none does. Only a person registered before subjects can be named so:
    their user aggregate is keyed by their id (one indexed read); anyone else costs no
    read of the log."""
    known = conn.execute(_known_sql(schema), (ids.user_id(user_id),)).fetchone()
    if not known or not (known["exists"] if isinstance(known, dict) else known[0]):
        return None
    count = 0
    first: list[int] = []
    with conn.cursor(row_factory=dict_row) as cursor:
        for row in cursor.stream(_naming_sql(schema), _params(user_id, 0)):
            count += 1
            if len(first) < LISTED:
                first.append(row["notification_id"])
    if not count:
        return None
    return {
        "count": count,
        "first": first,
        "listed_by": f"ledger users older-events {user_id}",
    }


def answered(
    recorder: object, schema: str, commands: Sequence[Command | Rejected], results: list[Result]
) -> list[Result]:
    """The results, each accepted ``user.erase`` with its ``older_events`` (when any).
    Read after the commit and outside the service's deciding lock, with a connection of
    the log's pool: the log is read whole for a person registered before subjects."""
    datastore = getattr(recorder, "datastore", None)
    if datastore is None:  # the memory recorder (ledger.service.memory): no older events
        return results
    connection: Callable[[], AbstractContextManager[Connection[Any]]] = datastore.get_connection
    erased = [
        (index, c.user_id)
        for index, (c, r) in enumerate(zip(commands, results, strict=True))
        if isinstance(c, EraseUser) and r.status == "accepted"
    ]
    if not erased:
        return results
    answers = list(results)
    try:
        with connection() as conn:
            for index, user_id in erased:
                found = summary(conn, schema, user_id)
                if found is not None:
                    answers[index] = replace(answers[index], older_events=found)
    except Exception as error:
        # the erasure is committed and must be answered so (a retry would find no one):
        # the count is what failed, and the listing gives it again
        for index, user_id in erased:
            if answers[index].older_events is None:
                answers[index] = replace(answers[index], older_events=unknown(user_id, error))
    return answers


def unknown(user_id: str, error: Exception) -> dict[str, Any]:
    """An ``older_events`` that could not be read after the erasure committed."""
    return {
        "count": None,
        "first": [],
        "listed_by": f"ledger users older-events {user_id}",
        "error": f"not counted: {type(error).__name__} (the erasure is committed; list them)",
    }
