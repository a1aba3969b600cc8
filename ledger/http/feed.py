"""The event loop's side of group commit: single commands from concurrent requests,
handed to the ledger together, by one thread.

Each request used to wait in a worker thread of its own for its group to commit: with
32 requests in flight that is 32 threads taking turns at Python's lock, a thread switch
to start each one and a wake-up of the event loop to answer each one, which cost the
service more CPU than deciding the commands (docs/performance.md, "The HTTP service").
Here a request queues its command on the event loop and awaits a future; one task hands
everything queued to the ledger's group commit at once (``ledger.append_parsed``, one
thread waiting for the lot) and, when it returns, answers every future in one turn of
the loop. Commands that arrive while a group commits wait for the next hand-over, which
is how group commit works anyway: the queue is the group.

The order and the answers are those of ``ledger.append`` called by one thread per
request in arrival order. The queue is bounded (``LEDGER_QUEUE_MAX``): beyond it a
request is answered ``Overloaded`` at once. A request whose client goes away once its
body was read still has its command committed (it was queued for appending), and its
answer is dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from ledger.commands.base import Command
from ledger.commands.results import Result
from ledger.playback.decide import Heartbeat
from ledger.service.group_commit import GroupAbandoned, LedgerClosed, Overloaded

Item = Command | Heartbeat
"""A command, or a heartbeat identified on the event loop (``Backend.submit``)."""
Append = Callable[[Sequence[Item]], list[Result | BaseException]]


class Feed:
    def __init__(self, append: Append, queue_max: int) -> None:
        self._append = append
        self._queue_max = queue_max
        self._queued: list[tuple[Item, asyncio.Future[Result]]] = []
        self._handing: asyncio.Task[None] | None = None
        self._closed = False
        # one hand-over at a time, so one thread is all it needs
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="ledger-group-feed")

    async def submit(self, command: Item) -> Result:
        """The command's result once its group has committed."""
        if self._closed:
            raise LedgerClosed("the service is stopping: nothing was appended")
        if len(self._queued) >= self._queue_max:
            raise Overloaded(
                f"{len(self._queued)} commands are already waiting (LEDGER_QUEUE_MAX): "
                "nothing was appended, try again later"
            )
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Result] = loop.create_future()
        self._queued.append((command, answer))
        if self._handing is None:
            self._handing = loop.create_task(self._hand_over())
        # a request cancelled while it waits (its client went away) cancels only its own
        # future: the hand-over its command is part of is a task of its own and goes on,
        # passing over an answer already done (no ``asyncio.shield``: a future and two
        # callbacks more for every request)
        return await answer

    async def _hand_over(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queued:
                taken, self._queued = self._queued, []
                try:
                    answers: Sequence[Result | BaseException] = await loop.run_in_executor(
                        self._thread, self._append, [command for command, _ in taken]
                    )
                except asyncio.CancelledError:  # the loop is stopping under us
                    stopped = GroupAbandoned("the service stopped while the group committed")
                    for _, future in [*taken, *self._queued]:
                        if not future.done():
                            _fail(future, stopped)
                    raise
                except Exception as error:  # nothing of these was queued, or the ledger failed
                    answers = [error] * len(taken)
                for (_, future), answer in zip(taken, answers, strict=True):
                    if future.done():
                        continue
                    if isinstance(answer, BaseException):
                        _fail(future, answer)
                    else:
                        future.set_result(answer)
        finally:
            self._handing = None

    def close(self) -> None:
        """Refuses new commands; what was handed over is committed and answered first
        (the ledger's own close waits for that)."""
        self._closed = True
        self._thread.shutdown(wait=True)


def _fail(future: asyncio.Future[Result], error: BaseException) -> None:
    """Answers ``error``, counted as seen at once: its request may be gone by the time the
    loop runs it (cancelled after the answer was set), and an error nobody retrieves is
    logged as "never retrieved". (A done-callback did this for every request, one more
    callback a request for the loop to run; the awaiting request still gets the error.)"""
    future.set_exception(error)
    future.exception()
