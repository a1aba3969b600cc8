"""Handlers of access and playback: grant, revoke, heartbeat.

These commands have no natural key: a redelivery is recognised by its payload at its
moment (``Command.identity``), which the aggregate remembers.
"""

from __future__ import annotations

from uuid import UUID

from ledger.commands.access import GrantAccess, RecordPlayback, RevokeAccess
from ledger.commands.base import Fingerprint
from ledger.domain import clock, ids
from ledger.domain.access import no_access
from ledger.domain.aggregates import Access, Content, Playback
from ledger.domain.errors import Duplicate, NotFound
from ledger.service import facts
from ledger.service.catalogue import live_content, live_user
from ledger.service.registry import handles
from ledger.service.unit_of_work import UnitOfWork


def last_heartbeat(uow: UnitOfWork, user_id: str, content_id: str) -> str | None:
    """The heartbeat the (user, content) playback row shows: the access row's
    ``last_accessed_at`` when it stamped the present row."""
    playback = uow.get(ids.playback_id(user_id, content_id), Playback)
    return playback.shown_at if playback is not None else None


def _viewer(
    command: GrantAccess | RevokeAccess | RecordPlayback,
) -> list[UUID]:
    """The user, the content and the user's access to it."""
    content_id = str(command.content_id)
    return [
        ids.user_id(command.user_id),
        ids.content_id(content_id),
        ids.access_id(command.user_id, content_id),
    ]


def _viewer_and_playback(command: GrantAccess | RecordPlayback) -> list[UUID]:
    return [*_viewer(command), ids.playback_id(command.user_id, str(command.content_id))]


def _access(uow: UnitOfWork, command: GrantAccess | RevokeAccess) -> tuple[Content, Access | None]:
    """The live content the command is about, and the user's access to it, if any."""
    live_user(uow, command.user_id, "user_id")
    content = live_content(uow, str(command.content_id))
    return content, uow.get(ids.access_id(command.user_id, content.content_id), Access)


@handles(GrantAccess, needs=_viewer_and_playback)
def grant_access(uow: UnitOfWork, command: GrantAccess, occurred: str, _: Fingerprint) -> None:
    content, access = _access(uow, command)
    identity = command.identity(occurred)
    if access is not None and identity in access.seen:
        raise Duplicate
    expires_at = clock.canonical(command.expires_at) if command.expires_at is not None else None
    if access is None:
        access = Access.open(command.user_id, content.content_id, occurred)
    access.grant(
        content.organization_id,
        command.access_type,
        expires_at,
        identity,
        last_heartbeat(uow, command.user_id, content.content_id),
        occurred,
    )
    uow.record(access)


@handles(RevokeAccess, needs=_viewer)
def revoke_access(uow: UnitOfWork, command: RevokeAccess, occurred: str, _: Fingerprint) -> None:
    content, access = _access(uow, command)
    if access is None:
        raise NotFound(
            f"{command.user_id!r} has no access to content {content.content_id} to revoke",
            "content_id",
        )
    identity = command.identity(occurred)
    if identity in access.seen or not access.present:
        raise Duplicate  # redelivered, or the row is already gone: nothing to change
    row = facts.revocation_guard(uow, access, occurred)  # its row, before the revocation
    access.revoke(command.reason, identity, occurred)
    facts.guard(uow, row)
    uow.record(access)


@handles(RecordPlayback, needs=_viewer_and_playback)
def record_playback(
    uow: UnitOfWork, command: RecordPlayback, occurred: str, _: Fingerprint
) -> None:
    live_user(uow, command.user_id, "user_id")
    content = live_content(uow, str(command.content_id))
    playback = uow.get(ids.playback_id(command.user_id, content.content_id), Playback)
    identity = command.identity(occurred)
    if playback is not None and identity in playback.seen:
        raise Duplicate  # recorded already: a replay is a duplicate, access or not
    access = uow.get(ids.access_id(command.user_id, content.content_id), Access)
    if access is None:
        raise no_access(command.user_id, content.content_id)
    access.check_playable(occurred)
    if playback is None:
        playback = Playback.open(command.user_id, content.content_id, occurred)
    playback.progress(
        command.position_seconds, command.duration_seconds, identity, access.changed_at, occurred
    )
    uow.record(playback)
