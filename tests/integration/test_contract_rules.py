"""Every rule of the contract's checkout commands, through the Python API."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from ledger.service import Ledger
from tests.support import (
    CONTENT,
    CONTENT_2,
    ORG,
    ORG_2,
    append,
    catalogue,
    complete,
    dump_all,
    event_count,
    grant,
    org,
    play,
    publish,
    refund,
    start,
    statuses,
    t,
    user,
)

Conn = psycopg.Connection[Any]


def test_catalogue_commands_project_rows(ledger_app: Ledger, conn: Conn) -> None:
    assert statuses(append(ledger_app, *catalogue())) == ["accepted"] * 5
    assert conn.execute(
        "SELECT id::text, name, created_at = updated_at FROM organizations"
    ).fetchall() == [(ORG, "Northwind", True)]
    assert [r[0] for r in conn.execute("SELECT id FROM users ORDER BY id")] == [
        "alice",
        "bob",
        "creator",
    ]
    assert conn.execute(
        "SELECT organization_id::text, creator_id, title FROM content"
    ).fetchall() == [(ORG, "creator", "A video")]


def test_registration_repeats_are_duplicates_and_changes_are_conflicts(ledger_app: Ledger) -> None:
    append(ledger_app, *catalogue())
    results = append(
        ledger_app,
        org(),
        org(name="Other name"),
        user("alice"),
        publish(),
        publish(title="Another title"),
    )
    assert statuses(results) == [
        "duplicate",
        "rejected:conflict",
        "duplicate",
        "duplicate",
        "rejected:conflict",
    ]
    assert results[1].error is not None and results[1].error.field == "organization_id"


def test_references_to_unknown_things_are_not_found(ledger_app: Ledger) -> None:
    append(ledger_app, *catalogue())
    results = append(
        ledger_app,
        publish(content_id=CONTENT_2, organization_id=ORG_2),
        publish(content_id=CONTENT_2, creator="nobody"),
        complete("pi_1", customer="nobody"),
        complete("pi_1", content_id=CONTENT_2),
        refund("pi_unknown", "re_1", 100),
        grant("nobody"),
        {"type": "user.delete", "user_id": "nobody"},
        {"type": "content.delete", "content_id": CONTENT_2},
    )
    assert statuses(results) == ["rejected:not_found"] * 8
    assert [r.error.field for r in results if r.error] == [
        "organization_id",
        "creator_id",
        "customer_id",
        "content_id",
        "stripe_payment_intent_id",
        "user_id",
        "user_id",
        "content_id",
    ]


def test_purchase_lifecycle_and_access(ledger_app: Ledger, conn: Conn) -> None:
    append(ledger_app, *catalogue())
    assert statuses(append(ledger_app, start("pi_1"))) == ["accepted"]
    assert conn.execute("SELECT status, platform_fee_cents FROM purchases").fetchall() == [
        ("pending", None)
    ]
    assert conn.execute("SELECT count(*) FROM content_access").fetchone() == (0,)
    assert statuses(append(ledger_app, complete("pi_1", at=t(2, 13)))) == ["accepted"]
    assert conn.execute(
        "SELECT status, organization_id::text, platform_fee_cents, organization_fee_cents,"
        " creator_payout_cents, refunded_amount_cents, created_at::text, updated_at::text"
        " FROM purchases"
    ).fetchall() == [
        ("completed", ORG, 199, 800, 1000, 0, "2026-01-02 11:00:00+00", "2026-01-02 13:00:00+00")
    ]
    assert conn.execute(
        "SELECT access_type, granted_at::text, expires_at FROM content_access"
    ).fetchall() == [("purchased", "2026-01-02 13:00:00+00", None)]


def test_complete_must_repeat_the_started_purchase(ledger_app: Ledger) -> None:
    append(ledger_app, *catalogue(), start("pi_1"))
    results = append(
        ledger_app,
        complete("pi_1", amount=2999, fees=(299, 800)),
        complete("pi_1", currency="eur"),
        complete("pi_1", customer="bob"),
    )
    assert statuses(results) == ["rejected:invalid_state"] * 3
    assert [r.error.field for r in results if r.error] == [
        "amount_paid_cents",
        "currency",
        "customer_id",
    ]


def test_organization_must_be_the_contents(ledger_app: Ledger) -> None:
    append(ledger_app, *catalogue(), org(ORG_2, "Other"))
    results = append(
        ledger_app, complete("pi_1", organization_id=ORG_2), complete("pi_2", organization_id=ORG)
    )
    assert statuses(results) == ["rejected:invalid_state", "accepted"]
    assert results[0].error is not None and results[0].error.field == "organization_id"


def test_fail_rules(ledger_app: Ledger, conn: Conn) -> None:
    append(ledger_app, *catalogue(), start("pi_1"), complete("pi_2"))
    results = append(
        ledger_app,
        {"type": "purchase.fail", "stripe_payment_intent_id": "pi_1", "occurred_at": t(3)},
        {"type": "purchase.fail", "stripe_payment_intent_id": "pi_1", "occurred_at": t(3)},
        {"type": "purchase.fail", "stripe_payment_intent_id": "pi_2"},
        {"type": "purchase.fail", "stripe_payment_intent_id": "pi_3"},
        {
            "type": "purchase.fail",
            "stripe_payment_intent_id": "pi_3",
            "customer_id": "bob",
            "content_id": CONTENT,
            "amount_paid_cents": 500,
            "currency": "EUR",
        },
    )
    assert statuses(results) == [
        "accepted",
        "duplicate",
        "rejected:invalid_state",
        "rejected:not_found",
        "accepted",
    ]
    rows = conn.execute(
        "SELECT stripe_payment_intent_id, status, currency FROM purchases ORDER BY 1"
    ).fetchall()
    assert rows == [
        ("pi_1", "failed", "usd"),
        ("pi_2", "completed", "usd"),
        ("pi_3", "failed", "eur"),
    ]


def test_refunds_add_up_to_at_most_the_amount_paid(ledger_app: Ledger, conn: Conn) -> None:
    append(ledger_app, *catalogue(), complete("pi_1"), start("pi_2"))
    results = append(
        ledger_app,
        refund("pi_1", "re_1", 999),
        refund("pi_1", "re_2", 5000),
        refund("pi_2", "re_3", 10),
        refund("pi_1", "re_1", 999),
        refund("pi_1", "re_1", 998),
    )
    assert statuses(results) == [
        "accepted",
        "rejected:invalid_state",
        "rejected:invalid_state",
        "duplicate",
        "rejected:conflict",
    ]
    assert results[1].error is not None
    assert results[1].error.as_dict() == {
        "code": "invalid_state",
        "message": "refund of 5000 exceeds the 1000 still refundable",
        "field": "amount_cents",
    }
    assert conn.execute(
        "SELECT status, refunded_amount_cents FROM purchases"
        " WHERE stripe_payment_intent_id = 'pi_1'"
    ).fetchone() == ("completed", 999)
    assert conn.execute("SELECT count(*) FROM content_access").fetchone() == (1,)
    assert statuses(append(ledger_app, refund("pi_1", "re_4", 1000, at=t(5)))) == ["accepted"]
    assert conn.execute(
        "SELECT status, refunded_amount_cents, updated_at::text FROM purchases"
        " WHERE stripe_payment_intent_id = 'pi_1'"
    ).fetchone() == ("refunded", 1999, "2026-01-05 12:00:00+00")
    assert conn.execute("SELECT count(*) FROM content_access").fetchone() == (0,)
    assert statuses(append(ledger_app, refund("pi_1", "re_5", 1))) == ["rejected:invalid_state"]


def test_full_refund_keeps_access_another_purchase_still_gives(
    ledger_app: Ledger, conn: Conn
) -> None:
    append(ledger_app, *catalogue(), complete("pi_1"), complete("pi_2", at=t(3)))
    assert statuses(append(ledger_app, refund("pi_1", "re_1", 1999))) == ["accepted"]
    assert conn.execute("SELECT access_type FROM content_access").fetchall() == [("purchased",)]
    assert statuses(append(ledger_app, refund("pi_2", "re_2", 1999, at=t(6)))) == ["accepted"]
    assert conn.execute("SELECT count(*) FROM content_access").fetchone() == (0,)


def test_grants_revokes_and_the_purchased_row(ledger_app: Ledger, conn: Conn) -> None:
    append(ledger_app, *catalogue(), complete("pi_1"))
    results = append(
        ledger_app,
        grant("alice"),
        grant("bob", expires=t(9)),
        grant("bob", expires=t(9)),
        grant("bob", access_type="complimentary", at=t(3)),
        {"type": "access.revoke", "user_id": "bob", "content_id": CONTENT, "occurred_at": t(4)},
        {"type": "access.revoke", "user_id": "bob", "content_id": CONTENT, "occurred_at": t(4)},
        {"type": "access.revoke", "user_id": "creator", "content_id": CONTENT, "occurred_at": t(4)},
    )
    assert statuses(results) == [
        "rejected:invalid_state",
        "accepted",
        "duplicate",
        "accepted",
        "accepted",
        "duplicate",
        "rejected:not_found",
    ]
    assert conn.execute(
        "SELECT user_id, access_type FROM content_access ORDER BY 1"
    ).fetchall() == [("alice", "purchased")]


def test_a_purchase_upgrades_a_grant_to_permanent(ledger_app: Ledger, conn: Conn) -> None:
    append(ledger_app, *catalogue(), grant("alice", expires=t(9), at=t(1, 23)), complete("pi_1"))
    assert conn.execute(
        "SELECT access_type, granted_at::text, expires_at, created_at::text FROM content_access"
    ).fetchall() == [("purchased", "2026-01-02 12:00:00+00", None, "2026-01-01 23:00:00+00")]


def test_expires_at_must_lie_after_occurred_at(ledger_app: Ledger) -> None:
    append(ledger_app, *catalogue())
    results = append(
        ledger_app, grant("bob", at=t(5), expires=t(5)), grant("bob", at=t(5), expires=t(4))
    )
    assert statuses(results) == ["rejected:validation_error"] * 2
    assert {r.error.field for r in results if r.error} == {"expires_at"}


def test_playback_needs_unexpired_access_and_completes_at_95_percent(
    ledger_app: Ledger, conn: Conn
) -> None:
    append(ledger_app, *catalogue(), grant("bob", at=t(2), expires=t(6)))
    results = append(
        ledger_app,
        play("alice", 10),
        play("bob", 94, at=t(3)),
        play("bob", 95, at=t(4)),
        play("bob", 20, at=t(5)),
        play("bob", 20, at=t(5)),
        play("bob", 30, at=t(6)),
        play("bob", 101, at=t(5, 13)),
    )
    assert statuses(results) == [
        "rejected:no_access",
        "accepted",
        "accepted",
        "accepted",
        "duplicate",
        "rejected:no_access",
        "rejected:validation_error",
    ]
    assert conn.execute(
        "SELECT position_seconds, completed, created_at::text, updated_at::text FROM video_playback"
    ).fetchall() == [(20, True, "2026-01-03 12:00:00+00", "2026-01-05 12:00:00+00")]
    assert conn.execute(
        "SELECT last_accessed_at::text, updated_at::text FROM content_access"
    ).fetchall() == [("2026-01-05 12:00:00+00", "2026-01-05 12:00:00+00")]


def test_idempotency_keys_hold_for_any_command(ledger_app: Ledger, conn: Conn) -> None:
    append(ledger_app, *catalogue())
    first = grant("bob", at=t(2)) | {"idempotency_key": "k-1"}
    later = grant("bob", at=t(3)) | {"idempotency_key": "k-1"}
    other = grant("bob", access_type="preview", at=t(3)) | {"idempotency_key": "k-1"}
    results = append(ledger_app, first, later, other)
    assert statuses(results) == ["accepted", "duplicate", "rejected:conflict"]
    assert results[2].error is not None and results[2].error.field == "idempotency_key"
    assert conn.execute("SELECT granted_at::text FROM content_access").fetchone() == (
        "2026-01-02 12:00:00+00",
    )


def test_rejected_commands_write_nothing(ledger_app: Ledger, conn: Conn) -> None:
    append(ledger_app, *catalogue(), complete("pi_1"))
    events, tables = event_count(conn), dump_all(conn)
    results = append(
        ledger_app,
        refund("pi_1", "re_x", 999_999),
        grant("alice"),
        play("bob", 1),
        complete("pi_9", customer="ghost"),
        '{"type": "purchase.refund", "stripe_payment_intent_id": "pi_1"}',
        "{not json",
        '{"type": "user.register", "user_id": "x", "surprise": 1}',
    )
    assert all(r.status == "rejected" for r in results)
    assert event_count(conn) == events
    assert dump_all(conn) == tables


def test_positions_grow_and_name_the_commands_last_event(ledger_app: Ledger, conn: Conn) -> None:
    results = append(ledger_app, *catalogue(), complete("pi_1"))
    positions = [r.position for r in results]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert conn.execute("SELECT max(notification_id) FROM ledger_events").fetchone() == (
        positions[-1],
    )


def test_read_your_writes_from_another_connection(ledger_app: Ledger, settings: Any) -> None:
    append(ledger_app, *catalogue())
    with psycopg.connect(settings.url) as other:
        for n in range(5):
            assert append(ledger_app, complete(f"pi_{n}", at=t(2, 12, n)))[0].status == "accepted"
            count = other.execute(f"SELECT count(*) FROM {settings.schema}.purchases").fetchone()
            other.commit()
            assert count == (n + 1,)


@pytest.mark.parametrize("currency", ["USD", "usd", "Eur"])
def test_currencies_are_stored_lower_case(ledger_app: Ledger, conn: Conn, currency: str) -> None:
    append(ledger_app, *catalogue(), complete("pi_1", currency=currency))
    assert conn.execute("SELECT currency FROM purchases").fetchone() == (currency.lower(),)
