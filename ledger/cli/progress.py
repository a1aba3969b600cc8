"""Progress of ``ledger append`` on a terminal: lines done, rate, rejected so far.

Drawn by tqdm on stderr, and only when stderr is a terminal: a pipeline or a log file gets
nothing extra. Not when stdout is a terminal too: the answers would tear the bar apart, and
they show the progress themselves. tqdm rather than our own: it measures the rate, redraws at
most ten times a second, fits the terminal's width and leaves stdout alone, in one small
dependency.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

_CHUNK = 1 << 20


class AppendProgress:
    def __init__(self, total: int | None, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._bar: tqdm[Any] | None = None
        self._rejected = 0
        if self.wanted(self._stream):
            self._bar = tqdm(
                total=total,
                unit=" lines",
                file=self._stream,
                mininterval=0.1,
                dynamic_ncols=True,
                postfix="0 rejected",
            )

    @staticmethod
    def wanted(stream: TextIO) -> bool:
        return stream.isatty() and not sys.stdout.isatty()

    @staticmethod
    def total_of(path: str) -> int | None:
        """Lines in a regular file (one quick pass), for a percentage; None for stdin or a pipe."""
        file = Path(path)
        if path == "-" or not file.is_file():
            return None
        count = 0
        last = b"\n"
        with file.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                count += chunk.count(b"\n")
                last = chunk[-1:]
        return count + (last != b"\n")

    def advance(self, line: int, rejected: bool) -> None:
        """Line ``line`` answered (lines count blank ones too, as the answers' numbers do)."""
        if self._bar is None:
            return
        if rejected:
            self._rejected += 1
            self._bar.set_postfix_str(f"{self._rejected} rejected", refresh=False)
        self._bar.update(line - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
