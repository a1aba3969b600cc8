"""The catalogue's commands: organizations, users and content."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from ledger.commands.base import Command
from ledger.commands.fields import Id, Text255, Text500


class RegisterOrganization(Command):
    type: Literal["organization.register"] = "organization.register"
    organization_id: UUID
    name: Text255


class RegisterUser(Command):
    type: Literal["user.register"] = "user.register"
    user_id: Id


class DeleteUser(Command):
    type: Literal["user.delete"] = "user.delete"
    user_id: Id


class EraseUser(Command):
    """Forget the person for good (docs/privacy.md): their rows, their subject, every copy."""

    type: Literal["user.erase"] = "user.erase"
    user_id: Id


class Part(Command):
    """A command the service makes itself, as a part of another: never parsed from a line
    nor listed (``COMMAND_TYPES`` holds only ``Command``'s direct subclasses)."""


class LeaveOrganization(Part):
    """One organization's part of a ``user.delete`` or ``user.erase`` on a layout split by
    organization (``ledger.service.departures``, docs/scaling.md)."""

    type: Literal["user.leave"] = "user.leave"
    user_id: Id
    organization_id: UUID


class PublishContent(Command):
    type: Literal["content.publish"] = "content.publish"
    content_id: UUID
    organization_id: UUID
    creator_id: Id
    title: Text500


class DeleteContent(Command):
    type: Literal["content.delete"] = "content.delete"
    content_id: UUID
