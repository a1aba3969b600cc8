"""Progress of long work: a bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, label: str, stream: TextIO | None = None, every: float = 2.0):
        self.total = max(total, 1)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.every = every if not self.tty else 0.1
        self.done = 0
        self.started = time.monotonic()
        self._last = 0.0

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self._show(now)

    def finish(self) -> None:
        self._show(time.monotonic(), final=True)

    def _show(self, now: float, final: bool = False) -> None:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 and not final else 0.0
        if self.tty:
            width = 30
            filled = int(width * min(self.done / self.total, 1.0))
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(
                f"\r{self.label} [{bar}] {self.done}/{self.total} events"
                f" {rate:,.0f} ev/s  {left:,.0f}s left "
            )
            if final:
                self.stream.write("\n")
        else:
            self.stream.write(
                f"{self.label}: {self.done}/{self.total} events, {rate:,.0f} events/s, "
                f"{elapsed:,.1f}s elapsed, ~{left:,.0f}s left\n"
            )
        self.stream.flush()
