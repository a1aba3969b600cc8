"""Two (or more) groups in flight within one playback lane (``LEDGER_PLAYBACK_IN_FLIGHT``).

Why: one lane's cycle is serial (docs/performance.md, "One lane's cycle"): its 8 closed-loop
callers are all in one group, the group's statement (decision, writes, commit and its WAL
flush) is in the server while nobody is queued, then the callers come back one after the
other while the server is idle. A second group can only be sent while the first is in the
server if some callers are not in the first: so the lane's callers are split into parts
that stay split, each part a ``GroupCommitter`` of its own (its leader, its gather, its
connection from the pool), and the parts' groups overlap (migration 0029 lets two groups
hold the stream's lock shared).

A caller stays in its part: a thread is given a part when it first queues (round robin)
and keeps it, so a part's gather waits for its own callers, who come back to it (two lanes,
split by the pair's hash, lose because a lead waits for callers gone to the other lane).

The rules stay those of one group at a time: no (user, content) pair and no idempotency key
is in two groups in flight at once (``Exclusive``). A group that holds one of another's
waits, before it is sent, until that group has landed; so a pair's heartbeats are decided one
group after the other (the newest ``occurred_at`` wins by the store's guarded upsert either
way), and the same heartbeat or key sent again meanwhile is answered ``duplicate`` or
``conflict`` from the committed row, never by a unique key's race and a retry.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from ledger.commands.results import Result
from ledger.config import Settings
from ledger.playback.decide import Heartbeat
from ledger.service.group_commit import GroupCommitter, Observer

Execute = Callable[[Sequence[Heartbeat]], list[Result]]


def _claims(group: Sequence[Heartbeat]) -> set[tuple[str, ...]]:
    """What a group holds while in flight: its pairs and its keys (as distinct tuples)."""
    held: set[tuple[str, ...]] = {("pair", h.user_id, h.content_id) for h in group}
    held.update(("key", h.key) for h in group if h.key is not None)
    return held


class Exclusive:
    """The pairs and keys of the groups in flight, shared by one lane's parts: a group is
    sent only once none of its pairs and keys is another's in flight, and all of them are
    taken at once (so two parts never hold one each and wait for the other's: no deadlock)."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, ...], int] = {}  # held by a group in flight
        self._landed = threading.Condition(threading.Lock())

    def wrap(self, execute: Execute) -> Execute:
        """``execute`` with the group's pairs and keys held while it runs."""

        def exclusive(group: Sequence[Heartbeat]) -> list[Result]:
            claims = _claims(group)
            with self._landed:
                while any(c in self._held for c in claims):
                    self._landed.wait()
                for c in claims:
                    self._held[c] = 1
            try:
                return execute(group)
            finally:
                with self._landed:
                    for c in claims:
                        del self._held[c]
                    self._landed.notify_all()

        return exclusive


class SplitLane:
    """One playback lane whose callers are split into ``parts`` committers that stay split,
    their groups in flight at once, disjoint in pairs and keys. The interface the lanes use
    of a ``GroupCommitter``."""

    def __init__(self, execute: Execute, settings: Settings, parts: int) -> None:
        exclusive = Exclusive().wrap(execute)
        self.parts: list[GroupCommitter[Heartbeat]] = [
            GroupCommitter(exclusive, settings, size=Heartbeat.size, gather=True)
            for _ in range(parts)
        ]
        self._mine = threading.local()  # a thread's part, once given
        self._next = 0
        self._lock = threading.Lock()

    def _part(self) -> GroupCommitter[Heartbeat]:
        """The calling thread's part: given on its first call (round robin), then kept."""
        part: GroupCommitter[Heartbeat] | None = getattr(self._mine, "part", None)
        if part is None:
            with self._lock:
                part = self.parts[self._next % len(self.parts)]
                self._next += 1
            self._mine.part = part
        return part

    def observe(self, callback: Observer) -> None:
        for part in self.parts:
            part.observe(callback)

    @property
    def closed(self) -> bool:
        return self.parts[0].closed

    @property
    def waiting(self) -> int:
        return sum(part.waiting for part in self.parts)

    def append(self, heartbeat: Heartbeat) -> Result:
        return self._part().append(heartbeat)

    def append_all(self, heartbeats: Sequence[Heartbeat]) -> list[Result | BaseException]:
        """One caller's list, in its part, in its order (a list is one caller)."""
        return self._part().append_all(heartbeats)

    def close(self) -> None:
        for part in self.parts:
            part.close()
