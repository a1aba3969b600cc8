"""A keyed heartbeat's key on the distributed store is claimed first (issue 28, i28y).

``playback_keys`` is distributed by the key, so a key's shard is often on the other worker
than its organization's; written in the group's transaction it made the commit a two-phase
one. The key is now claimed in a transaction of its own on its shard before the group's
(``ledger.playback.keys``): a group of one organization commits on its worker alone, no row
of ``pg_dist_transaction`` (the coordinator's record of every two-phase commit, kept while
recovery is held off). The answers are a single server's: the same heartbeat again is a
``duplicate``, the key with another payload a ``conflict``; a key claimed by a group that
never committed does not make its heartbeat a duplicate.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any

import psycopg
import pytest

from ledger import api
from ledger.config import Settings
from ledger.database import distribution
from ledger.database.connections import connect
from ledger.service import Ledger
from tests.citus_support import CitusCluster
from tests.playback_placed import VIDEOS, VIEWERS, lost_before_the_write, two_organizations
from tests.support import append, catalogue, grant, play, statuses, t

pytestmark = pytest.mark.citus
Conn = psycopg.Connection[Any]


@pytest.fixture
def two(
    citus: CitusCluster, settings: Settings, conn: Conn
) -> Iterator[tuple[Ledger, dict[str, str]]]:
    """The store distributed, two organizations on distinct workers, each with a video
    every viewer may watch, and the day's partition made: (the ledger, organization by
    video)."""
    app, owners = two_organizations(citus, settings, conn)
    # the day's partition, made on every node (a two-phase commit of its own)
    assert statuses(append(app, play("viewer0", 1, content_id=VIDEOS[0], at=t(4)))) == ["accepted"]
    try:
        yield app, owners
    finally:
        app.close()


def keyed(viewer: str, position: int, video: str, key: str) -> dict[str, Any]:
    """A heartbeat at hour ``position`` of day 4, with its key."""
    return {**play(viewer, position, content_id=video, at=t(4, position)), "idempotency_key": key}


def keys_elsewhere(
    citus: CitusCluster, conn: Conn, schema: str, organization: str, count: int
) -> list[str]:
    """Keys whose ``playback_keys`` shard is not on the organization's worker."""
    home = citus.placement(conn, f"{schema}.content", organization).worker
    found = (
        k
        for k in (f"hb-{organization[:8]}-{n}" for n in range(1000))
        if citus.placement(conn, f"{schema}.playback_keys", k).worker != home
    )
    return list(islice(found, count))


def two_phase(conn: Conn) -> int:
    row = conn.execute("SELECT count(*) FROM pg_dist_transaction").fetchone()
    assert row is not None
    return int(row[0])


def test_a_keyed_group_of_one_organization_commits_on_its_worker_alone(
    citus: CitusCluster,
    settings: Settings,
    conn: Conn,
    no_recovery: None,
    two: tuple[Ledger, dict[str, str]],
) -> None:
    app, owners = two
    keys = {
        video: keys_elsewhere(citus, conn, settings.schema, owner, 8)
        for video, owner in owners.items()
    }
    before = two_phase(conn)
    for video in VIDEOS:
        for n in range(2):  # groups of 4 heartbeats, each keyed by a key on the other worker
            beats = [keyed(v, 10 + n, video, keys[video][4 * n + i]) for i, v in enumerate(VIEWERS)]
            assert statuses(append(app, *beats)) == ["accepted"] * 4
    assert two_phase(conn) == before  # every group one-phase, on its organization's worker
    stored = conn.execute("SELECT count(*) FROM playback_keys").fetchone()
    assert stored == (16,)
    # the answers a single server gives: the same heartbeat again, the key for another one
    again = keyed(VIEWERS[0], 10, VIDEOS[0], keys[VIDEOS[0]][0])
    other = keyed(VIEWERS[0], 12, VIDEOS[0], keys[VIDEOS[0]][0])
    assert statuses(append(app, again)) == ["duplicate"]
    assert statuses(append(app, other)) == ["rejected:conflict"]
    assert conn.execute("SELECT count(*) FROM playback_heartbeats").fetchone() == (17,)


def test_a_key_claimed_by_a_group_that_never_committed_is_no_duplicate(
    citus: CitusCluster,
    settings: Settings,
    conn: Conn,
    monkeypatch: pytest.MonkeyPatch,
    two: tuple[Ledger, dict[str, str]],
) -> None:
    """The keys' claims committed, then the group's write crashed: the key is in
    ``playback_keys`` with the heartbeat's fingerprint, the heartbeat nowhere. Sent again it
    is accepted and recorded once; a third time it is a duplicate; the key with another
    payload is a conflict."""
    app, owners = two
    key = keys_elsewhere(citus, conn, settings.schema, owners[VIDEOS[1]], 1)[0]
    beat = keyed(VIEWERS[1], 20, VIDEOS[1], key)
    lost_before_the_write(monkeypatch, app, beat)
    assert conn.execute(
        "SELECT count(*) FROM playback_keys WHERE idempotency_key = %s", (key,)
    ).fetchone() == (1,)
    assert conn.execute(
        "SELECT count(*) FROM playback_heartbeats WHERE idempotency_key = %s", (key,)
    ).fetchone() == (0,)
    assert statuses(append(app, beat)) == ["accepted"]
    assert statuses(append(app, beat)) == ["duplicate"]
    assert statuses(append(app, keyed(VIEWERS[1], 21, VIDEOS[1], key))) == ["rejected:conflict"]
    assert conn.execute(
        "SELECT count(*) FROM playback_heartbeats WHERE idempotency_key = %s", (key,)
    ).fetchone() == (1,)


def test_a_claim_left_by_a_delivery_without_its_time_is_recorded_once_at_its_moment(
    citus: CitusCluster,
    settings: Settings,
    conn: Conn,
    monkeypatch: pytest.MonkeyPatch,
    two: tuple[Ledger, dict[str, str]],
) -> None:
    """A heartbeat without ``occurred_at`` is dated when it is identified; its key's claim
    holds that moment (migration 0034). The process lost after the claim: sent again (a
    new moment) it takes the claim's, is recorded once at it, and is a duplicate after."""
    app, owners = two
    key = keys_elsewhere(citus, conn, settings.schema, owners[VIDEOS[0]], 1)[0]
    beat = keyed(VIEWERS[2], 30, VIDEOS[0], key)
    del beat["occurred_at"]
    lost_before_the_write(monkeypatch, app, beat)
    claim = conn.execute(
        "SELECT occurred_at FROM playback_keys WHERE idempotency_key = %s", (key,)
    ).fetchone()
    assert claim is not None and claim[0] is not None
    assert statuses(append(app, beat)) == ["accepted"]
    assert statuses(append(app, beat)) == ["duplicate"]
    stored = conn.execute(
        "SELECT occurred_at FROM playback_heartbeats WHERE idempotency_key = %s", (key,)
    ).fetchall()
    assert stored == [(claim[0],)]


def test_a_single_servers_keys_take_their_heartbeats_moments_when_distributed(
    settings: Settings, conn: Conn
) -> None:
    """A single server's statement writes its keys without a moment (it needs none);
    ``ledger db distribute`` gives each its recorded heartbeat's, so a redelivery without
    ``occurred_at`` after the switch is still the key's heartbeat: ``duplicate``."""
    beat = {**play("alice", 40), "idempotency_key": "before-the-switch"}
    del beat["occurred_at"]
    with api.open_ledger(settings) as app:
        assert set(statuses(append(app, *catalogue(), grant("alice"), beat))) == {"accepted"}
    claim = "SELECT occurred_at FROM playback_keys WHERE idempotency_key = 'before-the-switch'"
    assert conn.execute(claim).fetchall() == [(None,)]
    with connect(settings) as placing:
        distribution.distribute(placing, settings.schema)
        placing.commit()
    recorded = conn.execute(
        "SELECT occurred_at FROM playback_heartbeats WHERE idempotency_key = 'before-the-switch'"
    ).fetchall()
    assert conn.execute(claim).fetchall() == recorded and len(recorded) == 1
    with api.open_ledger(settings) as app:
        assert statuses(append(app, beat)) == ["duplicate"]
    assert conn.execute(
        "SELECT count(*) FROM playback_heartbeats WHERE idempotency_key = 'before-the-switch'"
    ).fetchone() == (1,)
