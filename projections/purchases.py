"""purchases: one row per payment intent, from pending to completed, failed or refunded.

Rows of a deleted customer leave with the customer (ON DELETE CASCADE); the log
keeps them and the audit still counts them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ledger.domain import events as ev
from ledger.domain import ids
from projections.changes import Delete, RowChange, Update, Upsert

TABLE = "purchases"
# organization_id first: the table's unique keys carry it (migration 0013, docs/scaling.md)
KEY = ("organization_id", "stripe_payment_intent_id")
# the events ``changes`` maps (the registry sends it no others)
EVENTS = (
    ev.PurchaseStarted,
    ev.PurchaseCompleted,
    ev.PurchaseFailed,
    ev.PurchaseRefunded,
    ev.UserDeleted,
    ev.UserLeftOrganization,
)


def _row(
    event: ev.PurchaseStarted | ev.PurchaseCompleted | ev.PurchaseFailed, status: str
) -> dict[str, Any]:
    return {
        "id": str(ids.purchase_id(event.stripe_payment_intent_id)),
        "customer_id": event.customer_id,
        "content_id": event.content_id,
        "organization_id": event.organization_id,
        "stripe_payment_intent_id": event.stripe_payment_intent_id,
        "status": status,
        "amount_paid_cents": event.amount_paid_cents,
        "currency": event.currency,
        # refunds come only after completion, so every (re)start of the row is at 0
        "refunded_amount_cents": 0,
    }


def changes(event: Any) -> Iterator[RowChange]:
    if isinstance(event, ev.PurchaseStarted):
        yield Upsert(TABLE, KEY, _row(event, "pending"), event.occurred_at)
    elif isinstance(event, ev.PurchaseCompleted):
        row = _row(event, "completed")
        row.update(
            revenue_split_config_id=event.revenue_split_config_id,
            platform_fee_cents=event.platform_fee_cents,
            organization_fee_cents=event.organization_fee_cents,
            creator_payout_cents=event.creator_payout_cents,
        )
        yield Upsert(TABLE, KEY, row, event.occurred_at)
    elif isinstance(event, ev.PurchaseFailed):
        yield Upsert(TABLE, KEY, _row(event, "failed"), event.occurred_at)
    elif isinstance(event, ev.PurchaseRefunded):
        yield Update(
            TABLE,
            {
                "organization_id": event.organization_id,
                "stripe_payment_intent_id": event.stripe_payment_intent_id,
            },
            {"refunded_amount_cents": event.refunded_amount_cents, "status": event.status},
            event.occurred_at if event.newest else None,  # a late refund: updated_at stays
        )
    elif isinstance(event, ev.UserDeleted):
        yield Delete(TABLE, {"customer_id": event.user_id})
    elif isinstance(event, ev.UserLeftOrganization):  # one organization's part of it
        yield Delete(
            TABLE, {"customer_id": event.user_id, "organization_id": event.organization_id}
        )
