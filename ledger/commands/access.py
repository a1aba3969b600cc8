"""Access and playback: grant, revoke, and the player's heartbeat."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import model_validator

from ledger.commands.base import Command
from ledger.commands.fields import BusinessTime, Duration, Id, Seconds, Text1000


class GrantAccess(Command):
    type: Literal["access.grant"] = "access.grant"
    user_id: Id
    content_id: UUID
    access_type: Literal["subscription", "complimentary", "preview"]
    expires_at: BusinessTime | None = None


class RevokeAccess(Command):
    type: Literal["access.revoke"] = "access.revoke"
    user_id: Id
    content_id: UUID
    reason: Text1000 | None = None


class RecordPlayback(Command):
    type: Literal["playback.progress"] = "playback.progress"
    user_id: Id
    content_id: UUID
    position_seconds: Seconds
    duration_seconds: Duration

    @model_validator(mode="after")
    def _position_within_video(self) -> RecordPlayback:
        if self.position_seconds > self.duration_seconds:
            raise ValueError(
                f"position_seconds {self.position_seconds} lies beyond "
                f"duration_seconds {self.duration_seconds}"
            )
        return self
