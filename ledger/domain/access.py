"""Access and playback: the aggregates of one user and one content."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate

from ledger.domain import clock, ids
from ledger.domain import events as ev
from ledger.domain.errors import InvalidState, NoAccess
from ledger.domain.topics import topic

AggregateT = TypeVar("AggregateT", bound=Aggregate)


def no_access(user_id: str, content_id: str) -> NoAccess:
    """The answer to a heartbeat of a (user, content) with no access row at all."""
    return NoAccess(f"{user_id!r} has no access to content {content_id}")


def check_playable(
    user_id: str,
    content_id: str,
    at: datetime,
    present: bool,
    since: datetime | None = None,
    expires: datetime | None = None,
) -> None:
    """The heartbeat access rule, once for both stores: ``NoAccess`` unless an access row
    (``present``, created at ``since``, expiring at ``expires``) lets ``user_id`` play
    ``content_id`` at ``at``: it began at or before ``at`` and had not expired
    (``expires <= at`` is expired). The answers are the ones docs/cli.md documents."""
    who = f"{user_id!r}"
    if not present:
        raise no_access(user_id, content_id)
    if since is not None and at < since:
        raise NoAccess(
            f"access of {who} to content {content_id} began at {clock.canonical(since)}, "
            f"after this heartbeat ({clock.canonical(at)})",
            "occurred_at",
        )
    if expires is not None and expires <= at:
        raise NoAccess(
            f"access of {who} to content {content_id} expired at {clock.canonical(expires)}"
        )


def _opened(
    kind: type[AggregateT],
    event: type[ev.LedgerCreated],
    aggregate_id: UUID,
    user_id: str,
    content_id: str,
    occurred_at: str,
) -> AggregateT:
    """A new aggregate of one user and one content (an access, a playback)."""
    return kind._create(
        event, id=aggregate_id, user_id=user_id, content_id=content_id, occurred_at=occurred_at
    )


@topic("Access")
class Access(Aggregate):
    """The access of one user to one content: the content_access row's decisions."""

    def __init__(self, user_id: str, content_id: str, occurred_at: str) -> None:
        self.user_id = user_id
        self.content_id = content_id
        self.present = False
        # the content's organization, from its grants: a revocation names it (issue 28)
        self.organization_id: str | None = None
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
        aggregate_id = ids.access_id(user_id, content_id)
        return _opened(cls, ev.AccessOpened, aggregate_id, user_id, content_id, occurred_at)

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
            self.organization_id = event.organization_id
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
        clock.not_before(occurred_at, self.changed_at, "the access's latest grant or revoke")
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
        """Removes the present row; the event names the organization its grant named."""
        clock.not_before(occurred_at, self.changed_at, "the access's latest grant or revoke")
        self.trigger_event(
            ev.AccessRevoked,
            user_id=self.user_id,
            content_id=self.content_id,
            organization_id=self.organization_id,
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
                organization_id=self.organization_id,
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
        check_playable(
            self.user_id,
            self.content_id,
            clock.parse(occurred_at),
            self.present,
            clock.parse(self.since) if self.since is not None else None,
            clock.parse(self.expires_at) if self.expires_at is not None else None,
        )


@topic("Playback")
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
        aggregate_id = ids.playback_id(user_id, content_id)
        return _opened(cls, ev.PlaybackOpened, aggregate_id, user_id, content_id, occurred_at)

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
