"""What the operator commands' tests share (``test_operator_safety.py``,
``test_operator_answers_in_one_line.py``): a history of purchases, and the one line a
command's stderr holds besides its progress lines."""

from __future__ import annotations

import subprocess

from ledger.service import Ledger
from tests.support import load_history


def load(app: Ledger, purchases: int = 40) -> None:
    load_history(app, purchases)


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one line stderr holds besides progress lines."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = [x for x in done.stderr.strip().splitlines() if not x.startswith("rebuild: ")]
    assert len(lines) == 1, done.stderr
    return lines[0]
