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

import threading
import zlib
from collections.abc import Callable, Sequence

from ledger.commands.access import RecordPlayback
from ledger.commands.base import Command
from ledger.commands.results import Result
from ledger.config import Settings
from ledger.domain import clock
from ledger.playback.decide import Heartbeat
from ledger.service.group_commit import GroupCommitter, Observer, Partition
from ledger.service.in_flight import SplitLane

Item = Command | Heartbeat
"""What a caller queues: a money command, or a heartbeat identified in its thread."""

Lane = GroupCommitter[Heartbeat] | SplitLane
"""A playback lane: one committer, or (``LEDGER_PLAYBACK_IN_FLIGHT`` above 1) its callers
split into parts whose groups are in flight at once (``ledger.service.in_flight``)."""


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
        self.playback: list[Lane] = [
            self._playback_lane(playback, settings) for _ in range(settings.playback_lanes)
        ]

    @staticmethod
    def _playback_lane(
        playback: Callable[[Sequence[Heartbeat]], list[Result]], settings: Settings
    ) -> Lane:
        if settings.playback_in_flight > 1:
            return SplitLane(playback, settings, settings.playback_in_flight)
        return GroupCommitter(playback, settings, size=Heartbeat.size, gather=True)

    def _all(self) -> list[GroupCommitter[Command] | Lane]:
        return [self.money, *self.playback]

    def _lane(self, heartbeat: Heartbeat) -> Lane:
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
        """As ``GroupCommitter.append_all``, in this order: the commands in runs, each run
        queued once the one before it is answered (a grant then a heartbeat in one call: the
        heartbeat sees the grant; a list of one kind is one run). A run of heartbeats goes to
        its lanes at once, each lane's share in its order (``_heartbeats``). A heartbeat may
        come identified already (``Heartbeat``: the HTTP service identifies each on its event
        loop, while the group before it commits)."""
        answers: list[Result | BaseException] = []
        now = clock.now()
        items = [Heartbeat.of(c, now) if isinstance(c, RecordPlayback) else c for c in commands]
        start = 0
        while start < len(items):
            beats = isinstance(items[start], Heartbeat)
            end = start + 1
            while end < len(items) and isinstance(items[end], Heartbeat) == beats:
                end += 1
            run = items[start:end]
            try:
                if beats:
                    answers += self._heartbeats(run)  # type: ignore[arg-type]
                else:
                    answers += self.money.append_all(run)  # type: ignore[arg-type]
            except Exception as error:  # Overloaded, closed: only if nothing was queued yet
                if not answers:
                    raise
                answers += [error] * len(run)
            start = end
        return answers

    def _heartbeats(self, run: Sequence[Heartbeat]) -> list[Result | BaseException]:
        """A run of heartbeats, each lane's share queued at once (the first in this thread,
        the others each in a thread of its own), answered in the run's order.

        Why at once: the service hands over lists of many viewers' heartbeats; queued lane by
        lane, one after the other, two lanes split such a list into runs of one or two and
        their groups shrink to that (docs/performance.md, "Two groups in flight"). Nothing is
        reordered that a rule could see: one (user, content) is always in one lane, in its
        order, and no rule spans two pairs (a key sent with two pairs' heartbeats is decided
        by the store's unique key, whichever commits first). An error of every lane (a full
        queue, a closed ledger) is raised; of some lanes only, it answers their share."""
        lanes = [self._lane(h) for h in run]
        distinct = list(dict.fromkeys(lanes))
        if len(distinct) == 1:
            return distinct[0].append_all(run)
        shares = {
            id(lane): [n for n, each in enumerate(lanes) if each is lane] for lane in distinct
        }
        done: dict[int, list[Result | BaseException] | Exception] = {}

        def queue(lane: Lane) -> None:
            try:
                done[id(lane)] = lane.append_all([run[n] for n in shares[id(lane)]])
            except Exception as error:
                done[id(lane)] = error

        helpers = [threading.Thread(target=queue, args=(lane,)) for lane in distinct[1:]]
        for helper in helpers:
            helper.start()
        queue(distinct[0])
        for helper in helpers:
            helper.join()
        failed = [d for d in done.values() if isinstance(d, Exception)]
        if len(failed) == len(distinct):
            raise failed[0]
        answers: dict[int, Result | BaseException] = {}
        for key, places in shares.items():
            got = done[key]
            for k, n in enumerate(places):
                answers[n] = got if isinstance(got, Exception) else got[k]
        return [answers[n] for n in range(len(run))]

    def close(self) -> None:
        for lane in self._all():
            lane.close()
