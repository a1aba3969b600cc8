"""What the playback store's tests on the cluster share (``test_playback_on_citus*.py``): a
second organization's video, and the schema distributed again (``ledger db distribute`` is
safe to run again)."""

from __future__ import annotations

from ledger.config import Settings
from ledger.database import distribution
from ledger.database.connections import connect

VIDEO_B = "bbbbbbbb-0000-4000-8000-000000000002"


def _distributed(settings: Settings) -> None:
    with connect(settings) as conn:
        distribution.distribute(conn, settings.schema)  # safe to run again
        conn.commit()
