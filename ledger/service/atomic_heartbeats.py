"""An ``--atomic`` batch's heartbeats, checked before its money commands (docs/cli.md,
"Heartbeats and ``--atomic``").

The heartbeats are recorded in the playback store after the money commands commit, in a
transaction of their own: so whatever would refuse one is asked first, on the state before
the batch, where the money commands cannot yet have changed the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ledger.commands.access import RecordPlayback
from ledger.commands.base import Command
from ledger.commands.results import Result
from ledger.domain.errors import Rejected
from ledger.service import command_keys


class Checks(Protocol):
    def check(self, commands: Sequence[RecordPlayback]) -> list[Result | None]: ...


def refused(playback: Checks, commands: Sequence[Command | Rejected]) -> list[Result] | None:
    """The batch's answers when it must write nothing before deciding a money command (a
    heartbeat rejected now, a key both a heartbeat and a money command carry); else ``None``.

    A heartbeat whose user a money command of the batch names is not answered here: the
    command may change its answer, so it is decided once the money commands committed."""
    heartbeats = [c for c in commands if isinstance(c, RecordPlayback)]
    checked = iter(playback.check(heartbeats) if heartbeats else [])
    early: list[Result | None] = [
        next(checked) if isinstance(c, RecordPlayback) else None for c in commands
    ]
    early = [
        r if r is not None and not _touched(c, commands) else None
        for c, r in zip(commands, early, strict=True)
    ]
    for index, error in command_keys.shared(commands, RecordPlayback).items():
        early[index] = Result("rejected", error=error)
    if not any(r is not None and r.status == "rejected" for r in early):
        return None
    return [
        r
        if r is not None and r.status == "rejected"
        else Result("rejected", error=c)
        if isinstance(c, Rejected)
        else Result("rolled_back")
        for c, r in zip(commands, early, strict=True)
    ]


def _touched(command: Command | Rejected, batch: Sequence[Command | Rejected]) -> bool:
    """Whether a money command of the batch names this heartbeat's user (a grant, a
    purchase, a revoke, the user's registration or deletion may change its answer)."""
    if not isinstance(command, RecordPlayback):
        return False
    return any(
        command.user_id in (getattr(other, "user_id", None), getattr(other, "customer_id", None))
        for other in batch
        if not isinstance(other, Rejected | RecordPlayback)
    )
