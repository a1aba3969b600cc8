"""``ledger projections status``: where each projection stands in the log.

Projections are applied inline, in the transaction that appends their events, so a
table that exists is at the log's head by construction (lag 0). What can be behind
is a table that is missing (dropped, or rolled back by ``db downgrade``): it has no
position until ``ledger projections rebuild`` brings it back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from psycopg import sql

from ledger.config import Settings
from ledger.db import connect
from projections import source
from projections.registry import TABLES


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    exists: bool
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
        last = rebuilt.get(table)
        result.append(
            ProjectionStatus(
                name=table,
                exists=exists,
                position=head if exists else None,
                head=head,
                lag=0 if exists else None,
                rebuilt_position=last[0] if last else None,
                rebuilt_at=last[1] if last else None,
            )
        )
    return result
