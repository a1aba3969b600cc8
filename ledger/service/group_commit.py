"""Group commit: concurrent appends on one opened ledger share one durable transaction.

A durable transaction costs a round trip, the log's lock and a WAL flush whatever it
holds, and eight writers committing one command each saturate the server long before
the client (docs/performance.md). So callers of ``ledger.append`` queue, and the
waiting commands are decided and written together: in arrival order, each on the state
the ones before it left, in one unit of work, then one append (one lock, one round
trip, one commit), and each caller is answered only after that commit
(``Ledger.execute_group``, which also keeps every answer what it would have been alone).

Leader/follower, no thread of its own: the first caller to find nobody committing
leads, takes the queue's head (up to ``LEDGER_GROUP_MAX`` commands and
``LEDGER_GROUP_MAX_BYTES`` bytes) and commits it, and those who queued meanwhile wait.
When its group is answered the leader hands the lead to the caller now at the head of
the queue and returns: nobody commits for others for longer than one group, and there
is no thread to start, to stop or to leak. One leader at a time also means one
decision at a time, which is what the service's aggregate cache needs.

On a distributed layout (docs/scaling.md) groups are per organization: the committer is
given a ``partition`` naming each command's organization, and a group takes, behind its
head, only the commands of the head's organization, passing over the others (which keep
their order and go in later groups). So an organization whose worker is lost fails only its
own groups, and another's commit on. Nothing is reordered that a rule could see: no rule
spans two organizations, and a command of the whole platform (``GLOBAL``: a user's
registration or deletion) is never passed over, nor taken past another's command. On a
single server there is no partition and a group is the queue's head, as before.

A committer made with ``gather`` (the playback lanes) lets the lead handed on at a commit
wait, briefly, for the callers that commit answered (``_gather``): callers in a loop then
share one group instead of alternating halves. What a committer queues is given to it as is
(``T``): the playback lanes queue heartbeats their callers identified already.

The queue is bounded (``LEDGER_QUEUE_MAX``): a caller beyond it gets ``Overloaded`` at
once, so memory stays bounded under any load and an HTTP front can answer 503.
Closing the ledger refuses new callers (``LedgerClosed``) and waits until every queued
caller is answered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from ledger.commands.base import Command
from ledger.commands.results import Result
from ledger.config import Settings

GLOBAL = "*"
"""The partition of a command of the whole platform, not of one organization."""

T = TypeVar("T")
"""What a committer queues: a ``Command`` (the money lane), or a heartbeat already
validated and identified in its caller's thread (``ledger.playback.decide.Heartbeat``)."""

Partition = Callable[[Command], str]
"""A command's organization (any text naming it), or ``GLOBAL``."""

Observer = Callable[[int, float], None]
"""Called with each committed group's size (commands) and duration (seconds)."""

GATHER_FRACTION = 0.5
"""A lead handed on waits for the last group's callers at most this fraction of that
group's commit time (``GroupCommitter._gather``)..."""
GATHER_MAX = 0.005
"""... and at most this many seconds."""

_log = logging.getLogger(__name__)


class Overloaded(Exception):
    """More callers are waiting than ``LEDGER_QUEUE_MAX``: nothing was done, try again later."""


class LedgerClosed(RuntimeError):
    """The ledger was closed: nothing was done."""


class GroupFailed(Exception):
    """A group's fallback (one transaction per command) stopped at a command with an error:
    the commands before it are answered, it and those after it get ``error``."""

    def __init__(self, answered: list[Result], error: Exception) -> None:
        super().__init__(str(error))
        self.answered = answered
        self.error = error


class GroupAbandoned(RuntimeError):
    """The thread committing this command's group was stopped (an interrupt) during the
    commit: the command may or may not be recorded; sending it again is safe."""


def json_size(command: Any) -> int:
    """A command's size for ``LEDGER_GROUP_MAX_BYTES``: its JSON's bytes."""
    return len(command.__pydantic_serializer__.to_json(command))


class _Wake:
    """A caller's wake-up, set once (set again: nothing) and waited for once: a bare lock
    taken at creation, released by ``set``. Why not ``threading.Event``: every caller
    makes one and every group's leader sets one a caller, inside the lane's serial cycle
    (docs/performance.md, "One lane's cycle"); an Event is a Condition, a lock, and a lock
    made a wait, about ten times a bare lock's cost. Set only under the committer's lock."""

    __slots__ = ("_lock", "_set")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._set = False

    def set(self) -> None:
        if not self._set:
            self._set = True
            self._lock.release()

    def wait(self) -> None:
        self._lock.acquire()


@dataclass(eq=False)
class _Call(Generic[T]):
    command: T
    size: int
    partition: str = GLOBAL
    state: Literal["waiting", "lead", "taken", "done"] = "waiting"
    first: bool = False  # the first command of its ``append_all``: a caller
    result: Result | None = None
    error: BaseException | None = None
    wake: _Wake = field(default_factory=_Wake)

    def answer(self) -> Result:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class GroupCommitter(Generic[T]):
    def __init__(
        self,
        execute_group: Callable[[Sequence[T]], list[Result]],
        settings: Settings,
        partition: Callable[[T], str] | None = None,
        *,
        size: Callable[[T], int] = json_size,
        gather: bool = False,
    ) -> None:
        """``size``: an item's bytes for ``LEDGER_GROUP_MAX_BYTES``. ``gather``: a lead
        handed on waits, briefly, for the callers the last group answered to queue again
        (``_gather``)."""
        self._execute_group = execute_group
        self._partition = partition
        self._size = size
        self._group_max = settings.group_max
        self._group_max_bytes = settings.group_max_bytes
        self._queue_max = settings.queue_max
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._arrived = threading.Condition(self._lock)  # a caller queued (for ``_gather``)
        self._gathers = gather
        self._expect = 0  # the callers the next lead gathers: as many as the last group's
        self._arrivals = 0  # callers queued since the last group was answered
        self._gather_until = 0.0  # and until when it waits for them (``time.perf_counter``)
        self._queue: deque[_Call[T]] = deque()
        self._leading = False
        self._closed = False
        self._observers: list[Observer] = []

    def observe(self, callback: Observer) -> None:
        """``callback(size, seconds)`` after each committed group, from the thread that
        committed it (so from several threads over time, never two at once for one ledger
        unless the callback is slow). An exception it raises is logged and ignored: the
        group is committed and its callers are answered whatever a metric does."""
        with self._lock:
            self._observers.append(callback)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def waiting(self) -> int:
        """Callers queued and not yet taken into a group (a gauge for metrics)."""
        with self._lock:
            return len(self._queue)

    def append(self, command: T) -> Result:
        """Queues the command and returns its answer once its group has committed."""
        (answer,) = self.append_all([command])
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def append_all(self, commands: Sequence[T]) -> list[Result | BaseException]:
        """Queues the commands in order, as one caller, and returns each one's answer (a
        ``Result``, or the error that stopped its group) once they have all committed.

        For a front that collects concurrent requests itself (the HTTP service's event
        loop): one thread waits for them all, where one thread per command would cost a
        thread switch and a wake-up each. They are decided exactly as if each had been
        appended by a caller of its own, in this order. ``Overloaded`` if the queue has
        no room for all of them (then none is queued).
        """
        size = self._size
        calls = [_Call(c, size(c)) for c in commands]
        if self._partition is not None:
            for call in calls:
                call.partition = self._partition(call.command)
        if not calls:
            return []
        with self._lock:
            if self._closed:
                raise LedgerClosed("the ledger is closed: nothing was appended")
            if len(self._queue) + len(calls) > self._queue_max:
                raise Overloaded(
                    f"{len(self._queue)} commands are already waiting (LEDGER_QUEUE_MAX): "
                    "nothing was appended, try again later"
                )
            self._queue.extend(calls)
            calls[0].first = True
            self._arrivals += 1
            if self._expect and self._arrivals == self._expect:
                self._arrived.notify()  # the lead gathering waits for this one
            follow, self._leading = self._leading, True
            if not follow:
                calls[0].state = "lead"  # so that an interrupt before it leads hands the lead on
        try:
            for index, call in enumerate(calls):
                if follow or index > 0:
                    call.wake.wait()
                    if call.state == "done":
                        continue
                # this caller leads: its next command is at the head of the queue
                self._lead()
        except BaseException:
            # an interrupt: what is not yet taken into a group leaves the queue, and a lead
            # held by (or handed to) one of these commands goes on to the next caller
            for call in calls:
                self._abandon(call)
            raise
        return [c.error if c.error is not None else c.answer() for c in calls]

    def close(self) -> None:
        """Refuses new callers and returns once every queued one is answered."""
        with self._lock:
            self._closed = True
            while self._leading:
                self._idle.wait()

    def _lead(self) -> None:
        """Commits one group from the head of the queue (this caller's command first)."""
        group: list[_Call[T]] = []
        try:
            # inside the try: an interrupt landing once the group is taken must still answer
            # it and hand the lead on, or its callers and every later one wait for ever
            with self._lock:
                if self._expect:
                    self._gather()
                group = self._take()
            started = time.perf_counter()
            results = self._execute_group([c.command for c in group])
            seconds = time.perf_counter() - started
            with self._lock:
                for c, result in zip(group, results, strict=True):
                    c.result = result
                if self._gathers:
                    # the next lead gathers as many callers as this group answers, if they
                    # come back soon (callers in a loop do)
                    self._expect = sum(c.first for c in group)
                    self._arrivals = 0
                    self._gather_until = time.perf_counter() + min(
                        GATHER_FRACTION * seconds, GATHER_MAX
                    )
                self._answer(group)
                observers = list(self._observers)
        except BaseException as error:
            if group and group[-1].state == "done":
                raise  # an interrupt once the group was answered: nothing is left to do
            answered: list[Result] = []
            stopped: Exception
            if isinstance(error, GroupFailed):
                answered, stopped = error.answered, error.error
            elif isinstance(error, Exception):
                stopped = error
            else:
                stopped = GroupAbandoned(repr(error))
            with self._lock:
                for c, result in zip(group, answered, strict=False):
                    c.result = result
                for c in group[len(answered) :]:
                    c.error = stopped
                self._answer(group)
            if not isinstance(error, Exception):
                raise  # the leader's own interrupt, once its followers are answered
            return
        for observer in observers:
            try:
                observer(len(group), seconds)
            except Exception:
                _log.exception("a group commit observer failed (ignored)")

    def _gather(self) -> None:
        """Waits (under the lock, released while waiting) until as many callers have
        queued since the last group was answered as it answered (``_expect``), or until
        ``_gather_until``, whichever is first.

        Why: a group's fixed cost (a round trip, the statement, a commit and its WAL
        flush: most of a heartbeat's server CPU) is shared by its commands. With N
        callers each waiting for its answer before it sends again, the next group takes
        only those that queued during the last commit, and the callers that commit
        answered are still on their way back: groups alternate between about N/2 and
        N/2, or between 1 and N - 1. Waiting for them, for at most a fraction of the last
        group's commit time, gives groups of N; callers that do not come back cost that
        fraction once. Callers are counted, not commands: a front that sends its requests
        as one list (``append_all``) is one caller, never waited for by itself.
        """
        try:
            while self._arrivals < self._expect:
                left = self._gather_until - time.perf_counter()
                if left <= 0 or not self._arrived.wait(left):
                    return
        finally:
            self._expect = 0

    def _take(self) -> list[_Call[T]]:
        """The head of the queue, within the bounds (a command above the byte bound alone);
        with a partition, the head and the commands of its organization behind it."""
        if self._partition is not None:
            return self._take_partition()
        group: list[_Call[T]] = []
        size = 0
        while self._queue and len(group) < self._group_max:
            head = self._queue[0]
            if group and size + head.size > self._group_max_bytes:
                break
            self._queue.popleft()
            head.state = "taken"
            group.append(head)
            size += head.size
        return group

    def _take_partition(self) -> list[_Call[T]]:
        """The head, then those of its organization behind it, passing over other
        organizations' commands but never a ``GLOBAL`` one (nor, for a ``GLOBAL`` head,
        anything: it groups only with the ``GLOBAL`` commands right behind it)."""
        head = self._queue[0]
        group: list[_Call[T]] = []
        size = 0
        for call in self._queue:
            if len(group) >= self._group_max:
                break
            if call.partition != head.partition:
                if GLOBAL in (call.partition, head.partition):
                    break
                continue
            if group and size + call.size > self._group_max_bytes:
                break
            group.append(call)
            size += call.size
        for call in group:
            call.state = "taken"
        self._queue = deque(c for c in self._queue if c.state != "taken")
        return group

    def _answer(self, group: list[_Call[T]]) -> None:
        """Wakes the group's callers and hands the lead on (under the lock)."""
        for c in group:
            c.state = "done"
            c.wake.set()
        self._hand_off()

    def _hand_off(self) -> None:
        if self._queue:
            head = self._queue[0]
            head.state = "lead"
            head.wake.set()
        else:
            self._leading = False
            if self._closed:  # only ``close`` waits for this (a notify costs each group)
                self._idle.notify_all()

    def _abandon(self, call: _Call[T]) -> None:
        """A follower stopped while waiting (an interrupt): a command not yet taken into a
        group leaves the queue unwritten; the lead it was handed goes to the next."""
        with self._lock:
            if call.state in ("waiting", "lead"):
                self._queue.remove(call)
            if call.state == "lead":
                self._hand_off()
