"""SIGINT and SIGTERM, held back while a committed line still lacks its answer.

A command that commits and then answers must not be stopped between the two: the checkout flow
would never learn that the line was recorded. ``Guard`` turns SIGINT and SIGTERM into
``Interrupted`` (a ``KeyboardInterrupt``, so psycopg cancels a running query) at once, except inside
``holding()``: there a signal waits until the block ends or until the command next waits for
input (``released``), where stopping loses nothing. A second signal while one waits stops at
once: whoever presses Ctrl-C twice prefers stopping now to the last answer.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TypeVar

T = TypeVar("T")


class Interrupted(KeyboardInterrupt):
    def __init__(self, signum: int, *, forced: bool = False) -> None:
        super().__init__(signum)
        self.signum = signum
        self.forced = forced

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


class Guard:
    def __init__(self) -> None:
        self._holding = 0
        self._pending: int | None = None

    def install(self) -> None:
        """Takes SIGINT and SIGTERM, unless whoever started us chose to ignore them (as a shell
        does for a command run in the background)."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(signum) is not signal.SIG_IGN:
                signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._holding and self._pending is None:
            self._pending = signum
            return
        raise Interrupted(signum, forced=self._holding > 0)

    def _raise_pending(self) -> None:
        if self._pending is not None:
            signum, self._pending = self._pending, None
            raise Interrupted(signum)

    @contextmanager
    def holding(self) -> Iterator[None]:
        self._holding += 1
        try:
            yield
        except BaseException:
            self._holding -= 1
            raise
        self._holding -= 1
        if not self._holding:
            self._raise_pending()

    @contextmanager
    def _released(self) -> Iterator[None]:
        held, self._holding = self._holding, 0
        try:
            self._raise_pending()
            yield
        finally:
            self._holding = held

    def released(self, items: Iterable[T]) -> Iterator[T]:
        """``items``, each read with signals free to stop the command at once."""
        iterator = iter(items)
        while True:
            with self._released():
                try:
                    item = next(iterator)
                except StopIteration:
                    return
            yield item


class SignalStop:
    """A stop flag that a signal handler may set: ``set`` takes no lock.

    A handler runs in the main thread between two bytecodes, possibly while that thread
    is inside ``threading.Event.wait`` holding the event's lock: an ``Event.set`` there
    waits for ever for that lock (``ledger events --follow`` once hung on SIGTERM so).
    ``set`` writes a byte to a pipe instead, and ``wait`` waits on the pipe with
    ``select``, so a signal during the wait wakes it at once.
    """

    def __init__(self) -> None:
        self._set = False
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)

    def set(self) -> None:
        self._set = True
        with contextlib.suppress(OSError):  # the pipe full (already woken) or closed
            os.write(self._write, b"x")

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        if not self._set:
            select.select([self._read], [], [], timeout)
        return self._set

    def close(self) -> None:
        for fd in (self._read, self._write):
            os.close(fd)


GUARD = Guard()
