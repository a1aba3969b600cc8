"""The purchase's commands, keyed by the Stripe payment intent: start, complete, fail,
refund."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import model_validator

from ledger.commands.base import Command
from ledger.commands.fields import Amount, Currency, Fee, Id, Text1000


class StartPurchase(Command):
    type: Literal["purchase.start"] = "purchase.start"
    stripe_payment_intent_id: Id
    customer_id: Id
    content_id: UUID
    amount_paid_cents: Amount
    currency: Currency


class CompletePurchase(Command):
    type: Literal["purchase.complete"] = "purchase.complete"
    stripe_payment_intent_id: Id
    customer_id: Id
    content_id: UUID
    amount_paid_cents: Amount
    currency: Currency
    platform_fee_cents: Fee
    organization_fee_cents: Fee
    creator_payout_cents: Fee
    revenue_split_config_id: UUID | None = None
    organization_id: UUID | None = None

    @model_validator(mode="after")
    def _split_adds_up(self) -> CompletePurchase:
        total = self.platform_fee_cents + self.organization_fee_cents + self.creator_payout_cents
        if total != self.amount_paid_cents:
            raise ValueError(
                "platform_fee_cents + organization_fee_cents + creator_payout_cents "
                f"= {total} must equal amount_paid_cents = {self.amount_paid_cents}"
            )
        return self


class FailPurchase(Command):
    type: Literal["purchase.fail"] = "purchase.fail"
    stripe_payment_intent_id: Id
    customer_id: Id | None = None
    content_id: UUID | None = None
    amount_paid_cents: Amount | None = None
    currency: Currency | None = None


class RefundPurchase(Command):
    type: Literal["purchase.refund"] = "purchase.refund"
    stripe_payment_intent_id: Id
    refund_id: Id
    amount_cents: Amount
    reason: Text1000 | None = None
