"""A key claimed on the distributed store before migration 0034 whose group never committed
(issue 28, docs/scaling.md "The playback store on Citus", 5).

Such a claim holds the heartbeat's fingerprint and no moment: a process lost between its
key's commit and its group's, before claims held their heartbeat's moment. Its heartbeat is
not recorded, so its next delivery is (``ledger.playback.keys.recorded``); without
``occurred_at`` each delivery is dated when it is identified, and with no moment to take,
each was recorded again. The first delivery now gives the claim its moment
(``ledger.playback.keys.claim``), and every later one takes it: ``duplicate``. A single
server writes its keys in its group's transaction, so it holds no such claim; the key of
before whose heartbeat was compacted is tested on both layouts in
``test_keyed_heartbeat_moment.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from ledger import api
from ledger.config import Settings
from ledger.service import Ledger
from tests.citus_support import CitusCluster
from tests.playback_placed import VIDEOS, VIEWERS, lost_before_the_write, two_organizations
from tests.support import append, at_once, play, statuses, t

pytestmark = pytest.mark.citus
Conn = psycopg.Connection[Any]


@pytest.fixture
def app(citus: CitusCluster, settings: Settings, conn: Conn) -> Iterator[Ledger]:
    """The store distributed, two organizations on distinct workers, the day's partition
    made (a heartbeat without its time is dated now)."""
    ledger, _ = two_organizations(citus, settings, conn)
    try:
        assert statuses(append(ledger, play(VIEWERS[0], 1, content_id=VIDEOS[0]))) == ["accepted"]
        assert statuses(append(ledger, untimed(VIEWERS[0], 2, "of-before-warm"))) == ["accepted"]
        yield ledger
    finally:
        ledger.close()


def untimed(viewer: str, position: int, key: str) -> dict[str, Any]:
    """``viewer``'s keyed heartbeat of the first video, without ``occurred_at``."""
    command = {**play(viewer, position, content_id=VIDEOS[0]), "idempotency_key": key}
    del command["occurred_at"]
    return command


def orphan_of_before(monkeypatch: pytest.MonkeyPatch, app: Ledger, conn: Conn, beat: Any) -> None:
    """``beat`` appended by a process lost between its key's claim and its group's write,
    its claim then made one of before 0034 (no moment): its fingerprint, no record."""
    lost_before_the_write(monkeypatch, app, beat)
    key = beat["idempotency_key"]
    conn.execute("UPDATE playback_keys SET occurred_at = NULL WHERE idempotency_key = %s", (key,))
    assert claim(conn, key) == [(None,)]
    assert records(conn, key) == []


def claim(conn: Conn, key: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT occurred_at FROM playback_keys WHERE idempotency_key = %s", (key,)
    ).fetchall()


def records(conn: Conn, key: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT occurred_at FROM playback_heartbeats WHERE idempotency_key = %s", (key,)
    ).fetchall()


def test_a_claim_of_before_that_never_committed_is_recorded_once_at_the_moment_it_takes(
    monkeypatch: pytest.MonkeyPatch, app: Ledger, conn: Conn
) -> None:
    """Sent again without its time: recorded once, and the claim holds that record's
    moment; sent again without its time, or with another, it is ``duplicate``; the key with
    another payload is a ``conflict``. One record."""
    beat = untimed(VIEWERS[1], 30, "of-before-1")
    orphan_of_before(monkeypatch, app, conn, beat)
    assert statuses(append(app, beat)) == ["accepted"]
    stored = records(conn, "of-before-1")
    assert len(stored) == 1
    assert claim(conn, "of-before-1") == stored
    later = {**beat, "occurred_at": t(5)}
    assert [statuses(append(app, c))[0] for c in (beat, beat, later)] == ["duplicate"] * 3
    other = untimed(VIEWERS[1], 31, "of-before-1")
    assert statuses(append(app, other)) == ["rejected:conflict"]
    assert records(conn, "of-before-1") == stored


ROUNDS = 6


def test_two_processes_redelivering_a_claim_of_before_at_once_record_it_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, app: Ledger, conn: Conn
) -> None:
    """Two ledgers (two pools, as two processes) send the heartbeat of a claim of before
    at once, each delivery dated when its ledger identifies it: one gives the claim its
    moment and is recorded, the other finds that moment, decides again at it and is a
    ``duplicate``. Each round a new key."""
    other = api.open_ledger(settings)
    try:
        warm = untimed(VIEWERS[2], 1, "of-before-warm-other")
        assert statuses(append(other, warm)) == ["accepted"]
        for n in range(ROUNDS):
            key = f"of-before-race-{n}"
            beat = untimed(VIEWERS[3], 40 + n, key)
            orphan_of_before(monkeypatch, app, conn, beat)
            answered = at_once((app, other), beat)
            both = sorted(s for a in answered for s in statuses(a))
            assert both == ["accepted", "duplicate"], (n, both)
            stored = records(conn, key)
            assert len(stored) == 1 and claim(conn, key) == stored, n
    finally:
        other.close()
