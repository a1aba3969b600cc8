"""The catalogue's aggregates: organizations, users and content."""

from __future__ import annotations

from eventsourcing.domain import Aggregate

from ledger.domain import events as ev
from ledger.domain import ids
from ledger.domain.topics import topic


@topic("Organization")
class Organization(Aggregate):
    def __init__(self, organization_id: str, name: str, fingerprint: str, occurred_at: str) -> None:
        self.organization_id = organization_id
        self.name = name
        self.fingerprint = fingerprint

    @classmethod
    def register(
        cls, organization_id: str, name: str, fingerprint: str, occurred_at: str
    ) -> Organization:
        return cls._create(
            ev.OrganizationRegistered,
            id=ids.organization_id(organization_id),
            organization_id=organization_id,
            name=name,
            fingerprint=fingerprint,
            occurred_at=occurred_at,
        )


@topic("User")
class User(Aggregate):
    def __init__(self, user_id: str, occurred_at: str) -> None:
        self.user_id = user_id
        self.deleted = False
        self.erased = False

    @classmethod
    def register(cls, user_id: str, occurred_at: str) -> User:
        return cls._create(
            ev.UserRegistered, id=ids.user_id(user_id), user_id=user_id, occurred_at=occurred_at
        )

    def delete(self, occurred_at: str) -> None:
        self.trigger_event(ev.UserDeleted, user_id=self.user_id, occurred_at=occurred_at)

    def erase(self, occurred_at: str) -> None:
        """The person is forgotten (docs/privacy.md); ``user_id`` is their subject."""
        self.trigger_event(ev.UserErased, user_id=self.user_id, occurred_at=occurred_at)

    def when(self, event: ev.LedgerEvent) -> None:
        if isinstance(event, ev.UserDeleted):
            self.deleted = True
            self.erased = isinstance(event, ev.UserErased)


@topic("Departure")
class Departure(Aggregate):
    """A person's departure from one organization: the part of their deletion that is that
    organization's (docs/scaling.md). It exists once the part is done, so the part is
    never done twice."""

    def __init__(self, user_id: str, organization_id: str, occurred_at: str) -> None:
        self.user_id = user_id
        self.organization_id = organization_id

    @classmethod
    def leave(cls, user_id: str, organization_id: str, occurred_at: str) -> Departure:
        return cls._create(
            ev.UserLeftOrganization,
            id=ids.departure_id(user_id, organization_id),
            user_id=user_id,
            organization_id=organization_id,
            occurred_at=occurred_at,
        )


@topic("Content")
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

    @classmethod
    def publish(
        cls,
        content_id: str,
        organization_id: str,
        creator_id: str,
        title: str,
        fingerprint: str,
        occurred_at: str,
    ) -> Content:
        return cls._create(
            ev.ContentPublished,
            id=ids.content_id(content_id),
            content_id=content_id,
            organization_id=organization_id,
            creator_id=creator_id,
            title=title,
            fingerprint=fingerprint,
            occurred_at=occurred_at,
        )

    def delete(self, occurred_at: str) -> None:
        self.trigger_event(ev.ContentDeleted, content_id=self.content_id, occurred_at=occurred_at)

    def when(self, event: ev.LedgerEvent) -> None:
        if isinstance(event, ev.ContentDeleted):
            self.deleted = True
