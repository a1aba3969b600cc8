"""Business time runs forward (issue 13.4), and a replayed file changes nothing (13.6).

A refund before its purchase completed, a completion or a failure before its start, a
grant or revoke older than the access's latest grant or revoke: ``invalid_state``
naming ``occurred_at``, nothing written. Heartbeats, which real players send out of
order, and late purchase completions or refunds (money facts) are always recorded, but
a row keeps what its newest event says: the newest position, ``completed`` once true,
``last_accessed_at`` and ``updated_at`` that never move back.
"""

from __future__ import annotations

import json
import os
from typing import Any

import psycopg

from ledger import api
from ledger.config import Settings
from ledger.service import Ledger
from ledger.upkeep.rebuild import rebuild
from ledger.upkeep.verify import verify
from tests.citus_support import PlacingFromHere
from tests.support import (
    CONTENT,
    append,
    catalogue,
    complete,
    dump_all,
    event_count,
    grant,
    play,
    refund,
    start,
    statuses,
    t,
)

Conn = psycopg.Connection[Any]


def rejection(ledger: Ledger, command: dict[str, Any]) -> tuple[str, str | None, str]:
    (result,) = append(ledger, command)
    assert result.status == "rejected" and result.error is not None
    return result.error.code, result.error.field, result.error.message


def revoke(user_id: str, at: str) -> dict[str, Any]:
    return {"type": "access.revoke", "user_id": user_id, "content_id": CONTENT, "occurred_at": at}


def test_a_refund_dated_before_its_completion_is_refused(ledger_app: Ledger, conn: Conn) -> None:
    append(ledger_app, *catalogue(), complete("pi_1", at=t(5)))
    before = dump_all(conn), event_count(conn)
    code, field, message = rejection(ledger_app, refund("pi_1", "re_1", 100, at=t(4)))
    assert (code, field) == ("invalid_state", "occurred_at")
    assert "completion" in message
    assert (dump_all(conn), event_count(conn)) == before
    # at the completion's very moment, or after, it is fine
    assert statuses(append(ledger_app, refund("pi_1", "re_1", 100, at=t(5)))) == ["accepted"]


def test_a_completion_or_failure_dated_before_the_start_is_refused(
    ledger_app: Ledger, conn: Conn
) -> None:
    append(ledger_app, *catalogue(), start("pi_1", at=t(5)), start("pi_2", at=t(5)))
    before = dump_all(conn), event_count(conn)
    assert rejection(ledger_app, complete("pi_1", at=t(4)))[:2] == ("invalid_state", "occurred_at")
    fail = {"type": "purchase.fail", "stripe_payment_intent_id": "pi_2", "occurred_at": t(4)}
    assert rejection(ledger_app, fail)[:2] == ("invalid_state", "occurred_at")
    assert (dump_all(conn), event_count(conn)) == before
    # a completion after a failure is not dated before the failure either
    assert statuses(append(ledger_app, dict(fail, occurred_at=t(6)))) == ["accepted"]
    assert rejection(ledger_app, complete("pi_2", at=t(5, 13)))[:2] == (
        "invalid_state",
        "occurred_at",
    )
    assert statuses(append(ledger_app, complete("pi_2", at=t(7)))) == ["accepted"]
    assert conn.execute(
        "SELECT count(*) FROM purchases WHERE updated_at < created_at"
    ).fetchone() == (0,)


def test_a_late_refund_is_recorded_but_updated_at_stays(ledger_app: Ledger, conn: Conn) -> None:
    append(ledger_app, *catalogue(), complete("pi_1", at=t(2)))
    assert statuses(
        append(
            ledger_app, refund("pi_1", "re_2", 200, at=t(9)), refund("pi_1", "re_1", 100, at=t(5))
        )
    ) == ["accepted", "accepted"]
    assert conn.execute(
        "SELECT refunded_amount_cents, created_at::text, updated_at::text FROM purchases"
    ).fetchone() == (300, "2026-01-02 12:00:00+00", "2026-01-09 12:00:00+00")


def test_heartbeats_out_of_order_keep_the_newest_position(ledger_app: Ledger, conn: Conn) -> None:
    append(ledger_app, *catalogue(), complete("pi_1", at=t(2)))
    results = append(
        ledger_app,
        play("alice", 10, at=t(3)),
        play("alice", 80, at=t(5)),
        play("alice", 10, at=t(4)),  # late: older than the row's
    )
    assert statuses(results) == ["accepted"] * 3
    # every heartbeat is a recorded fact, in the playback store, none in the money log
    assert conn.execute("SELECT count(*) FROM playback_heartbeats").fetchone() == (3,)
    assert conn.execute(
        "SELECT count(*) FROM ledger_events WHERE topic = 'PlaybackProgressed'"
    ).fetchone() == (0,)
    playback = (
        "SELECT position_seconds, completed, created_at::text, updated_at::text FROM video_playback"
    )
    assert conn.execute(playback).fetchone() == (
        80,
        False,
        "2026-01-03 12:00:00+00",
        "2026-01-05 12:00:00+00",
    )
    access = "SELECT last_accessed_at::text, updated_at::text FROM content_access"
    assert conn.execute(access).fetchone() == ("2026-01-05 12:00:00+00", "2026-01-05 12:00:00+00")
    # a late heartbeat that reached 95% completes the video without moving the position
    assert statuses(append(ledger_app, play("alice", 96, at=t(4, 13)))) == ["accepted"]
    assert conn.execute(playback).fetchone() == (
        80,
        True,
        "2026-01-03 12:00:00+00",
        "2026-01-05 12:00:00+00",
    )
    # and a newer one behind the 95% never turns it back
    assert statuses(append(ledger_app, play("alice", 5, at=t(6)))) == ["accepted"]
    assert conn.execute(playback).fetchone()[:2] == (5, True)  # type: ignore[index]
    assert conn.execute(access).fetchone() == ("2026-01-06 12:00:00+00", "2026-01-06 12:00:00+00")


def test_a_heartbeat_dated_before_the_access_began_has_no_access(ledger_app: Ledger) -> None:
    append(ledger_app, *catalogue(), complete("pi_1", at=t(5)))
    code, field, _ = rejection(ledger_app, play("alice", 10, at=t(4)))
    assert (code, field) == ("no_access", "occurred_at")


def test_grants_and_revokes_older_than_the_latest_are_refused(
    ledger_app: Ledger, conn: Conn
) -> None:
    append(ledger_app, *catalogue(), grant("bob", at=t(3)), revoke("bob", at=t(6)))
    before = dump_all(conn), event_count(conn)
    # the grant yesterday's file carries again (with a new key) would undo today's revoke
    stale = dict(grant("bob", access_type="complimentary", at=t(5)), idempotency_key="k-1")
    assert rejection(ledger_app, stale)[:2] == ("invalid_state", "occurred_at")
    append(ledger_app, grant("bob", at=t(7)))
    before = dump_all(conn), event_count(conn)
    assert rejection(ledger_app, revoke("bob", at=t(6, 13)))[:2] == ("invalid_state", "occurred_at")
    assert (dump_all(conn), event_count(conn)) == before


def test_a_late_purchase_never_moves_the_access_row_back(ledger_app: Ledger, conn: Conn) -> None:
    """The subscription row exists since day 3 and was last stamped on day 6; a purchase
    completed on day 2, delivered late, is recorded and makes the row ``purchased``."""
    append(ledger_app, *catalogue(), grant("alice", at=t(3)), play("alice", 10, at=t(6)))
    assert statuses(append(ledger_app, complete("pi_1", at=t(2)))) == ["accepted"]
    assert conn.execute(
        "SELECT access_type, granted_at::text, created_at::text, updated_at::text,"
        " last_accessed_at::text FROM content_access"
    ).fetchone() == (
        "purchased",
        "2026-01-02 12:00:00+00",
        "2026-01-03 12:00:00+00",
        "2026-01-06 12:00:00+00",
        "2026-01-06 12:00:00+00",
    )


def test_a_late_heartbeat_does_not_move_a_newer_grant_back(ledger_app: Ledger, conn: Conn) -> None:
    append(ledger_app, *catalogue(), grant("bob", at=t(3)), grant("bob", at=t(8)))
    assert statuses(append(ledger_app, play("bob", 10, at=t(5)))) == ["accepted"]
    assert conn.execute(
        "SELECT last_accessed_at::text, updated_at::text FROM content_access"
    ).fetchone() == ("2026-01-05 12:00:00+00", "2026-01-08 12:00:00+00")


def test_replaying_a_file_never_regrants_revoked_access(ledger_app: Ledger, conn: Conn) -> None:
    """Issue 13.6: grants, revokes and heartbeats carry their moment (or a key), so the
    file of yesterday delivered again is all duplicates, and the revoke holds."""
    append(ledger_app, *catalogue())
    yesterday = [json.dumps(grant("bob", at=t(3))), json.dumps(play("bob", 30, at=t(4)))]
    assert [r.status for _, r in api.append_lines(ledger_app, yesterday)] == ["accepted"] * 2
    assert statuses(append(ledger_app, revoke("bob", at=t(5)))) == ["accepted"]
    events = event_count(conn)
    replay = [r for _, r in api.append_lines(ledger_app, yesterday)]
    assert [r.status for r in replay] == ["duplicate", "duplicate"]
    assert event_count(conn) == events
    assert conn.execute("SELECT count(*) FROM content_access").fetchone() == (0,)
    # without a moment or a key there is nothing to recognise a replay by: refused
    undated = {k: v for k, v in grant("bob").items() if k != "occurred_at"}
    code, field, _ = rejection(ledger_app, undated)
    assert (code, field) == ("validation_error", "occurred_at")
    keyed = dict(undated, idempotency_key="grant-bob-1")
    assert statuses(append(ledger_app, keyed, keyed)) == ["accepted", "duplicate"]


def test_late_facts_rebuild_to_the_same_rows(
    ledger_app: Ledger, conn: Conn, settings: Settings, placing_from_here: PlacingFromHere
) -> None:
    """Every late fact at once (a purchase under a newer grant and heartbeat, a grant
    between heartbeats, a heartbeat under a newer grant, an old heartbeat, a late
    refund): the rows the log rebuilds are the rows the appends left."""
    append(
        ledger_app,
        *catalogue(),
        grant("alice", at=t(3)),
        play("alice", 10, at=t(6)),
        complete("pi_1", at=t(2)),
        grant("bob", at=t(3)),
        play("bob", 20, at=t(5)),
        grant("bob", at=t(4), expires=t(20)),
        grant("bob", at=t(8)),
        play("bob", 30, at=t(7)),
        play("bob", 96, at=t(6, 13)),
        refund("pi_1", "re_2", 10, at=t(9)),
        refund("pi_1", "re_1", 10, at=t(7)),
    )
    live = dump_all(conn)
    placing_from_here()  # verify's scratch tables, then the rebuild
    assert verify(settings) == []
    with open(os.devnull, "w") as quiet:
        rebuild(settings, stream=quiet)
    assert dump_all(conn) == live
