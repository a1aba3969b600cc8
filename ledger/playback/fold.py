"""The playback store folded into ``video_playback`` and ``content_access``: what
``ledger projections rebuild`` and ``verify`` add to the log's fold.

The rows the store's writes leave are a function of its records, whatever their order
(newest ``occurred_at`` wins, the later position on a tie; ``completed`` only turns
true; ``last_accessed_at`` and ``updated_at`` never move back), so one set-based pass
over the compacted base and the partitions gives them again. Rows the log folded from a
ledger's heartbeats recorded before the store (``PlaybackProgressed``) obey the same
rules, and the base holds their newest state: folding both counts nothing twice.
Every record carries its content's organization, and so does each row (migration 0026).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from ledger.database import migrations
from ledger.domain import ids
from ledger.playback.statements import NEWEST_WINS

# the base row stands for its shown heartbeat and its first one, each at its position
_RECORDS = """
    SELECT organization_id, user_id, content_id, position_seconds, duration_seconds, completed,
           occurred_at, shown_position AS seq, first_at, first_position AS first_seq
    FROM {base}
    UNION ALL
    SELECT organization_id, user_id, content_id, position_seconds, duration_seconds, completed,
           occurred_at, position, occurred_at, position
    FROM {records}
"""

_PLAYBACK = (
    """
    WITH r AS ({records}),
    pair AS (
        SELECT organization_id, user_id, content_id, bool_or(completed) AS completed,
               (array_agg(first_at ORDER BY first_seq, first_at))[1] AS first_at
        FROM r GROUP BY organization_id, user_id, content_id
    ),
    shown AS (
        SELECT DISTINCT ON (organization_id, user_id, content_id) organization_id, user_id,
               content_id, position_seconds, duration_seconds, occurred_at
        FROM r ORDER BY organization_id, user_id, content_id, occurred_at DESC, seq DESC
    )
    INSERT INTO {target} AS v (id, user_id, content_id, organization_id, position_seconds,
                               duration_seconds, completed, updated_at, created_at)
    SELECT gen_random_uuid(), s.user_id, s.content_id, s.organization_id, s.position_seconds,
           s.duration_seconds, p.completed, s.occurred_at, p.first_at
    FROM shown s
    JOIN pair p USING (organization_id, user_id, content_id)
    JOIN {users} u ON u.id = s.user_id
    JOIN {content} c ON c.organization_id = s.organization_id AND c.id = s.content_id
"""
    + NEWEST_WINS
    + """
    RETURNING v.user_id, v.content_id, (v.xmax = 0) AS inserted
"""
)

_IDS = """
    UPDATE {target} v SET id = i.id
    FROM unnest(%s::text[], %s::uuid[], %s::uuid[]) AS i(user_id, content_id, id)
    WHERE v.user_id = i.user_id AND v.content_id = i.content_id
"""

_ACCESS = """
    WITH r AS ({records})
    UPDATE {target} a
    SET last_accessed_at = GREATEST(a.last_accessed_at, m.at),
        updated_at = GREATEST(a.updated_at, m.at)
    FROM (SELECT user_id, content_id, max(occurred_at) AS at FROM r
          GROUP BY user_id, content_id) m
    WHERE a.user_id = m.user_id AND a.content_id = m.content_id AND m.at >= a.created_at
"""


def overlay(conn: psycopg.Connection[Any], live: str, target: str, tables: tuple[str, ...]) -> None:
    """Folds the store of schema ``live`` into the ``tables`` of schema ``target`` (those
    of them that show heartbeats), in the caller's transaction."""
    if not migrations.has_table(conn, live, "playback_base"):
        return  # a database before 0011: the log's fold is the whole truth
    records = sql.SQL(_RECORDS).format(
        base=sql.Identifier(live, "playback_base"),
        records=sql.Identifier(live, "playback_heartbeats"),
    )
    if "video_playback" in tables:

        def home(table: str) -> sql.Identifier:
            return sql.Identifier(target if table in tables else live, table)

        rows = conn.execute(
            sql.SQL(_PLAYBACK).format(
                records=records,
                target=sql.Identifier(target, "video_playback"),
                users=home("users"),
                content=home("content"),
            )
        ).fetchall()
        # a new row's id is the uuid5 of its pair (ledger.domain.ids), made here
        new = [(r[0], r[1]) for r in rows if r[2]]
        if new:
            conn.execute(
                sql.SQL(_IDS).format(target=sql.Identifier(target, "video_playback")),
                (
                    [u for u, _ in new],
                    [c for _, c in new],
                    [ids.playback_id(u, str(c)) for u, c in new],
                ),
            )
    if "content_access" in tables:
        conn.execute(
            sql.SQL(_ACCESS).format(
                records=records, target=sql.Identifier(target, "content_access")
            )
        )
