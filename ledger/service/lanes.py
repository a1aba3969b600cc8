"""The write side's lanes: money commands to the log's group commit, heartbeats to the
playback store's (``LEDGER_PLAYBACK_LANES`` of them, by (user, content), so one pair's
heartbeats keep their order while other pairs' commit beside them).

The heartbeats never wait for the log's lock, nor for a money group: each lane is a
``GroupCommitter`` of its own, with the same bounds, answers and errors.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence

from ledger.commands.access import RecordPlayback
from ledger.commands.base import Command
from ledger.commands.results import Result
from ledger.config import Settings
from ledger.service.group_commit import GroupCommitter, Observer, Partition


class Lanes:
    def __init__(
        self,
        money: Callable[[Sequence[Command]], list[Result]],
        playback: Callable[[Sequence[RecordPlayback]], list[Result]],
        settings: Settings,
        partition: Partition | None = None,
    ) -> None:
        self.money = GroupCommitter(money, settings, partition)  # per organization if given

        def heartbeats(commands: Sequence[Command]) -> list[Result]:
            return playback([c for c in commands if isinstance(c, RecordPlayback)])

        self.playback = [
            GroupCommitter(heartbeats, settings) for _ in range(settings.playback_lanes)
        ]

    def _all(self) -> list[GroupCommitter]:
        return [self.money, *self.playback]

    def _lane(self, command: Command) -> GroupCommitter:
        if not isinstance(command, RecordPlayback):
            return self.money
        pair = f"{command.user_id}\x00{command.content_id}".encode()
        return self.playback[zlib.crc32(pair) % len(self.playback)]

    def observe(self, callback: Observer) -> None:
        for lane in self._all():
            lane.observe(callback)

    @property
    def closed(self) -> bool:
        return self.money.closed

    @property
    def waiting(self) -> int:
        return sum(lane.waiting for lane in self._all())

    def append(self, command: Command) -> Result:
        return self._lane(command).append(command)

    def append_all(self, commands: Sequence[Command]) -> list[Result | BaseException]:
        """As ``GroupCommitter.append_all``, in this order: the commands in runs of one
        lane, each run queued once the one before it is answered (a grant then a
        heartbeat in one call: the heartbeat sees the grant; a list of one kind is one
        call of its lane)."""
        answers: list[Result | BaseException] = []
        start = 0
        while start < len(commands):
            lane = self._lane(commands[start])
            end = start + 1
            while end < len(commands) and self._lane(commands[end]) is lane:
                end += 1
            run = commands[start:end]
            try:
                answers += lane.append_all(run)
            except Exception as error:  # Overloaded, closed: only if nothing was queued yet
                if not answers:
                    raise
                answers += [error] * len(run)
            start = end
        return answers

    def close(self) -> None:
        for lane in self._all():
            lane.close()
