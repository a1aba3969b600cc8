"""What the playback store's tests on the cluster share (``test_playback_on_citus*.py``): a
second organization's video, and the schema distributed again (``ledger db distribute`` is
safe to run again)."""

from __future__ import annotations

from typing import Any

from ledger.config import Settings
from ledger.database import distribution
from ledger.database.connections import connect
from ledger.service import Ledger
from tests.support import append, grant, org, publish, statuses, user

VIDEO_B = "bbbbbbbb-0000-4000-8000-000000000002"


def _distributed(settings: Settings) -> None:
    with connect(settings) as conn:
        distribution.distribute(conn, settings.schema)  # safe to run again
        conn.commit()


def alice_granted_video_b(app: Ledger, organization: str, *more: dict[str, Any]) -> None:
    """The creator and alice registered, ``organization`` publishing ``VIDEO_B`` and
    granting it to alice, then ``more``: each accepted."""
    setup = [
        user("creator"),
        user("alice"),
        org(organization),
        publish(VIDEO_B, organization_id=organization),
        grant("alice", content_id=VIDEO_B),
        *more,
    ]
    assert set(statuses(append(app, *setup))) == {"accepted"}


def granted_in_each(app: Ledger, videos: dict[str, str]) -> None:
    """Alice and bob registered, and each organization of ``videos`` publishing its video
    and granting it to both: each accepted."""
    setup = [user("creator"), user("alice"), user("bob")]
    for organization, video in videos.items():
        setup += [
            org(organization, name=f"org {organization[:4]}"),
            publish(video, organization_id=organization),
            grant("alice", content_id=video),
            grant("bob", content_id=video),
        ]
    assert set(statuses(append(app, *setup))) == {"accepted"}
