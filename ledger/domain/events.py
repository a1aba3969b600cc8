"""The event catalogue (docs/events.md describes each one).

Events are immutable facts named in the past tense. Each carries ``occurred_at``
(business time, a canonical UTC string, see ``ledger.domain.clock``) and the
values the projections need, so that projecting an event is a pure mapping with
no business rule left to apply. Ids and timestamps are stored as canonical
strings: the stored JSON stays plain, and decoding in a rebuild needs no
conversions.

Topics are explicit and stable (``PurchaseCompleted``), not module paths, so the
code can be reorganised without rewriting history. A field added later has a default
that reproduces what the events stored before it meant (``newest = True``: the
earlier version applied every event as the row's latest), so old events decode as
they were recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from eventsourcing.domain import AggregateCreated, AggregateEvent
from eventsourcing.utils import register_topic

from ledger.domain.provenance import Provenance
from ledger.domain.upcasters import (
    PROCESSOR_TIME,
    PROVENANCE,
    REVOKED_ORGANIZATION,
    Step,
    install,
)

# a field every event of the current version stores, though it has a default: the
# aggregate makes the event before the service stamps it (``with_provenance``)
STAMPED = {"stamped": True}


@dataclass(frozen=True)
class Stamped:
    """Where the event came from (version 2 on; docs/events.md, "Provenance").

    ``source`` is the entry point of the command that recorded it (``cli``, ``api``,
    ``http``, ``stripe``; ``unknown`` for an event stored before provenance, by its
    upcaster), ``correlation_id`` what that entry point was answering (the input file
    and line, the HTTP request id, the Stripe event id), ``idempotency_key`` the
    command's own key. Keyword-only, so they follow each class's own fields.
    """

    source: str = field(default="api", kw_only=True, metadata=STAMPED)
    correlation_id: str | None = field(default=None, kw_only=True, metadata=STAMPED)
    idempotency_key: str | None = field(default=None, kw_only=True, metadata=STAMPED)


class LedgerCreated(AggregateCreated, Stamped):
    """First event of an aggregate."""

    occurred_at: str


class LedgerEvent(AggregateEvent, Stamped):
    """A later event of an aggregate; the aggregate's ``when`` evolves its state."""

    occurred_at: str

    def apply(self, aggregate: Any) -> None:
        aggregate.when(self)


# --- catalogue -----------------------------------------------------------------


class OrganizationRegistered(LedgerCreated):
    TOPIC = "OrganizationRegistered"
    organization_id: str
    name: str
    fingerprint: str


class UserRegistered(LedgerCreated):
    TOPIC = "UserRegistered"
    user_id: str


class UserDeleted(LedgerEvent):
    TOPIC = "UserDeleted"
    user_id: str


class UserErased(UserDeleted):
    """The person was erased (``user.erase``, docs/privacy.md): every row a deletion removes
    is gone, and the key from their id to ``user_id`` (their subject, a random pseudonym) with
    it. The event names the subject, never the identity: it tells consumers downstream to
    erase what they hold under that subject. A subclass of ``UserDeleted``, so every table and
    the aggregate treat it as a deletion."""

    TOPIC = "UserErased"


class UserLeftOrganization(LedgerCreated):
    """One organization's part of a user's deletion or erasure (docs/scaling.md, "A
    person's deletion, one organization at a time"): the person's purchase and access rows
    of ``organization_id`` leave the tables. Recorded, once per (person, organization), on
    a layout split by organization before the ``UserDeleted`` or ``UserErased`` that ends
    the command, so each part is one organization's transaction; ``user_id`` is the subject.
    """

    TOPIC = "UserLeftOrganization"
    user_id: str
    organization_id: str


class ContentPublished(LedgerCreated):
    TOPIC = "ContentPublished"
    content_id: str
    organization_id: str
    creator_id: str
    title: str
    fingerprint: str


class ContentDeleted(LedgerEvent):
    TOPIC = "ContentDeleted"
    content_id: str


# --- purchases -----------------------------------------------------------------


class PurchaseOpened(LedgerCreated):
    """The purchase aggregate exists; what happened to it follows."""

    TOPIC = "PurchaseOpened"
    stripe_payment_intent_id: str


class PurchaseStarted(LedgerEvent):
    TOPIC = "PurchaseStarted"
    stripe_payment_intent_id: str
    customer_id: str
    content_id: str
    organization_id: str
    amount_paid_cents: int
    currency: str
    fingerprint: str


@dataclass(frozen=True)
class ProcessorTime:
    """The payment processor's own time of a money fact (version 3 on; docs/events.md,
    "Business time from the payment processor"): set on a completion, failure or refund
    that came from the processor (source ``stripe``), whose ``occurred_at`` is the later of
    this time and the purchase's last event's; null for every other source (then
    ``occurred_at`` is the command's own). Keyword-only, after each class's own fields."""

    processor_occurred_at: str | None = field(default=None, kw_only=True, metadata=STAMPED)


class PurchaseCompleted(ProcessorTime, LedgerEvent):
    TOPIC = "PurchaseCompleted"
    stripe_payment_intent_id: str
    customer_id: str
    content_id: str
    organization_id: str
    creator_id: str
    amount_paid_cents: int
    currency: str
    platform_fee_cents: int
    organization_fee_cents: int
    creator_payout_cents: int
    revenue_split_config_id: str | None
    fingerprint: str


class PurchaseFailed(ProcessorTime, LedgerEvent):
    TOPIC = "PurchaseFailed"
    stripe_payment_intent_id: str
    customer_id: str
    content_id: str
    organization_id: str
    amount_paid_cents: int
    currency: str
    fingerprint: str


class PurchaseRefunded(ProcessorTime, LedgerEvent):
    """A refund, with its cumulative totals and its share of each party.

    ``platform_refund_cents`` and friends are this refund's share, computed by the
    cumulative rule (after refunds totalling R of A split (p, o, c) the platform has
    returned ceil(R*p/A), the creator floor(R*c/A), the organization the rest), so
    that the shares of all refunds of a purchase add up exactly and no party ever
    returns more than it was paid. Refunds recorded before that rule carry the shares
    of the earlier rule; the revenue audit recomputes every refund's shares from the
    cumulative amounts, so one rule holds for all of them.

    ``newest`` is False for a refund dated before the purchase's latest change (refunds
    may arrive out of order): the row takes its amounts, and keeps its ``updated_at``.
    """

    TOPIC = "PurchaseRefunded"
    stripe_payment_intent_id: str
    refund_id: str
    amount_cents: int
    reason: str | None
    currency: str
    organization_id: str
    content_id: str
    creator_id: str
    customer_id: str
    refunded_amount_cents: int
    status: str
    platform_refund_cents: int
    organization_refund_cents: int
    creator_refund_cents: int
    newest: bool = True


# --- access and playback -----------------------------------------------------------


class AccessOpened(LedgerCreated):
    TOPIC = "AccessOpened"
    user_id: str
    content_id: str


class AccessGranted(LedgerEvent):
    """The (user, content) access row takes this grant.

    ``identity`` (the command's payload at its moment, see ``Command.identity``)
    lets a redelivered grant, revoke or heartbeat be recognised for ever; it is
    None when a purchase or refund caused the event.

    ``access_type`` is ``purchased`` when a completed purchase grants it
    (``stripe_payment_intent_id`` names the purchase); ``granted_at`` is the
    grant's ``occurred_at``.

    ``newest`` is False for a grant dated before the present row's latest change (a
    heartbeat that stamped it, or, for a purchase's grant, any grant: a completion that
    arrives late is still recorded): the row takes the grant and keeps its
    ``updated_at``, so ``updated_at`` never moves back.
    """

    TOPIC = "AccessGranted"
    user_id: str
    content_id: str
    organization_id: str
    access_type: str
    expires_at: str | None
    stripe_payment_intent_id: str | None
    identity: str | None
    newest: bool = True


class AccessRevoked(LedgerEvent):
    """The (user, content) access row is removed (``reason`` says why).

    ``organization_id`` (version 3): the content's organization, as its grant named it, so
    the row's deletion is routed to that organization's shard on a distributed log (issue
    28); ``None`` for an event stored before it (``upcasters.REVOKED_ORGANIZATION``)."""

    TOPIC = "AccessRevoked"
    user_id: str
    content_id: str
    organization_id: str | None
    reason: str | None
    stripe_payment_intent_id: str | None
    identity: str | None


class AccessPurchaseReleased(LedgerEvent):
    """A fully refunded purchase no longer stands behind a ``purchased`` row that
    another completed purchase still keeps; the row itself does not change."""

    TOPIC = "AccessPurchaseReleased"
    stripe_payment_intent_id: str


class PlaybackOpened(LedgerCreated):
    TOPIC = "PlaybackOpened"
    user_id: str
    content_id: str


class PlaybackProgressed(LedgerEvent):
    """A heartbeat of a (user, content) playback.

    Players send heartbeats out of order. ``newest`` says whether this one is dated at
    or after the heartbeat the row shows: only then does the row take its position
    (and ``content_access.last_accessed_at`` its time). An older one is still a fact,
    recorded here. ``access_newest`` says whether the newest heartbeat is also dated at
    or after the access's latest grant, so that it moves the access row's
    ``updated_at``. ``completed`` is the row's flag after this heartbeat: true once any
    heartbeat reached 95% of the video, and never false again.
    """

    TOPIC = "PlaybackProgressed"
    user_id: str
    content_id: str
    position_seconds: int
    duration_seconds: int
    completed: bool
    identity: str
    newest: bool = True
    access_newest: bool = True


# --- idempotency -------------------------------------------------------------------


class CommandKeyClaimed(LedgerCreated):
    """A key (an ``idempotency_key`` or a ``refund_id``) is taken, for ever.

    The aggregate id is derived from the key, and the log's primary key
    (originator_id, originator_version) lets exactly one command claim it.
    """

    TOPIC = "CommandKeyClaimed"
    namespace: str
    key: str
    command_type: str
    fingerprint: str


ALL_EVENTS: tuple[type[LedgerCreated] | type[LedgerEvent], ...] = (
    OrganizationRegistered,
    UserRegistered,
    UserDeleted,
    UserErased,
    UserLeftOrganization,
    ContentPublished,
    ContentDeleted,
    PurchaseOpened,
    PurchaseStarted,
    PurchaseCompleted,
    PurchaseFailed,
    PurchaseRefunded,
    AccessOpened,
    AccessGranted,
    AccessRevoked,
    AccessPurchaseReleased,
    PlaybackOpened,
    PlaybackProgressed,
    CommandKeyClaimed,
)

EVENTS_BY_TOPIC: dict[str, type[LedgerCreated] | type[LedgerEvent]] = {
    str(getattr(cls, "TOPIC")): cls  # noqa: B009 (set by each class body)
    for cls in ALL_EVENTS
}

for _topic, _cls in EVENTS_BY_TOPIC.items():
    register_topic(_topic, _cls)

# each topic's versions: version 1 (no provenance), version 2 (``Stamped``); version 3 of
# the processor's money facts (``ProcessorTime``) and of a revocation (its organization)
PROCESSOR_FACTS = ("PurchaseCompleted", "PurchaseFailed", "PurchaseRefunded")
THIRD: dict[str, Step] = {
    **dict.fromkeys(PROCESSOR_FACTS, PROCESSOR_TIME),
    "AccessRevoked": REVOKED_ORGANIZATION,
}
UPCASTERS: dict[str, tuple[Step, ...]] = {
    topic: (PROVENANCE, THIRD[topic]) if topic in THIRD else (PROVENANCE,)
    for topic in EVENTS_BY_TOPIC
}
install(EVENTS_BY_TOPIC, UPCASTERS)

E = TypeVar("E", bound=Stamped)


def with_provenance(event: E, provenance: Provenance, idempotency_key: str | None) -> E:
    """The event as recorded by a command from ``provenance``: a copy, built the way
    the library's mapper builds an event (the event is frozen, and its other fields
    are already checked)."""
    stamped = object.__new__(type(event))
    object.__setattr__(
        stamped,
        "__dict__",
        {
            **vars(event),
            "source": provenance.source,
            "correlation_id": provenance.correlation_id,
            "idempotency_key": idempotency_key,
        },
    )
    return stamped
