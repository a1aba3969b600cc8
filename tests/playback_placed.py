"""The playback store placed on the cluster with two organizations on distinct workers,
each with a video every viewer may watch: the common ground of the tests of the store's
per-organization positions and of its keys claimed first (both marked ``citus``)."""

from __future__ import annotations

from itertools import islice
from typing import Any

import psycopg
import pytest

from ledger import api
from ledger.config import Settings
from ledger.database import distribution
from ledger.database.connections import connect
from ledger.playback import distributed
from ledger.playback.store import PlaybackStore
from ledger.service import Ledger
from tests import citus_support
from tests.citus_support import CitusCluster
from tests.support import append, grant, org, publish, statuses, user

VIDEOS = ("aaaaaaaa-0000-4000-8000-00000000000a", "bbbbbbbb-0000-4000-8000-00000000000b")
VIEWERS = tuple(f"viewer{n}" for n in range(4))


def two_organizations(
    citus: CitusCluster, settings: Settings, conn: psycopg.Connection[Any]
) -> tuple[Ledger, dict[str, str]]:
    """The schema distributed (`ledger db distribute`), two organizations on distinct
    workers, their videos published and granted to every viewer: (an open ledger, the
    organization of each video). The caller closes the ledger."""
    with connect(settings) as placing:
        distribution.distribute(placing, settings.schema)
        placing.commit()
    content = f"{settings.schema}.content"
    a, b = (
        str(o)
        for o in citus.on_distinct_workers(
            conn, content, islice(citus_support.organizations(), 64), 2
        )
    )
    owners = {VIDEOS[0]: a, VIDEOS[1]: b}
    app = api.open_ledger(settings)
    setup: list[dict[str, Any]] = [user("creator"), *(user(v) for v in VIEWERS)]
    for video, organization in owners.items():
        setup += [org(organization, name=f"org {organization[:4]}"), publish(video, organization)]
        setup += [grant(v, content_id=video) for v in VIEWERS]
    assert set(statuses(append(app, *setup))) == {"accepted"}
    return app, owners


class Crash(Exception):
    """The process lost before its group's write."""


def lost_before_the_write(
    monkeypatch: pytest.MonkeyPatch, app: Ledger, beat: Any, *, placed: bool = True
) -> None:
    """``beat`` appended by a process lost before its group's write: on the distributed
    store (``placed``) after its keys' claims committed (its write never runs), on one
    server before its group's one statement (which writes the key with the heartbeat)."""

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise Crash("lost before the group's write")

    with monkeypatch.context() as lost:
        if placed:
            lost.setattr(distributed, "write", crash)
        else:
            lost.setattr(PlaybackStore, "_attempt", crash)
        with pytest.raises(Crash):
            append(app, beat)
