"""The purchase: the money side of the ledger, keyed by its Stripe payment intent.

Its rules live here, as the refund's always did: a start, completion or failure checks
the purchase's own state and repetition (``check_start``, ``check_complete``,
``check_fail``) before the service looks at the customer and the content, then
records its event (``start``, ``complete``, ``fail``); ``refund`` checks and records
in one call.

Business time from the payment processor (``effective_time``): a completion, failure or
refund that the processor reports (Stripe's webhook) is never refused for its order
against a time this ledger stamped itself. Stripe's clock has whole seconds and its own
skew, and every redelivery repeats the same time, so a refusal would be for ever while
the customer has paid. Such a fact takes the later of its own time and the purchase's
last event's as its ``occurred_at``, and keeps its own as ``processor_occurred_at``.
Facts from any other source keep the rule that business time runs forward.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass

from eventsourcing.domain import Aggregate

from ledger.domain import clock, ids
from ledger.domain import events as ev
from ledger.domain.errors import Conflict, Duplicate, InvalidState, NotFound
from ledger.domain.topics import topic


def refund_shares(
    refunded_total: int, amount: int, platform_fee: int, organization_fee: int
) -> tuple[int, int, int]:
    """What each party has returned after refunds totalling ``refunded_total``.

    The contract's cumulative rule: of R refunded of A split (p, o, c), the platform
    has returned ceil(R*p/A), the creator floor(R*c/A), the organization the rest.
    Each stays within 0 and its share (the organization's rest lies strictly between
    R*o/A - 1 and R*o/A + 1), so no party's net goes below zero, and rounding never
    drifts across refunds. Python integers are exact, so R*p cannot overflow.
    """
    creator_fee = amount - platform_fee - organization_fee
    platform = -(-refunded_total * platform_fee // amount)  # ceil
    creator = refunded_total * creator_fee // amount
    return platform, refunded_total - platform - creator, creator


@dataclass(frozen=True)
class Terms:
    """What a purchase is of: who buys which content of which organization, for how much."""

    customer_id: str
    content_id: str
    organization_id: str
    amount_paid_cents: int
    currency: str


@topic("Purchase")
class Purchase(Aggregate):
    """A purchase, keyed by its Stripe payment intent."""

    def __init__(self, stripe_payment_intent_id: str, occurred_at: str) -> None:
        self.stripe_payment_intent_id = stripe_payment_intent_id
        self.status: str | None = None
        self.customer_id = ""
        self.content_id = ""
        self.organization_id = ""
        self.creator_id = ""
        self.amount_paid_cents = 0
        self.currency = ""
        self.platform_fee_cents = 0
        self.organization_fee_cents = 0
        self.creator_payout_cents = 0
        self.refunded_amount_cents = 0
        # fingerprint of the accepted command, by command type: the idempotency record
        self.fingerprints: dict[str, str] = {}
        self.started = False  # a purchase.start fixed customer, content, amount, currency
        self.changed_at: str | None = None  # the latest start, completion or failure
        self.completed_at: str | None = None
        self.updated_at: str | None = None  # the row's: never moves back

    def when(self, event: ev.LedgerEvent) -> None:
        if isinstance(event, ev.PurchaseStarted | ev.PurchaseCompleted | ev.PurchaseFailed):
            self.customer_id = event.customer_id
            self.content_id = event.content_id
            self.organization_id = event.organization_id
            self.amount_paid_cents = event.amount_paid_cents
            self.currency = event.currency
            self.changed_at = event.occurred_at
            self.updated_at = event.occurred_at
        elif isinstance(event, ev.PurchaseRefunded) and event.newest:
            self.updated_at = event.occurred_at
        if isinstance(event, ev.PurchaseStarted):
            self.status = "pending"
            self.started = True
            self.fingerprints["purchase.start"] = event.fingerprint
        elif isinstance(event, ev.PurchaseCompleted):
            self.status = "completed"
            self.completed_at = event.occurred_at
            self.creator_id = event.creator_id
            self.platform_fee_cents = event.platform_fee_cents
            self.organization_fee_cents = event.organization_fee_cents
            self.creator_payout_cents = event.creator_payout_cents
            self.fingerprints["purchase.complete"] = event.fingerprint
        elif isinstance(event, ev.PurchaseFailed):
            self.status = "failed"
            self.fingerprints["purchase.fail"] = event.fingerprint
        elif isinstance(event, ev.PurchaseRefunded):
            self.refunded_amount_cents = event.refunded_amount_cents
            self.status = event.status

    @property
    def refundable_cents(self) -> int:
        return self.amount_paid_cents - self.refunded_amount_cents

    def effective_time(self, occurred_at: str, from_processor: bool) -> str:
        """The business time a completion, failure or refund takes: its own, or, for a
        fact from the payment processor dated before the purchase's last event, that
        event's time (the processor's own is kept beside it in the event)."""
        last = self.updated_at
        if from_processor and last is not None and occurred_at < last:
            return last
        return occurred_at

    @classmethod
    def open(cls, stripe_payment_intent_id: str, occurred_at: str) -> Purchase:
        """A new purchase, to be started, completed or failed by the same decision."""
        return cls._create(
            ev.PurchaseOpened,
            id=ids.purchase_id(stripe_payment_intent_id),
            stripe_payment_intent_id=stripe_payment_intent_id,
            occurred_at=occurred_at,
        )

    # The checks come before the decision looks at the customer and the content: a
    # redelivery is a duplicate, and a repeated start is refused, whatever became of them.

    def check_start(self, forms: Collection[str]) -> None:
        """A recorded purchase is never started again: a duplicate, a conflict or refused."""
        self._check_repeat("purchase.start", forms)
        raise InvalidState(
            f"purchase {self.stripe_payment_intent_id} is already {self.status}",
            "stripe_payment_intent_id",
        )

    def check_complete(
        self,
        customer_id: str,
        content_id: str,
        amount_paid_cents: int,
        currency: str,
        forms: Collection[str],
        occurred_at: str,
    ) -> None:
        """A failed attempt may later succeed; a completed or refunded one is final."""
        self._check_repeat("purchase.complete", forms)
        if self.status not in ("pending", "failed"):
            raise InvalidState(
                f"purchase {self.stripe_payment_intent_id} is already {self.status}",
                "stripe_payment_intent_id",
            )
        self._check_same(customer_id, content_id, amount_paid_cents, currency)
        self._check_follows(occurred_at)

    def check_fail(
        self,
        customer_id: str | None,
        content_id: str | None,
        amount_paid_cents: int | None,
        currency: str | None,
        forms: Collection[str],
        occurred_at: str,
    ) -> None:
        """Only a pending purchase fails; what the failure gives must be what it recorded."""
        self._check_repeat("purchase.fail", forms)
        if self.status != "pending":
            raise InvalidState(
                f"purchase {self.stripe_payment_intent_id} is {self.status}; "
                "only a pending purchase can fail",
                "stripe_payment_intent_id",
            )
        self._check_same(
            customer_id if customer_id is not None else self.customer_id,
            content_id if content_id is not None else self.content_id,
            amount_paid_cents if amount_paid_cents is not None else self.amount_paid_cents,
            currency if currency is not None else self.currency,
        )
        self._check_follows(occurred_at)

    @staticmethod
    def failure_details(
        stripe_payment_intent_id: str,
        customer_id: str | None,
        content_id: str | None,
        amount_paid_cents: int | None,
        currency: str | None,
    ) -> tuple[str, str, int, str]:
        """The failure of a purchase never started must say what was being bought."""
        if (
            customer_id is None
            or content_id is None
            or amount_paid_cents is None
            or currency is None
        ):
            given = {
                "customer_id": customer_id,
                "content_id": content_id,
                "amount_paid_cents": amount_paid_cents,
                "currency": currency,
            }
            missing = [name for name, value in given.items() if value is None]
            raise NotFound(
                f"purchase {stripe_payment_intent_id} was never started; to record its "
                f"failure give {', '.join(missing)}",
                "stripe_payment_intent_id",
            )
        return customer_id, content_id, amount_paid_cents, currency

    def _check_repeat(self, command_type: str, forms: Collection[str]) -> None:
        """``forms``: the fingerprints under which the command is the same command."""
        recorded = self.fingerprints.get(command_type)
        if recorded is None:
            return
        if recorded in forms:
            raise Duplicate
        raise Conflict(
            f"{command_type} for {self.stripe_payment_intent_id} was already recorded "
            "with a different payload",
            "stripe_payment_intent_id",
        )

    def _check_same(
        self, customer_id: str, content_id: str, amount_paid_cents: int, currency: str
    ) -> None:
        for name, recorded, given in (
            ("customer_id", self.customer_id, customer_id),
            ("content_id", self.content_id, content_id),
            ("amount_paid_cents", self.amount_paid_cents, amount_paid_cents),
            ("currency", self.currency, currency),
        ):
            if recorded != given:
                # the recorded customer is someone else: their id (or subject) is not the
                # caller's to learn (docs/privacy.md)
                what = "customer" if name == "customer_id" else repr(recorded)
                raise InvalidState(
                    f"{name} {given!r} differs from the {what} recorded for "
                    f"{self.stripe_payment_intent_id}",
                    name,
                )

    def _check_follows(self, occurred_at: str) -> None:
        """A completion or failure is not dated before the purchase's start or failure."""
        last = "start" if self.status == "pending" else "latest failure"
        clock.not_before(occurred_at, self.changed_at, f"the purchase's {last}")

    @property
    def terms(self) -> Terms:
        return Terms(
            self.customer_id,
            self.content_id,
            self.organization_id,
            self.amount_paid_cents,
            self.currency,
        )

    def start(self, terms: Terms, fingerprint: str, occurred_at: str) -> None:
        self._trigger(ev.PurchaseStarted, terms, fingerprint, occurred_at)

    def complete(
        self,
        terms: Terms,
        creator_id: str,
        split: tuple[int, int, int],
        revenue_split_config_id: str | None,
        fingerprint: str,
        occurred_at: str,
        processor_occurred_at: str | None = None,
    ) -> None:
        """``split``: the platform's, the organization's and the creator's cents;
        ``processor_occurred_at``: the processor's own time of a fact it reported."""
        self._trigger(
            ev.PurchaseCompleted,
            terms,
            fingerprint,
            occurred_at,
            processor_occurred_at=processor_occurred_at,
            creator_id=creator_id,
            platform_fee_cents=split[0],
            organization_fee_cents=split[1],
            creator_payout_cents=split[2],
            revenue_split_config_id=revenue_split_config_id,
        )

    def fail(
        self,
        terms: Terms,
        fingerprint: str,
        occurred_at: str,
        processor_occurred_at: str | None = None,
    ) -> None:
        self._trigger(
            ev.PurchaseFailed,
            terms,
            fingerprint,
            occurred_at,
            processor_occurred_at=processor_occurred_at,
        )

    def _trigger(
        self,
        event: type[ev.LedgerEvent],
        terms: Terms,
        fingerprint: str,
        occurred_at: str,
        **more: object,
    ) -> None:
        self.trigger_event(
            event,
            stripe_payment_intent_id=self.stripe_payment_intent_id,
            **asdict(terms),
            **more,
            fingerprint=fingerprint,
            occurred_at=occurred_at,
        )

    def refund(
        self,
        refund_id: str,
        amount_cents: int,
        reason: str | None,
        occurred_at: str,
        processor_occurred_at: str | None = None,
    ) -> None:
        """A refund of a fully refunded purchase exceeds what is left (nothing): it is
        refused for its amount, like any refund above what is left, and no later
        delivery of it can succeed; one of a purchase not completed yet may, later."""
        if self.status == "refunded":
            raise InvalidState(
                f"refund of {amount_cents} exceeds the 0 still refundable: purchase "
                f"{self.stripe_payment_intent_id} is fully refunded",
                "amount_cents",
            )
        if self.status != "completed":
            raise InvalidState(
                f"purchase {self.stripe_payment_intent_id} is {self.status}; "
                "only a completed purchase can be refunded",
                "stripe_payment_intent_id",
            )
        clock.not_before(occurred_at, self.completed_at, "the purchase's completion")
        if amount_cents > self.refundable_cents:
            raise InvalidState(
                f"refund of {amount_cents} exceeds the {self.refundable_cents} still refundable",
                "amount_cents",
            )
        before = refund_shares(
            self.refunded_amount_cents,
            self.amount_paid_cents,
            self.platform_fee_cents,
            self.organization_fee_cents,
        )
        total = self.refunded_amount_cents + amount_cents
        after = refund_shares(
            total, self.amount_paid_cents, self.platform_fee_cents, self.organization_fee_cents
        )
        self.trigger_event(
            ev.PurchaseRefunded,
            stripe_payment_intent_id=self.stripe_payment_intent_id,
            refund_id=refund_id,
            amount_cents=amount_cents,
            reason=reason,
            currency=self.currency,
            organization_id=self.organization_id,
            content_id=self.content_id,
            creator_id=self.creator_id,
            customer_id=self.customer_id,
            refunded_amount_cents=total,
            status="refunded" if total == self.amount_paid_cents else "completed",
            platform_refund_cents=after[0] - before[0],
            organization_refund_cents=after[1] - before[1],
            creator_refund_cents=after[2] - before[2],
            newest=self.updated_at is None or occurred_at >= self.updated_at,
            occurred_at=occurred_at,
            processor_occurred_at=processor_occurred_at,
        )
