"""Handlers of purchases: start, complete, fail, refund.

The purchase's rules (repetition, status, the same customer, content, amount and
currency, business time) are the ``Purchase`` aggregate's; a handler gets the
aggregates, calls them and records them. The customer and the content are checked
after the purchase's own rules, so a redelivery stays a duplicate whatever became of
them since.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from ledger.commands.base import Command, Fingerprint
from ledger.commands.purchases import CompletePurchase, FailPurchase, RefundPurchase, StartPurchase
from ledger.domain import ids
from ledger.domain.aggregates import Access, CommandKey, Content, Purchase, Terms
from ledger.domain.errors import Duplicate, InvalidState, NotFound
from ledger.domain.provenance import PROCESSOR
from ledger.service.access import last_heartbeat
from ledger.service.catalogue import live_content, live_user
from ledger.service.registry import handles
from ledger.service.unit_of_work import UnitOfWork


def _bought(command: StartPurchase | CompletePurchase) -> list[UUID]:
    """The purchase, its customer, its content, and the customer's access to it."""
    content_id = str(command.content_id)
    return [
        ids.purchase_id(command.stripe_payment_intent_id),
        ids.user_id(command.customer_id),
        ids.content_id(content_id),
        ids.access_id(command.customer_id, content_id),
    ]


@handles(StartPurchase, needs=_bought)
def start_purchase(
    uow: UnitOfWork, command: StartPurchase, occurred: str, fingerprint: Fingerprint
) -> None:
    payment_intent = command.stripe_payment_intent_id
    purchase = uow.get(ids.purchase_id(payment_intent), Purchase)
    if purchase is not None:
        purchase.check_start(fingerprint.forms)
    live_user(uow, command.customer_id, "customer_id")
    content = live_content(uow, str(command.content_id))
    purchase = Purchase.open(payment_intent, occurred)
    terms = Terms(
        command.customer_id,
        content.content_id,
        content.organization_id,
        command.amount_paid_cents,
        command.currency,
    )
    purchase.start(terms, fingerprint.canonical, occurred)
    uow.record(purchase)


def _processor_time(
    command: Command, purchase: Purchase | None, occurred: str
) -> tuple[str, str | None]:
    """The business time a completion, failure or refund takes, and the processor's own
    time when the payment processor reported it (``Purchase.effective_time``)."""
    if command.provenance.source != PROCESSOR:
        return occurred, None
    if purchase is None:
        return occurred, occurred
    return purchase.effective_time(occurred, from_processor=True), occurred


def _completion_derived(uow: UnitOfWork, command: CompletePurchase) -> dict[str, Any]:
    """The content's organization: ``organization_id`` given equal to it or not."""
    content = uow.get(ids.content_id(str(command.content_id)), Content)
    return {"organization_id": content.organization_id} if content else {}


@handles(
    CompletePurchase,
    needs=lambda command: [
        *_bought(command),
        ids.playback_id(command.customer_id, str(command.content_id)),
    ],
    derived=_completion_derived,
)
def complete_purchase(
    uow: UnitOfWork, command: CompletePurchase, occurred: str, fingerprint: Fingerprint
) -> None:
    payment_intent = command.stripe_payment_intent_id
    content_id = str(command.content_id)
    purchase = uow.get(ids.purchase_id(payment_intent), Purchase)
    occurred, processor_time = _processor_time(command, purchase, occurred)
    if purchase is not None:
        purchase.check_complete(
            command.customer_id,
            content_id,
            command.amount_paid_cents,
            command.currency,
            fingerprint.forms,
            occurred,
        )
    live_user(uow, command.customer_id, "customer_id")
    content = live_content(uow, content_id)
    given = command.organization_id
    if given is not None and str(given) != content.organization_id:
        raise InvalidState(
            f"organization_id {given} is not the organization of content "
            f"{content_id} ({content.organization_id})",
            "organization_id",
        )
    access_id = ids.access_id(command.customer_id, content_id)
    access = uow.get(access_id, Access)
    if purchase is None:
        purchase = Purchase.open(payment_intent, occurred)
    split_id = command.revenue_split_config_id
    terms = Terms(
        command.customer_id,
        content_id,
        content.organization_id,
        command.amount_paid_cents,
        command.currency,
    )
    purchase.complete(
        terms,
        content.creator_id,
        (command.platform_fee_cents, command.organization_fee_cents, command.creator_payout_cents),
        str(split_id) if split_id else None,
        fingerprint.canonical,
        occurred,
        processor_time,
    )
    uow.record(purchase)
    if access is None:
        access = Access.open(command.customer_id, content_id, occurred)
    access.grant_purchase(
        content.organization_id,
        payment_intent,
        last_heartbeat(uow, command.customer_id, content_id),
        occurred,
    )
    uow.record(access)


def _failure_derived(uow: UnitOfWork, command: FailPurchase) -> dict[str, Any]:
    """What a started purchase fixed: the failure may repeat it or leave it out."""
    purchase = uow.get(ids.purchase_id(command.stripe_payment_intent_id), Purchase)
    if purchase is None or not purchase.started:
        return {}
    return {
        "customer_id": purchase.customer_id,
        "content_id": purchase.content_id,
        "amount_paid_cents": purchase.amount_paid_cents,
        "currency": purchase.currency,
    }


@handles(
    FailPurchase,
    needs=lambda command: [ids.purchase_id(command.stripe_payment_intent_id)],
    derived=_failure_derived,
)
def fail_purchase(
    uow: UnitOfWork, command: FailPurchase, occurred: str, fingerprint: Fingerprint
) -> None:
    payment_intent = command.stripe_payment_intent_id
    purchase = uow.get(ids.purchase_id(payment_intent), Purchase)
    occurred, processor_time = _processor_time(command, purchase, occurred)
    given_content = str(command.content_id) if command.content_id is not None else None
    if purchase is not None:
        purchase.check_fail(
            command.customer_id,
            given_content,
            command.amount_paid_cents,
            command.currency,
            fingerprint.forms,
            occurred,
        )
        # the purchases row is gone with a deleted customer: nothing left to fail
        live_user(uow, purchase.customer_id, "customer_id", shown="the purchase's customer")
        live_content(uow, purchase.content_id)
        terms = purchase.terms
    else:
        customer_id, given_content, amount, currency = Purchase.failure_details(
            payment_intent,
            command.customer_id,
            given_content,
            command.amount_paid_cents,
            command.currency,
        )
        live_user(uow, customer_id, "customer_id")
        content = live_content(uow, given_content)
        terms = Terms(customer_id, content.content_id, content.organization_id, amount, currency)
        purchase = Purchase.open(payment_intent, occurred)
    purchase.fail(terms, fingerprint.canonical, occurred, processor_time)
    uow.record(purchase)


@handles(
    RefundPurchase,
    needs=lambda command: [
        ids.command_key_id("refund_id", command.refund_id),
        ids.purchase_id(command.stripe_payment_intent_id),
    ],
)
def refund_purchase(
    uow: UnitOfWork, command: RefundPurchase, occurred: str, fingerprint: Fingerprint
) -> None:
    key_id = ids.command_key_id("refund_id", command.refund_id)
    key = uow.get(key_id, CommandKey)
    if key is not None:
        key.check_same(fingerprint.forms, "refund_id")
        raise Duplicate
    payment_intent = command.stripe_payment_intent_id
    purchase = uow.get(ids.purchase_id(payment_intent), Purchase)
    if purchase is None or purchase.status is None:
        raise NotFound(f"purchase {payment_intent} is not recorded", "stripe_payment_intent_id")
    occurred, processor_time = _processor_time(command, purchase, occurred)
    access = None
    if command.amount_cents == purchase.refundable_cents:
        access = uow.get(ids.access_id(purchase.customer_id, purchase.content_id), Access)
    purchase.refund(
        command.refund_id, command.amount_cents, command.reason, occurred, processor_time
    )
    uow.record(purchase)
    uow.record(
        CommandKey.claim(
            "refund_id", command.refund_id, command.type, fingerprint.canonical, occurred
        )
    )
    if access is not None and purchase.status == "refunded":
        access.purchase_refunded(payment_intent, occurred)
        uow.record(access)
