"""The organization of the content a log's heartbeat names, filled into the rebuild's row
changes as data (``projections.video_playback.OrganizationOf``, migration 0026).

A ``PlaybackProgressed`` of the log (recorded before the playback store) names its content
only; its row carries the content's organization, which never changes. The rebuild reads it
from the content rows it has: those of the batch, those folded so far (in memory, or
spilled to the shadow table) and the live table's. Only a log holding such heartbeats asks:
a batch without one reads nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from ledger.database import migrations
from projections import video_playback
from projections.changes import RowChange, Upsert
from projections.fold import Fold


def fill(
    conn: psycopg.Connection[Any],
    changes: list[RowChange],
    schemas: Sequence[str],
    fold: Fold | None = None,
) -> list[RowChange]:
    """``changes`` with each content's organization filled in, read from the content the
    changes publish, ``fold``'s content rows, then the ``content`` table of each of
    ``schemas`` in turn."""
    wanted = video_playback.wanted(changes)
    if not wanted:
        return changes
    found: dict[str, str] = {  # content published in the same batch
        str(c.values["id"]): str(c.values["organization_id"])
        for c in changes
        if isinstance(c, Upsert) and c.table == "content" and str(c.values["id"]) in wanted
    }
    if fold is not None and "content" in fold.tables:
        for content_id in wanted:
            row = fold.find("content", {"id": content_id})
            if row is not None:
                found[content_id] = str(row["organization_id"])
    for schema in schemas:
        rest = sorted(wanted - found.keys())
        if not rest or not migrations.has_table(conn, schema, "content"):
            continue
        query = sql.SQL(
            "SELECT id::text, organization_id::text FROM {} WHERE id = ANY(%s::uuid[])"
        ).format(sql.Identifier(schema, "content"))
        found.update(conn.cursor(row_factory=tuple_row).execute(query, (rest,)).fetchall())
    return video_playback.with_organizations(changes, found)
