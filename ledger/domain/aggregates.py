"""Aggregates: the state each decision needs, rebuilt from the log.

Each aggregate holds just enough state to decide; deciding raises a
``Rejected`` or triggers events. Nothing here touches SQL or a clock: the
service passes ``occurred_at`` in and the events carry it out.
"""

from __future__ import annotations

from collections.abc import Collection

from eventsourcing.domain import Aggregate
from eventsourcing.utils import register_topic

from ledger.domain import events as ev
from ledger.domain import ids
from ledger.domain.errors import Conflict, Duplicate, InvalidState, NoAccess, NotFound


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


def _not_before(occurred_at: str, since: str | None, what: str) -> None:
    """Business time runs forward: nothing is dated before what it follows."""
    if since is not None and occurred_at < since:
        raise InvalidState(f"occurred_at {occurred_at} lies before {what} ({since})", "occurred_at")


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
                raise InvalidState(
                    f"{name} {given!r} differs from the {recorded!r} recorded for "
                    f"{self.stripe_payment_intent_id}",
                    name,
                )

    def _check_follows(self, occurred_at: str) -> None:
        """A completion or failure is not dated before the purchase's start or failure."""
        last = "start" if self.status == "pending" else "latest failure"
        _not_before(occurred_at, self.changed_at, f"the purchase's {last}")

    def start(
        self,
        customer_id: str,
        content_id: str,
        organization_id: str,
        amount_paid_cents: int,
        currency: str,
        fingerprint: str,
        occurred_at: str,
    ) -> None:
        self.trigger_event(
            ev.PurchaseStarted,
            stripe_payment_intent_id=self.stripe_payment_intent_id,
            customer_id=customer_id,
            content_id=content_id,
            organization_id=organization_id,
            amount_paid_cents=amount_paid_cents,
            currency=currency,
            fingerprint=fingerprint,
            occurred_at=occurred_at,
        )

    def complete(
        self,
        customer_id: str,
        content: Content,
        amount_paid_cents: int,
        currency: str,
        split: tuple[int, int, int],
        revenue_split_config_id: str | None,
        fingerprint: str,
        occurred_at: str,
    ) -> None:
        """``split``: the platform's, the organization's and the creator's cents."""
        self.trigger_event(
            ev.PurchaseCompleted,
            stripe_payment_intent_id=self.stripe_payment_intent_id,
            customer_id=customer_id,
            content_id=content.content_id,
            organization_id=content.organization_id,
            creator_id=content.creator_id,
            amount_paid_cents=amount_paid_cents,
            currency=currency,
            platform_fee_cents=split[0],
            organization_fee_cents=split[1],
            creator_payout_cents=split[2],
            revenue_split_config_id=revenue_split_config_id,
            fingerprint=fingerprint,
            occurred_at=occurred_at,
        )

    def fail(
        self,
        customer_id: str,
        content_id: str,
        organization_id: str,
        amount_paid_cents: int,
        currency: str,
        fingerprint: str,
        occurred_at: str,
    ) -> None:
        self.trigger_event(
            ev.PurchaseFailed,
            stripe_payment_intent_id=self.stripe_payment_intent_id,
            customer_id=customer_id,
            content_id=content_id,
            organization_id=organization_id,
            amount_paid_cents=amount_paid_cents,
            currency=currency,
            fingerprint=fingerprint,
            occurred_at=occurred_at,
        )

    def refund(
        self, refund_id: str, amount_cents: int, reason: str | None, occurred_at: str
    ) -> None:
        if self.status != "completed":
            raise InvalidState(
                f"purchase {self.stripe_payment_intent_id} is {self.status}; "
                "only a completed purchase can be refunded",
                "stripe_payment_intent_id",
            )
        _not_before(occurred_at, self.completed_at, "the purchase's completion")
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
        self.since: str | None = None  # when the present row was created
        self.changed_at: str | None = None  # the latest grant or revoke, row or not

    @classmethod
    def open(cls, user_id: str, content_id: str, occurred_at: str) -> Access:
        """A new access, to be granted by the same decision."""
        return cls._create(
            ev.AccessOpened,
            id=ids.access_id(user_id, content_id),
            user_id=user_id,
            content_id=content_id,
            occurred_at=occurred_at,
        )

    def when(self, event: ev.LedgerEvent) -> None:
        if isinstance(event, ev.AccessGranted | ev.AccessRevoked):
            if event.identity:
                self.seen.add(event.identity)
            if self.changed_at is None or event.occurred_at > self.changed_at:
                self.changed_at = event.occurred_at
        if isinstance(event, ev.AccessGranted):
            if not self.present:
                self.since = event.occurred_at
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
            self.since = None
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
        last_heartbeat: str | None,
        occurred_at: str,
    ) -> None:
        """``last_heartbeat``: the newest heartbeat of this user on this content, which
        stamped the row; a grant dated before it leaves ``updated_at`` alone."""
        if self.present and self.access_type == "purchased":
            raise InvalidState(
                f"{self.user_id} has purchased this content; a {access_type} grant "
                "cannot replace a purchase",
                "access_type",
            )
        _not_before(occurred_at, self.changed_at, "the access's latest grant or revoke")
        newest = self._newest(occurred_at, last_heartbeat)
        self._grant(organization_id, access_type, expires_at, None, identity, newest, occurred_at)

    def grant_purchase(
        self,
        organization_id: str,
        stripe_payment_intent_id: str,
        last_heartbeat: str | None,
        occurred_at: str,
    ) -> None:
        """A purchase's grant is never refused for its date (the payment happened);
        dated before the row's latest change, it leaves ``updated_at`` alone."""
        newest = self._newest(occurred_at, last_heartbeat)
        self._grant(
            organization_id, "purchased", None, stripe_payment_intent_id, None, newest, occurred_at
        )

    def _newest(self, occurred_at: str, last_heartbeat: str | None) -> bool:
        """Is a grant dated at or after the present row's latest change (its grants and
        the heartbeats that stamped it)? A new row is its own latest change."""
        latest = max((t for t in (self.changed_at, last_heartbeat) if t is not None), default="")
        return not self.present or occurred_at >= latest

    def _grant(
        self,
        organization_id: str,
        access_type: str,
        expires_at: str | None,
        stripe_payment_intent_id: str | None,
        identity: str | None,
        newest: bool,
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
            newest=newest,
            occurred_at=occurred_at,
        )

    def revoke(self, reason: str | None, identity: str, occurred_at: str) -> None:
        _not_before(occurred_at, self.changed_at, "the access's latest grant or revoke")
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
        if self.since is not None and occurred_at < self.since:
            raise NoAccess(
                f"access of {self.user_id} to content {self.content_id} began at "
                f"{self.since}, after this heartbeat ({occurred_at})",
                "occurred_at",
            )
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
        self.shown_at: str | None = None  # the heartbeat the row shows

    @classmethod
    def open(cls, user_id: str, content_id: str, occurred_at: str) -> Playback:
        """A new playback, to be progressed by the same decision."""
        return cls._create(
            ev.PlaybackOpened,
            id=ids.playback_id(user_id, content_id),
            user_id=user_id,
            content_id=content_id,
            occurred_at=occurred_at,
        )

    def when(self, event: ev.LedgerEvent) -> None:
        if isinstance(event, ev.PlaybackProgressed):
            if event.newest:
                self.position_seconds = event.position_seconds
                self.duration_seconds = event.duration_seconds
                self.shown_at = event.occurred_at
            self.completed = event.completed
            self.seen.add(event.identity)

    def progress(
        self,
        position_seconds: int,
        duration_seconds: int,
        identity: str,
        access_changed_at: str | None,
        occurred_at: str,
    ) -> None:
        """Every heartbeat is recorded; the row shows the newest by ``occurred_at``.

        ``completed`` turns true once any heartbeat reaches 95% of the video, whatever
        its date, and stays true. ``access_changed_at``: the access's latest grant; the
        newest heartbeat stamps ``last_accessed_at``, and ``updated_at`` unless a grant
        dated after it already moved the access row on.
        """
        newest = self.shown_at is None or occurred_at >= self.shown_at
        completed = self.completed or position_seconds * 100 >= duration_seconds * 95
        self.trigger_event(
            ev.PlaybackProgressed,
            user_id=self.user_id,
            content_id=self.content_id,
            position_seconds=position_seconds,
            duration_seconds=duration_seconds,
            completed=completed,
            identity=identity,
            newest=newest,
            access_newest=newest
            and (access_changed_at is None or occurred_at >= access_changed_at),
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

    def check_same(self, forms: Collection[str], field: str) -> None:
        """``forms``: the fingerprints under which the command is the same command."""
        if self.fingerprint not in forms:
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
