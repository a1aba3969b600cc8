"""Everything the ledger holds about one person, as one JSON document (docs/privacy.md,
"``ledger users export``"): ``ledger users export USER_ID`` and
``GET /v1/users/{user_id}/export``.

The person's rows come from the projected tables, by their id; their events from the log,
by their subject (or, for a person registered before subjects, by their id), each with
its position and times, the subject shown as the id it stands for (another person's
as ``another person``). One repeatable-read
transaction, so the rows and the events are one moment of the ledger. An erased or
unknown id has neither a subject nor a row: ``None`` (answered ``not_found``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from psycopg import Connection, sql
from psycopg.rows import dict_row

from ledger.privacy.store import subjects_of
from ledger.privacy.subjects import is_subject

ANOTHER = "another person"

# each table and the column that names the person
_ROWS = (
    ("users", "id"),
    ("purchases", "customer_id"),
    ("content_access", "user_id"),
    ("video_playback", "user_id"),
    ("content", "creator_id"),
)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str | int | bool) or value is None:
        return value
    return str(value)


def _swapped(value: Any, subject: str, user_id: str) -> Any:
    if isinstance(value, dict):
        return {k: _swapped(v, subject, user_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_swapped(v, subject, user_id) for v in value]
    if value == subject:
        return user_id
    if is_subject(value):
        return ANOTHER  # another person's pseudonym is theirs, not this person's data
    return value


def export(conn: Connection[Any], schema: str, user_id: str) -> dict[str, Any] | None:
    """The person's document, or ``None`` if the ledger knows no one by ``user_id``."""
    subject = subjects_of(conn, schema, [user_id]).get(user_id)
    rows: dict[str, list[dict[str, Any]]] = {}
    with conn.cursor(row_factory=dict_row) as cursor:
        for table, column in _ROWS:
            query = sql.SQL("SELECT * FROM {} WHERE {} = %s ORDER BY created_at, id").format(
                sql.Identifier(schema, table), sql.Identifier(column)
            )
            found = cursor.execute(query, (user_id,)).fetchall()
            rows[table] = [{k: _plain(v) for k, v in row.items()} for row in found]
        if subject is None and not rows["users"]:
            return None
        # what the playback store retains of them (docs/events.md "The playback store"):
        # each heartbeat not yet compacted, by its position in the store's stream, and
        # the compacted (user, content) rows
        query = sql.SQL(
            "SELECT position, occurred_at, recorded_at, content_id, organization_id, "
            "position_seconds, duration_seconds, completed, idempotency_key "
            "FROM {} WHERE user_id = %s ORDER BY position"
        ).format(sql.Identifier(schema, "playback_heartbeats"))
        heartbeats = [
            {k: _plain(v) for k, v in row.items()}
            for row in cursor.execute(query, (user_id,)).fetchall()
        ]
        query = sql.SQL("SELECT * FROM {} WHERE user_id = %s ORDER BY content_id").format(
            sql.Identifier(schema, "playback_base")
        )
        compacted = [
            {k: _plain(v) for k, v in row.items()}
            for row in cursor.execute(query, (user_id,)).fetchall()
        ]
        # the log names them by subject (or, before subjects, by id): a full read of the
        # log, for a request that comes rarely and must miss nothing
        name = subject if subject is not None else user_id
        needle = orjson.dumps(name)
        query = sql.SQL(
            "SELECT notification_id, topic, originator_id, originator_version, recorded_at, state"
            " FROM {} WHERE position(%s in state) > 0 ORDER BY notification_id"
        ).format(sql.Identifier(schema, "ledger_events"))
        events = []
        for row in cursor.execute(query, (needle,)):
            data = _swapped(orjson.loads(bytes(row["state"])), name, user_id)
            events.append(
                {
                    "position": row["notification_id"],
                    "recorded_at": _plain(row["recorded_at"]),
                    "occurred_at": data.get("occurred_at"),
                    "topic": row["topic"],
                    "originator_id": str(row["originator_id"]),
                    "version": row["originator_version"],
                    "data": data,
                }
            )
    return {
        "user_id": user_id,
        "registered": rows["users"][0] if rows["users"] else None,
        "purchases": rows["purchases"],
        "access": rows["content_access"],
        "playback": rows["video_playback"],
        "content_created": rows["content"],
        "heartbeats": heartbeats,
        "heartbeats_compacted": compacted,
        "events": events,
    }
