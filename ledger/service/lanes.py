"""The write side's lanes: money commands to the log's group commit, heartbeats to the
playback store's (``LEDGER_PLAYBACK_LANES`` of them, by (user, content), so one pair's
heartbeats keep their order while other pairs' commit beside them).

The heartbeats never wait for the log's lock, nor for a money group: each lane is a
``GroupCommitter`` of its own, with the same bounds, answers and errors.

A heartbeat is identified (``Heartbeat.of``: its time, the payload's digest, its identity)
here, in its caller's thread, before it queues: the lane's leader, whose section is serial,
only writes the group. Its moment, when it has no ``occurred_at``, is the call's.
A playback lane gathers (``GroupCommitter._gather``): heartbeats are sent by many callers
in a loop, and a larger group shares the statement's and the commit's fixed cost.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence

from ledger.commands.access import RecordPlayback
from ledger.commands.base import Command
from ledger.commands.results import Result
from ledger.config import Settings
from ledger.domain import clock
from ledger.playback.decide import Heartbeat
from ledger.service.group_commit import GroupCommitter, Observer, Partition

Item = Command | Heartbeat
"""What a caller queues: a money command, or a heartbeat identified in its thread."""


class Lanes:
    def __init__(
        self,
        money: Callable[[Sequence[Command]], list[Result]],
        playback: Callable[[Sequence[Heartbeat]], list[Result]],
        settings: Settings,
        partition: Partition | None = None,
    ) -> None:
        # per organization if given
        self.money: GroupCommitter[Command] = GroupCommitter(money, settings, partition)
        self.playback: list[GroupCommitter[Heartbeat]] = [
            GroupCommitter(playback, settings, size=Heartbeat.size, gather=True)
            for _ in range(settings.playback_lanes)
        ]

    def _all(self) -> list[GroupCommitter[Command] | GroupCommitter[Heartbeat]]:
        return [self.money, *self.playback]

    def _lane(self, heartbeat: Heartbeat) -> GroupCommitter[Heartbeat]:
        if len(self.playback) == 1:
            return self.playback[0]
        pair = f"{heartbeat.user_id}\x00{heartbeat.content_id}".encode()
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
        if not isinstance(command, RecordPlayback):
            return self.money.append(command)
        heartbeat = Heartbeat.now(command)
        return self._lane(heartbeat).append(heartbeat)

    def append_all(self, commands: Sequence[Item]) -> list[Result | BaseException]:
        """As ``GroupCommitter.append_all``, in this order: the commands in runs of one
        lane, each run queued once the one before it is answered (a grant then a
        heartbeat in one call: the heartbeat sees the grant; a list of one kind is one
        call of its lane). A heartbeat may come identified already (``Heartbeat``: the HTTP
        service identifies each on its event loop, while the group before it commits)."""
        answers: list[Result | BaseException] = []
        now = clock.now()
        items = [Heartbeat.of(c, now) if isinstance(c, RecordPlayback) else c for c in commands]
        lanes = [self.money if isinstance(i, Command) else self._lane(i) for i in items]
        start = 0
        while start < len(items):
            lane = lanes[start]
            end = start + 1
            while end < len(items) and lanes[end] is lane:
                end += 1
            run = items[start:end]
            try:
                answers += lane.append_all(run)  # type: ignore[arg-type]
            except Exception as error:  # Overloaded, closed: only if nothing was queued yet
                if not answers:
                    raise
                answers += [error] * len(run)
            start = end
        return answers

    def close(self) -> None:
        for lane in self._all():
            lane.close()
