"""Handlers of the catalogue: organizations, users, content."""

from __future__ import annotations

from uuid import UUID

from ledger.commands.base import Fingerprint
from ledger.commands.catalogue import (
    DeleteContent,
    DeleteUser,
    EraseUser,
    LeaveOrganization,
    PublishContent,
    RegisterOrganization,
    RegisterUser,
)
from ledger.domain import ids
from ledger.domain.aggregates import Content, Departure, Organization, User
from ledger.domain.errors import Conflict, Duplicate, InvalidState, NotFound
from ledger.service import facts
from ledger.service.registry import handles
from ledger.service.unit_of_work import UnitOfWork


def live_user(uow: UnitOfWork, user_id: str, field_name: str, shown: str | None = None) -> None:
    """A registered user not deleted: what a purchase, grant, revocation or publication
    needs. On a distributed log a purchase, a grant, a revocation and a publication take it
    as a fact of ``users`` (``ledger.service.facts``), else from the ``User`` aggregate; the
    answers are the same.

    ``shown``: how the answer names a user the command did not name itself (one the log
    recorded): by their role, since the log knows them by a subject the caller never gave
    and that must not leave the ledger (docs/privacy.md)."""
    fact = facts.live(uow, user_id)
    if fact is not None:
        if not fact:  # a subject without its row: registered, then deleted
            raise NotFound(f"{shown or f'user {user_id!r}'} was deleted", field_name)
        return
    user = uow.get(ids.user_id(user_id), User)
    if user is None or user.deleted:
        state = "was deleted" if user is not None else "is not registered"
        raise NotFound(f"{shown or f'user {user_id!r}'} {state}", field_name)


def live_content(uow: UnitOfWork, content_id: str, field_name: str = "content_id") -> Content:
    """Published content not deleted."""
    content = uow.get(ids.content_id(content_id), Content)
    if content is None or content.deleted:
        state = "was deleted" if content is not None else "is not published"
        raise NotFound(f"content {content_id} {state}", field_name)
    return content


@handles(
    RegisterOrganization,
    needs=lambda command: [ids.organization_id(str(command.organization_id))],
)
def register_organization(
    uow: UnitOfWork,
    command: RegisterOrganization,
    occurred: str,
    fingerprint: Fingerprint,
) -> None:
    organization_id = str(command.organization_id)
    existing = uow.get(ids.organization_id(organization_id), Organization)
    if existing is not None:
        if fingerprint.matches(existing.fingerprint):
            raise Duplicate
        raise Conflict(
            f"organization {organization_id} is already registered with other details",
            "organization_id",
        )
    uow.record(
        Organization.register(organization_id, command.name, fingerprint.canonical, occurred)
    )


@handles(RegisterUser, needs=lambda command: [ids.user_id(command.user_id)])
def register_user(uow: UnitOfWork, command: RegisterUser, occurred: str, _: Fingerprint) -> None:
    existing = uow.get(ids.user_id(command.user_id), User)
    if existing is not None:
        if existing.deleted:
            raise InvalidState(
                f"user {command.user_id!r} was deleted; a deleted user id cannot be "
                "registered again",
                "user_id",
            )
        raise Duplicate
    uow.record(User.register(command.user_id, occurred))


@handles(DeleteUser, needs=lambda command: [ids.user_id(command.user_id)])
def delete_user(uow: UnitOfWork, command: DeleteUser, occurred: str, _: Fingerprint) -> None:
    user = uow.get(ids.user_id(command.user_id), User)
    if user is None:
        raise NotFound(f"user {command.user_id!r} is not registered", "user_id")
    if user.deleted:
        raise Duplicate
    user.delete(occurred)
    uow.record(user)


@handles(EraseUser, needs=lambda command: [ids.user_id(command.user_id)])
def erase_user(uow: UnitOfWork, command: EraseUser, occurred: str, _: Fingerprint) -> None:
    """The person is forgotten (docs/privacy.md): ``user_id`` is their subject by now
    (``ledger.service.pseudonyms``); an erased person has none, so erasing them again
    finds no one (``not_found``)."""
    user = uow.get(ids.user_id(command.user_id), User)
    if user is None:
        raise NotFound(f"user {command.user_id!r} is not registered", "user_id")
    if user.erased:
        raise Duplicate  # a person registered before subjects, erased already
    user.erase(occurred)
    uow.record(user)


def _departure(command: LeaveOrganization) -> list[UUID]:
    return [
        ids.user_id(command.user_id),
        ids.departure_id(command.user_id, str(command.organization_id)),
    ]


@handles(LeaveOrganization, needs=_departure)
def leave_organization(
    uow: UnitOfWork, command: LeaveOrganization, occurred: str, _: Fingerprint
) -> None:
    """One organization's part of a deletion or erasure (``ledger.service.departures``):
    done once per person and organization; nothing to do for a person the global part has
    deleted already (it answers the command) or never knew."""
    user = uow.get(ids.user_id(command.user_id), User)
    if user is None or user.deleted:
        raise Duplicate
    organization_id = str(command.organization_id)
    if uow.get(ids.departure_id(command.user_id, organization_id), Departure) is not None:
        raise Duplicate
    uow.record(Departure.leave(command.user_id, organization_id, occurred))


@handles(
    PublishContent,
    needs=lambda command: [
        ids.content_id(str(command.content_id)),
        ids.organization_id(str(command.organization_id)),
        ids.user_id(command.creator_id),
    ],
)
def publish_content(
    uow: UnitOfWork, command: PublishContent, occurred: str, fingerprint: Fingerprint
) -> None:
    content_id = str(command.content_id)
    existing = uow.get(ids.content_id(content_id), Content)
    if existing is not None:
        if existing.deleted:
            raise InvalidState(
                f"content {content_id} was deleted; its id cannot be published again",
                "content_id",
            )
        if fingerprint.matches(existing.fingerprint):
            raise Duplicate
        raise Conflict(
            f"content {content_id} is already published with other details", "content_id"
        )
    organization_id = str(command.organization_id)
    if uow.get(ids.organization_id(organization_id), Organization) is None:
        raise NotFound(f"organization {organization_id} is not registered", "organization_id")
    live_user(uow, command.creator_id, "creator_id")
    uow.record(
        Content.publish(
            content_id,
            organization_id,
            command.creator_id,
            command.title,
            fingerprint.canonical,
            occurred,
        )
    )


@handles(DeleteContent, needs=lambda command: [ids.content_id(str(command.content_id))])
def delete_content(uow: UnitOfWork, command: DeleteContent, occurred: str, _: Fingerprint) -> None:
    content_id = str(command.content_id)
    content = uow.get(ids.content_id(content_id), Content)
    if content is None:
        raise NotFound(f"content {content_id} is not published", "content_id")
    if content.deleted:
        raise Duplicate
    if uow.has_purchase_rows(content_id, content.organization_id):
        raise InvalidState(
            f"content {content_id} has purchases; purchases restrict its deletion",
            "content_id",
        )
    content.delete(occurred)
    uow.record(content)
