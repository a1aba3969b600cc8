"""A group commit's execution stood in by a recording function, for the committer's own
tests (``tests/unit/test_group_gather.py``, ``test_group_wake.py``): the database's side is
tested with the store and the ledger."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from ledger.commands.results import Result


def wait_for(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.001)


class Gated:
    """A group's execution: records it; the first one waits for ``gate``. The k-th group's
    n-th item is answered at position 100 k + n, so an answer tells its group."""

    def __init__(self) -> None:
        self.groups: list[list[str]] = []
        self.gate = threading.Event()
        self.started = threading.Event()

    def __call__(self, items: Sequence[str]) -> list[Result]:
        if not self.groups:
            self.started.set()
            assert self.gate.wait(30)
        self.groups.append(list(items))
        return [Result("accepted", position=len(self.groups) * 100 + n) for n in range(len(items))]
