"""The purchases' rules (docs/events.md), in memory: the ``Purchase`` aggregate decides."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ledger.domain.aggregates import refund_shares
from ledger.domain.clock import canonical
from ledger.privacy.subjects import PREFIX
from ledger.service import Ledger
from tests.support import CONTENT, CONTENT_2, ORG, ORG_2, complete, refund, start, t
from tests.unit.decisions.conftest import answers, rows, run, topics


def fail(intent: str, at: str | None = None, **given: Any) -> dict[str, Any]:
    return {
        "type": "purchase.fail",
        "stripe_payment_intent_id": intent,
        "occurred_at": at or t(2, 12),
        **given,
    }


def test_a_start_again_is_a_duplicate_and_with_another_payload_a_conflict(app: Ledger) -> None:
    assert answers(app, start("pi_1"), start("pi_1"), start("pi_1", amount=5)) == [
        "accepted",
        "duplicate",
        "conflict:stripe_payment_intent_id",
    ]
    assert [r["status"] for r in rows(app, "purchases")] == ["pending"]


def test_a_purchase_that_exists_otherwise_cannot_be_started(app: Ledger) -> None:
    assert answers(app, complete("pi_1"), start("pi_1")) == [
        "accepted",
        "invalid_state:stripe_payment_intent_id",
    ]


def test_a_purchase_needs_a_live_customer_and_content(app: Ledger) -> None:
    assert answers(app, start("pi_1", customer="nobody")) == ["not_found:customer_id"]
    assert answers(app, complete("pi_1", content_id=CONTENT_2)) == ["not_found:content_id"]
    answers(app, {"type": "user.delete", "user_id": "bob"})
    assert answers(app, complete("pi_2", customer="bob")) == ["not_found:customer_id"]


def test_a_completion_records_the_purchase_and_grants_purchased_access(app: Ledger) -> None:
    assert answers(app, complete("pi_1")) == ["accepted"]
    assert topics(app)[-4:] == [
        "PurchaseOpened",
        "PurchaseCompleted",
        "AccessOpened",
        "AccessGranted",
    ]
    (access,) = rows(app, "content_access")
    assert (access["access_type"], access["expires_at"]) == ("purchased", None)
    assert access["granted_at"] == canonical(datetime.fromisoformat(t(2)))


def test_a_completion_again_is_a_duplicate_with_or_without_the_derived_organization(
    app: Ledger,
) -> None:
    assert answers(
        app,
        complete("pi_1"),
        complete("pi_1"),
        complete("pi_1", organization_id=ORG),
        complete("pi_1", amount=2999),
    ) == ["accepted", "duplicate", "duplicate", "conflict:stripe_payment_intent_id"]


def test_a_completion_after_a_start_repeats_what_the_start_fixed(app: Ledger) -> None:
    answers(app, start("pi_1"))
    assert answers(
        app,
        complete("pi_1", customer="bob"),
        complete("pi_1", content_id=CONTENT_2),
        complete("pi_1", amount=2999),
        complete("pi_1", currency="eur"),
    ) == [
        "invalid_state:customer_id",
        "invalid_state:content_id",
        "invalid_state:amount_paid_cents",
        "invalid_state:currency",
    ]


def test_a_completion_is_not_dated_before_the_start(app: Ledger) -> None:
    answers(app, start("pi_1", at=t(5)))
    assert answers(app, complete("pi_1", at=t(4))) == ["invalid_state:occurred_at"]
    assert answers(app, complete("pi_1", at=t(5))) == ["accepted"]


def test_a_failed_attempt_may_later_succeed_but_not_before_its_failure(app: Ledger) -> None:
    assert answers(app, start("pi_1"), fail("pi_1", at=t(3))) == ["accepted", "accepted"]
    assert answers(app, complete("pi_1", at=t(2, 23))) == ["invalid_state:occurred_at"]
    assert answers(app, complete("pi_1", at=t(3, 13))) == ["accepted"]
    assert [r["status"] for r in rows(app, "purchases")] == ["completed"]


def test_an_organization_other_than_the_contents_is_refused(app: Ledger) -> None:
    assert answers(app, complete("pi_1", organization_id=ORG_2)) == [
        "invalid_state:organization_id"
    ]


def test_only_a_pending_purchase_fails(app: Ledger) -> None:
    assert answers(app, complete("pi_1"), fail("pi_1", at=t(3))) == [
        "accepted",
        "invalid_state:stripe_payment_intent_id",
    ]


def test_a_failure_is_not_dated_before_the_start(app: Ledger) -> None:
    answers(app, start("pi_1", at=t(5)))
    assert answers(app, fail("pi_1", at=t(4))) == ["invalid_state:occurred_at"]


def test_a_failure_repeats_what_the_start_fixed_or_leaves_it_out(app: Ledger) -> None:
    answers(app, start("pi_1"))
    assert answers(app, fail("pi_1", amount_paid_cents=5)) == ["invalid_state:amount_paid_cents"]
    same = {"customer_id": "alice", "content_id": CONTENT, "amount_paid_cents": 1999}
    assert answers(app, fail("pi_1", **same), fail("pi_1"), fail("pi_1", currency="usd")) == [
        "accepted",
        "duplicate",
        "duplicate",
    ]


def test_a_failure_never_started_must_say_what_was_bought(app: Ledger) -> None:
    assert answers(app, fail("pi_1", customer_id="alice")) == ["not_found:stripe_payment_intent_id"]
    given = {"customer_id": "alice", "content_id": CONTENT, "amount_paid_cents": 5}
    assert answers(app, fail("pi_1", **given, currency="usd")) == ["accepted"]
    assert [r["status"] for r in rows(app, "purchases")] == ["failed"]


def test_a_failure_after_the_customer_was_deleted_is_not_found(app: Ledger) -> None:
    answers(app, start("pi_1"), {"type": "user.delete", "user_id": "alice"})
    assert answers(app, fail("pi_1")) == ["not_found:customer_id"]


def test_a_failure_after_the_customer_was_deleted_names_no_subject(app: Ledger) -> None:
    """The command names no customer (or the deleted one): the answer says whose row is
    gone by role, never by the subject the log recorded, which the caller never gave and
    which differs from one ledger to the next (found by test_group_equivalence)."""
    answers(app, start("pi_1"), {"type": "user.delete", "user_id": "alice"})
    for named in ({}, {"customer_id": "alice"}):
        (result,) = run(app, fail("pi_1", **named))
        assert result.error is not None and result.error.field == "customer_id"
        assert result.error.message == "the purchase's customer was deleted"
        assert PREFIX not in result.error.message


def test_a_refund_again_is_a_duplicate_and_another_under_its_id_a_conflict(app: Ledger) -> None:
    answers(app, complete("pi_1"))
    assert answers(app, refund("pi_1", "re_1", 100), refund("pi_1", "re_1", 100)) == [
        "accepted",
        "duplicate",
    ]
    assert answers(app, refund("pi_1", "re_1", 200)) == ["conflict:refund_id"]


def test_a_refund_of_an_unknown_purchase_is_not_found(app: Ledger) -> None:
    assert answers(app, refund("pi_x", "re_1", 100)) == ["not_found:stripe_payment_intent_id"]


def test_only_a_completed_purchase_is_refunded(app: Ledger) -> None:
    answers(app, start("pi_1"))
    assert answers(app, refund("pi_1", "re_1", 100)) == ["invalid_state:stripe_payment_intent_id"]


def test_a_refund_above_the_remainder_is_invalid_state(app: Ledger) -> None:
    answers(app, complete("pi_1"), refund("pi_1", "re_1", 1000))
    assert answers(app, refund("pi_1", "re_2", 1000)) == ["invalid_state:amount_cents"]
    assert answers(app, refund("pi_1", "re_3", 999)) == ["accepted"]


def test_a_refund_is_not_dated_before_the_completion(app: Ledger) -> None:
    answers(app, complete("pi_1", at=t(5)))
    assert answers(app, refund("pi_1", "re_1", 100, at=t(4))) == ["invalid_state:occurred_at"]


def test_a_refund_dated_before_an_earlier_one_is_recorded_and_updated_at_stays(
    app: Ledger,
) -> None:
    answers(app, complete("pi_1"), refund("pi_1", "re_1", 100, at=t(9)))
    (before,) = rows(app, "purchases")
    assert answers(app, refund("pi_1", "re_2", 100, at=t(8))) == ["accepted"]
    (after,) = rows(app, "purchases")
    assert after["refunded_amount_cents"] == 200
    assert after["updated_at"] == before["updated_at"]


def test_a_full_refund_revokes_the_access_it_gave(app: Ledger) -> None:
    answers(app, complete("pi_1"), refund("pi_1", "re_1", 1000))
    assert len(rows(app, "content_access")) == 1
    assert answers(app, refund("pi_1", "re_2", 999)) == ["accepted"]
    assert topics(app)[-1] == "AccessRevoked"
    assert rows(app, "content_access") == []
    assert [r["status"] for r in rows(app, "purchases")] == ["refunded"]


def test_a_full_refund_keeps_the_access_another_purchase_backs(app: Ledger) -> None:
    answers(app, complete("pi_1"), complete("pi_2", at=t(2, 13)))
    assert answers(app, refund("pi_1", "re_1", 1999)) == ["accepted"]
    assert topics(app)[-1] == "AccessPurchaseReleased"
    assert len(rows(app, "content_access")) == 1


def test_a_refund_is_recorded_after_the_customer_was_deleted(app: Ledger) -> None:
    answers(app, complete("pi_1"), {"type": "user.delete", "user_id": "alice"})
    assert answers(app, refund("pi_1", "re_1", 1999)) == ["accepted"]
    assert "PurchaseRefunded" in topics(app)


@given(
    amount=st.integers(1, 10**9),
    data=st.data(),
)
def test_refund_shares_never_exceed_a_partys_share_and_add_up(amount: int, data: Any) -> None:
    platform = data.draw(st.integers(0, amount))
    organization = data.draw(st.integers(0, amount - platform))
    refunded = data.draw(st.integers(0, amount))
    shares = refund_shares(refunded, amount, platform, organization)
    assert sum(shares) == refunded
    paid_shares = (platform, organization, amount - platform - organization)
    for share, paid in zip(shares, paid_shares, strict=True):
        assert 0 <= share <= paid


def test_a_differing_customer_is_refused_without_naming_the_recorded_one(app: Ledger) -> None:
    """The purchase's customer is another person: the refusal names the caller's id only,
    never theirs nor the subject the log knows them by (docs/privacy.md)."""
    run(app, start("pi_1"))
    recorded = rows(app, "purchases")[0]["customer_id"]
    (result,) = run(app, complete("pi_1", customer="bob"))
    assert result.error is not None and result.error.field == "customer_id"
    message = result.error.message
    assert "'bob'" in message and "differs from the customer recorded for pi_1" in message
    assert recorded != "bob" and recorded not in message
    assert PREFIX not in message
