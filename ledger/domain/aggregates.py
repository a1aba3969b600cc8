"""Aggregates: the state each decision needs, rebuilt from the log.

Each aggregate holds just enough state to decide; deciding raises a
``Rejected`` or triggers events. Nothing here touches SQL or a clock: the
service passes ``occurred_at`` in and the events carry it out.
"""

from __future__ import annotations

from eventsourcing.domain import Aggregate
from eventsourcing.utils import register_topic

from ledger.domain import events as ev
from ledger.domain.errors import Conflict, InvalidState, NoAccess


class Organization(Aggregate):
    def __init__(self, organization_id: str, name: str, fingerprint: str, occurred_at: str) -> None:
        self.organization_id = organization_id
        self.name = name
        self.fingerprint = fingerprint


class User(Aggregate):
    def __init__(self, user_id: str, occurred_at: str) -> None:
        self.user_id = user_id
        self.deleted = False

    def delete(self, occurred_at: str) -> None:
        self.trigger_event(ev.UserDeleted, user_id=self.user_id, occurred_at=occurred_at)

    def when(self, event: ev.LedgerEvent) -> None:
        if isinstance(event, ev.UserDeleted):
            self.deleted = True


class Content(Aggregate):
    def __init__(
        self,
        content_id: str,
        organization_id: str,
        creator_id: str,
        title: str,
        fingerprint: str,
        occurred_at: str,
    ) -> None:
        self.content_id = content_id
        self.organization_id = organization_id
        self.creator_id = creator_id
        self.title = title
        self.fingerprint = fingerprint
        self.deleted = False

    def delete(self, occurred_at: str) -> None:
        self.trigger_event(ev.ContentDeleted, content_id=self.content_id, occurred_at=occurred_at)

    def when(self, event: ev.LedgerEvent) -> None:
        if isinstance(event, ev.ContentDeleted):
            self.deleted = True


def refund_shares(
    refunded_total: int, amount: int, platform_fee: int, organization_fee: int
) -> tuple[int, int, int]:
    """What each party has returned after refunds totalling ``refunded_total``.

    The contract's cumulative rule: the platform floor(R*p/A), the organization
    floor(R*o/A), the creator the rest, so rounding never drifts across refunds.
    Python integers are exact, so R*p cannot overflow.
    """
    platform = refunded_total * platform_fee // amount
    organization = refunded_total * organization_fee // amount
    return platform, organization, refunded_total - platform - organization


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

    def when(self, event: ev.LedgerEvent) -> None:
        if isinstance(event, ev.PurchaseStarted | ev.PurchaseCompleted | ev.PurchaseFailed):
            self.customer_id = event.customer_id
            self.content_id = event.content_id
            self.organization_id = event.organization_id
            self.amount_paid_cents = event.amount_paid_cents
            self.currency = event.currency
        if isinstance(event, ev.PurchaseStarted):
            self.status = "pending"
            self.fingerprints["purchase.start"] = event.fingerprint
        elif isinstance(event, ev.PurchaseCompleted):
            self.status = "completed"
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

    def refund(
        self, refund_id: str, amount_cents: int, reason: str | None, occurred_at: str
    ) -> None:
        if self.status != "completed":
            raise InvalidState(
                f"purchase {self.stripe_payment_intent_id} is {self.status}; "
                "only a completed purchase can be refunded",
                "stripe_payment_intent_id",
            )
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
            occurred_at=occurred_at,
        )


class Access(Aggregate):
    """The access of one user to one content: the content_access row's decisions."""

    def __init__(self, user_id: str, content_id: str, occurred_at: str) -> None:
        self.user_id = user_id
        self.content_id = content_id
        self.present = False
        self.access_type: str | None = None
        self.granted_at: str | None = None
        self.expires_at: str | None = None
        # completed purchases that keep a `purchased` row alive
        self.purchases: list[str] = []
        # identities of the grants and revokes applied: redeliveries are duplicates
        self.seen: set[str] = set()

    def when(self, event: ev.LedgerEvent) -> None:
        if isinstance(event, ev.AccessGranted | ev.AccessRevoked) and event.identity:
            self.seen.add(event.identity)
        if isinstance(event, ev.AccessGranted):
            self.present = True
            self.access_type = event.access_type
            self.granted_at = event.occurred_at
            self.expires_at = event.expires_at
            if event.stripe_payment_intent_id is None:
                self.purchases = []
            elif event.stripe_payment_intent_id not in self.purchases:
                self.purchases.append(event.stripe_payment_intent_id)
        elif isinstance(event, ev.AccessRevoked):
            self.present = False
            self.access_type = None
            self.granted_at = None
            self.expires_at = None
            self.purchases = []
        elif isinstance(event, ev.AccessPurchaseReleased):
            self.purchases.remove(event.stripe_payment_intent_id)

    def grant(
        self,
        organization_id: str,
        access_type: str,
        expires_at: str | None,
        identity: str,
        occurred_at: str,
    ) -> None:
        if self.present and self.access_type == "purchased":
            raise InvalidState(
                f"{self.user_id} has purchased this content; a {access_type} grant "
                "cannot replace a purchase",
                "access_type",
            )
        self._grant(organization_id, access_type, expires_at, None, identity, occurred_at)

    def grant_purchase(
        self, organization_id: str, stripe_payment_intent_id: str, occurred_at: str
    ) -> None:
        self._grant(organization_id, "purchased", None, stripe_payment_intent_id, None, occurred_at)

    def _grant(
        self,
        organization_id: str,
        access_type: str,
        expires_at: str | None,
        stripe_payment_intent_id: str | None,
        identity: str | None,
        occurred_at: str,
    ) -> None:
        self.trigger_event(
            ev.AccessGranted,
            user_id=self.user_id,
            content_id=self.content_id,
            organization_id=organization_id,
            access_type=access_type,
            expires_at=expires_at,
            stripe_payment_intent_id=stripe_payment_intent_id,
            identity=identity,
            occurred_at=occurred_at,
        )

    def revoke(self, reason: str | None, identity: str, occurred_at: str) -> None:
        self.trigger_event(
            ev.AccessRevoked,
            user_id=self.user_id,
            content_id=self.content_id,
            reason=reason,
            stripe_payment_intent_id=None,
            identity=identity,
            occurred_at=occurred_at,
        )

    def purchase_refunded(self, stripe_payment_intent_id: str, occurred_at: str) -> None:
        """A fully refunded purchase takes away the access it gave, unless another
        completed purchase of the same content still stands behind the row."""
        if stripe_payment_intent_id not in self.purchases:
            return
        remaining = [p for p in self.purchases if p != stripe_payment_intent_id]
        if self.present and self.access_type == "purchased" and not remaining:
            self.trigger_event(
                ev.AccessRevoked,
                user_id=self.user_id,
                content_id=self.content_id,
                reason="refunded",
                stripe_payment_intent_id=stripe_payment_intent_id,
                identity=None,
                occurred_at=occurred_at,
            )
        else:
            self.trigger_event(
                ev.AccessPurchaseReleased,
                stripe_payment_intent_id=stripe_payment_intent_id,
                occurred_at=occurred_at,
            )

    def check_playable(self, occurred_at: str) -> None:
        if not self.present:
            raise NoAccess(f"{self.user_id} has no access to content {self.content_id}")
        if self.expires_at is not None and self.expires_at <= occurred_at:
            raise NoAccess(
                f"access of {self.user_id} to content {self.content_id} expired at "
                f"{self.expires_at}"
            )


class Playback(Aggregate):
    def __init__(self, user_id: str, content_id: str, occurred_at: str) -> None:
        self.user_id = user_id
        self.content_id = content_id
        self.position_seconds = 0
        self.duration_seconds = 0
        self.completed = False
        self.seen: set[str] = set()  # identities of the heartbeats applied

    def when(self, event: ev.LedgerEvent) -> None:
        if isinstance(event, ev.PlaybackProgressed):
            self.position_seconds = event.position_seconds
            self.duration_seconds = event.duration_seconds
            self.completed = event.completed
            self.seen.add(event.identity)

    def progress(
        self, position_seconds: int, duration_seconds: int, identity: str, occurred_at: str
    ) -> None:
        """``completed`` turns true at 95% of the video and stays true."""
        completed = self.completed or position_seconds * 100 >= duration_seconds * 95
        self.trigger_event(
            ev.PlaybackProgressed,
            user_id=self.user_id,
            content_id=self.content_id,
            position_seconds=position_seconds,
            duration_seconds=duration_seconds,
            completed=completed,
            identity=identity,
            occurred_at=occurred_at,
        )


class CommandKey(Aggregate):
    """A claimed idempotency key or refund id, with the fingerprint of its command."""

    def __init__(
        self, namespace: str, key: str, command_type: str, fingerprint: str, occurred_at: str
    ) -> None:
        self.namespace = namespace
        self.key = key
        self.command_type = command_type
        self.fingerprint = fingerprint

    def check_same(self, fingerprint: str, field: str) -> None:
        if fingerprint != self.fingerprint:
            raise Conflict(
                f"{field} {self.key!r} was already used by a different {self.command_type} command",
                field,
            )


for _topic, _aggregate_cls in {
    "Organization": Organization,
    "User": User,
    "Content": Content,
    "Purchase": Purchase,
    "Access": Access,
    "Playback": Playback,
    "CommandKey": CommandKey,
}.items():
    _aggregate_cls.TOPIC = _topic  # type: ignore[attr-defined]
    register_topic(_topic, _aggregate_cls)
