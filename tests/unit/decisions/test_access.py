"""Access and playback rules, idempotency keys and batches (docs/events.md), in memory."""

from __future__ import annotations

import json
from typing import Any

from ledger.service import Ledger
from ledger.upkeep.source import decode
from projections.changes import Delete
from projections.registry import changes_for
from tests.support import CONTENT, ORG, complete, grant, play, refund, start, t
from tests.unit.decisions.conftest import answers, rows, topics


def revoke(user_id: str, at: str | None = None) -> dict[str, Any]:
    return {
        "type": "access.revoke",
        "user_id": user_id,
        "content_id": CONTENT,
        "occurred_at": at or t(3),
    }


def test_the_same_grant_at_the_same_moment_is_a_duplicate(app: Ledger) -> None:
    assert answers(app, grant("bob"), grant("bob")) == ["accepted", "duplicate"]
    assert answers(app, grant("bob", at=t(2, 13))) == ["accepted"]


def test_a_grant_cannot_replace_a_purchase(app: Ledger) -> None:
    answers(app, complete("pi_1"))
    assert answers(app, grant("alice", at=t(3))) == ["invalid_state:access_type"]
    assert [r["access_type"] for r in rows(app, "content_access")] == ["purchased"]


def test_a_grant_or_revoke_is_not_dated_before_the_latest_grant_or_revoke(app: Ledger) -> None:
    answers(app, grant("bob", at=t(5)))
    assert answers(app, grant("bob", at=t(4)), revoke("bob", at=t(4))) == [
        "invalid_state:occurred_at",
        "invalid_state:occurred_at",
    ]


def test_a_revoke_of_access_never_granted_is_not_found(app: Ledger) -> None:
    assert answers(app, revoke("bob")) == ["not_found:content_id"]


def test_a_revoke_redelivered_or_of_a_row_already_gone_is_a_duplicate(app: Ledger) -> None:
    assert answers(app, grant("bob"), revoke("bob"), revoke("bob")) == [
        "accepted",
        "accepted",
        "duplicate",
    ]
    assert answers(app, revoke("bob", at=t(4))) == ["duplicate"]
    assert rows(app, "content_access") == []


def test_a_heartbeat_needs_unexpired_access(app: Ledger) -> None:
    assert answers(app, play("bob", 10)) == ["no_access:None"]
    answers(app, grant("bob", expires=t(3)))
    assert answers(app, play("bob", 10, at=t(2, 23))) == ["accepted"]
    assert answers(app, play("bob", 10, at=t(3))) == ["no_access:None"]


def test_a_heartbeat_before_the_access_began_is_no_access(app: Ledger) -> None:
    answers(app, grant("bob", at=t(5)))
    assert answers(app, play("bob", 10, at=t(4))) == ["no_access:occurred_at"]


def test_the_same_heartbeat_again_is_a_duplicate_even_once_the_access_is_gone(
    app: Ledger,
) -> None:
    answers(app, grant("bob"), play("bob", 10, at=t(3)), revoke("bob", at=t(3, 13)))
    assert answers(app, play("bob", 10, at=t(3))) == ["duplicate"]


def test_an_older_heartbeat_is_recorded_but_the_row_keeps_the_newest_position(
    app: Ledger,
) -> None:
    answers(app, grant("bob"), play("bob", 50, at=t(4)))
    assert answers(app, play("bob", 20, at=t(3))) == ["accepted"]
    (playback,) = rows(app, "video_playback")
    assert playback["position_seconds"] == 50
    # both heartbeats are in the playback store, none in the money log (issue 26)
    assert len(app.playback.records) == 2  # type: ignore[union-attr]
    assert "PlaybackProgressed" not in topics(app)


def test_completed_turns_true_at_95_percent_and_stays_true(app: Ledger) -> None:
    answers(app, grant("bob"), play("bob", 94, at=t(3)))
    assert [r["completed"] for r in rows(app, "video_playback")] == [False]
    answers(app, play("bob", 95, at=t(4)), play("bob", 10, at=t(5)))
    assert [r["completed"] for r in rows(app, "video_playback")] == [True]


def test_a_late_heartbeat_that_reached_95_percent_still_completes(app: Ledger) -> None:
    answers(app, grant("bob"), play("bob", 10, at=t(5)), play("bob", 99, at=t(4)))
    (playback,) = rows(app, "video_playback")
    assert (playback["position_seconds"], playback["completed"]) == (10, True)


def test_an_idempotency_key_again_is_a_duplicate_and_with_another_payload_a_conflict(
    app: Ledger,
) -> None:
    first = {**grant("bob"), "idempotency_key": "k1"}
    again = {**first, "occurred_at": t(2, 14)}
    other = {**grant("alice"), "idempotency_key": "k1"}
    assert answers(app, first, again, other) == [
        "accepted",
        "duplicate",
        "conflict:idempotency_key",
    ]
    assert topics(app).count("CommandKeyClaimed") == 1


def test_a_rejected_command_writes_nothing(app: Ledger) -> None:
    before = topics(app)
    assert answers(app, refund("pi_x", "re_1", 5), start("pi_1", customer="nobody")) == [
        "not_found:stripe_payment_intent_id",
        "not_found:customer_id",
    ]
    assert topics(app) == before


def test_an_atomic_batch_with_a_rejection_writes_nothing(app: Ledger) -> None:
    before = topics(app)
    assert answers(app, grant("bob"), play("nobody", 1), atomic=True) == [
        "rolled_back",
        "not_found:user_id",
    ]
    assert topics(app) == before
    assert answers(app, grant("bob"), play("bob", 1, at=t(3)), atomic=True) == [
        "accepted",
        "accepted",
    ]


def test_no_row_has_updated_at_before_created_at_after_a_late_grant(app: Ledger) -> None:
    answers(app, grant("bob", at=t(3)), play("bob", 10, at=t(6)), grant("bob", at=t(5)))
    (access,) = rows(app, "content_access")
    assert access["created_at"] <= access["updated_at"]
    assert access["last_accessed_at"] >= access["updated_at"]


def test_a_revocation_names_the_organization_of_its_grant(app: Ledger) -> None:
    """``AccessRevoked`` version 3 carries the content's organization (a revoke and a full
    refund's alike), so its row's deletion matches the whole key (on a distributed log,
    that organization's shard alone: docs/scaling.md "A revocation on facts")."""
    answers(app, grant("bob"), revoke("bob"), complete("pi_1"), refund("pi_1", "re_1", 1999))
    revoked = [
        decode(n.topic, n.state)
        for n in app.recorder.select_notifications(start=1, limit=10_000)
        if n.topic == "AccessRevoked"
    ]
    assert [(e.organization_id, e.reason) for e in revoked] == [(ORG, None), (ORG, "refunded")]
    # the events name people by subject (docs/privacy.md); the append resolves the rows'
    match = {"organization_id": ORG, "user_id": revoked[0].user_id, "content_id": CONTENT}
    assert changes_for(revoked[:1]) == [Delete("content_access", match)]


def test_a_revocation_stored_before_its_organization_deletes_by_user_and_content() -> None:
    """An ``AccessRevoked`` of version 2 (or 1) never named its organization: the upcast
    gives ``None`` and the projection deletes its row by (user, content), as it was
    written; the golden logs' revocations replay so (``test_golden_*``)."""
    old = {"user_id": "bob", "content_id": CONTENT, "reason": None, "identity": "i"}
    old |= {"stripe_payment_intent_id": None, "occurred_at": t(3), "class_version": 2}
    old |= {"timestamp": {"_type_": "datetime_iso", "_data_": "2026-01-03T12:00:00+00:00"}}
    old |= {"source": "cli", "correlation_id": None, "idempotency_key": None}
    event = decode("AccessRevoked", json.dumps(old).encode())
    assert event.organization_id is None
    match = {"user_id": "bob", "content_id": CONTENT}
    assert changes_for([event]) == [Delete("content_access", match)]
