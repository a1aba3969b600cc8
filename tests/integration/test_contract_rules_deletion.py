"""Contract rules of deletion: deleting a user cascades to its rows while the log keeps its
history, and content with purchases cannot be deleted (the deletions' part of
``test_contract_rules.py``).
"""

from __future__ import annotations

from typing import Any

import psycopg

from ledger.service import Ledger
from tests.support import (
    CONTENT,
    CONTENT_2,
    append,
    catalogue,
    complete,
    dump_all,
    event_count,
    grant,
    play,
    publish,
    refund,
    statuses,
    t,
    user,
)

Conn = psycopg.Connection[Any]


def test_deleting_a_user_cascades_but_the_log_keeps_history(ledger_app: Ledger, conn: Conn) -> None:
    append(
        ledger_app,
        *catalogue(),
        complete("pi_1"),
        play("alice", 50),
        publish(CONTENT_2, creator="alice", at=t(3)),
    )
    before = event_count(conn)
    results = append(
        ledger_app,
        {"type": "user.delete", "user_id": "alice", "occurred_at": t(6)},
        {"type": "user.delete", "user_id": "alice", "occurred_at": t(6)},
        user("alice"),
        refund("pi_1", "re_after_delete", 100, at=t(7)),
    )
    assert statuses(results) == ["accepted", "duplicate", "rejected:invalid_state", "accepted"]
    assert event_count(conn) > before
    tables = dump_all(conn)
    assert (
        tables["purchases"] == []
        and tables["content_access"] == []
        and tables["video_playback"] == []
    )
    assert conn.execute(
        "SELECT id::text, creator_id FROM content ORDER BY created_at"
    ).fetchall() == [
        (CONTENT, "creator"),
        (CONTENT_2, None),
    ]


def test_content_with_purchases_cannot_be_deleted(ledger_app: Ledger, conn: Conn) -> None:
    append(
        ledger_app,
        *catalogue(),
        publish(CONTENT_2, title="Free"),
        complete("pi_1"),
        grant("bob", CONTENT_2),
    )
    results = append(
        ledger_app,
        {"type": "content.delete", "content_id": CONTENT},
        {"type": "content.delete", "content_id": CONTENT_2},
        {"type": "content.delete", "content_id": CONTENT_2},
        publish(CONTENT_2, title="Free"),
        grant("bob", CONTENT_2, at=t(9)),
    )
    assert statuses(results) == [
        "rejected:invalid_state",
        "accepted",
        "duplicate",
        "rejected:invalid_state",
        "rejected:not_found",
    ]
    assert conn.execute(
        "SELECT count(*) FROM content_access WHERE content_id = %s", (CONTENT_2,)
    ).fetchone() == (0,)
