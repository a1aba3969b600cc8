"""The input of ``ledger append --batch N``, cut into the groups that share a transaction.

A group holds up to N non-blank lines and about ``LEDGER_GROUP_MAX_BYTES`` bytes, and it
also ends where the input has no further complete line ready to read: a producer that
writes one line and waits for its answer (a checkout flow on a pipe) gets it at once,
instead of waiting for N - 1 lines that it will only send after the answer. A file, or a
pipe filled faster than the ledger commits, gives full groups.

Input is read with ``os.read`` on the descriptor, so readiness (``select``) speaks of
bytes that this process has not buffered yet; an input without a descriptor (tests,
an in-memory stream) is always ready.
"""

from __future__ import annotations

import io
import os
import select
from collections import deque
from collections.abc import Callable, Iterator
from typing import BinaryIO

_READ = 1 << 16


def _reader(source: BinaryIO) -> tuple[Callable[[], bytes], Callable[[], bool]]:
    """How to read what is there (blocking only when nothing is) and whether more is there."""
    try:
        fd = source.fileno()
    except (OSError, io.UnsupportedOperation):
        read1 = getattr(source, "read1", source.read)
        return lambda: bytes(read1(_READ)), lambda: True

    def ready() -> bool:
        readable, _, _ = select.select([fd], [], [], 0)
        return bool(readable)

    return lambda: os.read(fd, _READ), ready


def ready_groups(source: BinaryIO, size: int, max_bytes: int) -> Iterator[list[bytes]]:
    """Consecutive lines (each with its newline; blank ones included, as they count for
    line numbers) in groups of at most ``size`` non-blank lines, cut after ``max_bytes``
    bytes, and cut short rather than wait for input."""
    read, ready = _reader(source)
    lines: deque[bytes] = deque()
    partial = bytearray()
    ended = False
    while True:
        group: list[bytes] = []
        count = 0
        held = 0
        while count < size and held < max_bytes:
            if not lines:
                if ended or (group and not ready()):
                    break
                chunk = read()
                if not chunk:
                    ended = True
                    if partial:
                        lines.append(bytes(partial))
                        partial.clear()
                    continue
                partial += chunk
                if b"\n" in chunk:
                    pieces = partial.split(b"\n")
                    partial = pieces.pop()
                    lines.extend(bytes(piece) + b"\n" for piece in pieces)
                continue
            line = lines.popleft()
            group.append(line)
            held += len(line)
            if line.strip():
                count += 1
        if not group:
            return
        yield group
