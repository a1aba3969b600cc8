"""``ledger projections status``: where each projection stands in the log.

Projections are applied inline, in the transaction that appends their events, so a
table that exists is at the log's head by construction (lag 0), unless it is marked
stale (``projections.freshness``: created empty over a non-empty log and not filled
yet, e.g. by an upgrade that was killed). A stale or missing table has no position
and no lag until ``ledger db upgrade`` or ``ledger projections rebuild`` fills it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from psycopg import sql

from ledger.config import Settings
from ledger.database import migrations
from ledger.database.connections import connect
from ledger.upkeep import source
from projections import freshness
from projections.registry import TABLES


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    exists: bool
    stale: bool  # the rows do not reflect the log (missing, or marked stale)
    stale_reason: str | None
    position: int | None
    head: int
    lag: int | None
    rebuilt_position: int | None
    rebuilt_at: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def status(settings: Settings) -> list[ProjectionStatus]:
    live = settings.schema
    with connect(settings, autocommit=True) as conn, conn.transaction():
        migrations.require_log(conn, live)
        marks = freshness.stale(conn, live)
        head = source.head(conn, live)
        existing = {
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s", (live,)
            ).fetchall()
        }
        rebuilt: dict[str, tuple[int, str]] = {}
        if "ledger_projection_state" in existing:
            query = sql.SQL("SELECT name, rebuilt_position, rebuilt_at::text FROM {}").format(
                sql.Identifier(live, "ledger_projection_state")
            )
            rebuilt = {r[0]: (r[1], r[2]) for r in conn.execute(query).fetchall()}
    result = []
    for table in TABLES:
        exists = table in existing
        reason = marks.get(table) if exists else "the table is missing"
        current = reason is None
        last = rebuilt.get(table)
        result.append(
            ProjectionStatus(
                name=table,
                exists=exists,
                stale=not current,
                stale_reason=reason,
                position=head if current else None,
                head=head,
                lag=0 if current else None,
                rebuilt_position=last[0] if last else None,
                rebuilt_at=last[1] if last else None,
            )
        )
    return result
