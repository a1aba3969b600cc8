"""The output loop that ``ledger events`` and ``ledger playback events`` share: JSON Lines
written batch by batch, stopped by SIGINT or SIGTERM between two lines (never inside one),
with the last line on stderr naming the position to resume from with ``--after``.

One loop, so the two streams cannot drift apart in how they stop, flush, meet a closed pipe
or a lost server (docs/cli.md, "ledger events")."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TypeVar

import psycopg

from ledger.cli.signals import SignalStop
from ledger.reading.cursor import Cursor, parse_cursor

EXIT_OK, EXIT_ERROR, EXIT_INTERRUPTED = 0, 2, 130

Record = TypeVar("Record")


def position(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise argparse.ArgumentTypeError(f"a position is a whole number 0 or more, not {text!r}")
    return int(text)


def position_or_cursor(text: str) -> int | Cursor:
    """``--after`` of ``ledger events``: a position, or a cursor of every chain
    (``ORGANIZATION:POSITION`` joined by commas: ``ledger.reading.cursor``)."""
    if text.isascii() and text.isdigit():
        return position(text)
    try:
        return parse_cursor(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"not a position (a whole number) nor a cursor: {str(error).removeprefix('after: ')}"
        ) from None


def count(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 18 or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a count is a whole number 1 or more, not {text!r}")
    return int(text)


class Stopped:
    def __init__(self) -> None:
        self.event = SignalStop()  # not a threading.Event: set from a signal handler
        self.signal: int | None = None

    def handler(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is None:
            self.signal = signum
        self.event.set()


@contextmanager
def stopping() -> Iterator[Stopped]:
    """SIGINT and SIGTERM set an event the reader checks between lines and while it
    waits, instead of raising in the middle of a write."""
    stopped = Stopped()
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = [signal.signal(signum, stopped.handler) for signum in signals]
    try:
        yield stopped
    finally:
        for signum, handler in zip(signals, previous, strict=True):
            signal.signal(signum, handler)
        stopped.event.close()


def write(
    batches: Iterable[Iterable[Record]],
    stopped: Stopped,
    *,
    after: int | object,
    limit: int | None,
    encode: Callable[[Record], tuple[int | object, bytes]],
    resume: str = "",
) -> int:
    """Writes every record of ``batches`` as a line (``encode`` gives where a reader
    resumes after it, a position or a cursor of every chain, printed with ``str``, and
    its line), flushing after
    each batch so a follower's reader sees it at once; answers the exit status. The caller
    closes ``batches``. ``resume``: options to repeat before ``--after`` in the hint
    (``--chain X``)."""
    out = sys.stdout.buffer
    last, written = after, 0
    try:
        for batch in batches:
            for record in batch:
                last, line = encode(record)
                out.write(line + b"\n")
                written += 1
                if stopped.event.is_set() or written == limit:
                    break
            out.flush()
            if stopped.event.is_set() or written == limit:
                break
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_OK
    except psycopg.Error as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else "lost"
        print(f"ledger: database error: {first}", file=sys.stderr)
        _resume_hint(last, resume)
        return EXIT_ERROR
    if stopped.signal is None:
        return EXIT_OK
    _resume_hint(last, resume)
    return EXIT_INTERRUPTED if stopped.signal == signal.SIGINT else EXIT_OK


def _resume_hint(last: int | object, resume: str = "") -> None:
    again = f"{resume} " if resume else ""
    kind = "position" if isinstance(last, int) else "cursor"
    print(
        f"ledger: stopped after {kind} {last}; resume with {again}--after {last}",
        file=sys.stderr,
    )


def _silence_stdout() -> None:
    """The reader went away (``ledger events | head``): drop what is left unflushed,
    so that the interpreter's own flush at exit does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
