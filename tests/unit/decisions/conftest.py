"""Decisions in memory: the ledger on the library's POPO persistence (``ledger.service.memory``).

The same application, handlers and aggregates as in production, without PostgreSQL: each
test gets a fresh ledger in microseconds. The rows are the projections folded in memory
(``projections.fold``), as the in-memory recorder applies each append's row changes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ledger import api
from ledger.service import Ledger
from ledger.service.memory import MemoryRecorder, memory_ledger
from tests.support import catalogue


@pytest.fixture
def app() -> Ledger:
    ledger = memory_ledger()
    assert all(r.status == "accepted" for r in run(ledger, *catalogue()))
    return ledger


def run(ledger: Ledger, *commands: dict[str, Any], atomic: bool = False) -> list[Any]:
    lines = [json.dumps(c) for c in commands]
    return [result for _, result in api.append_lines(ledger, lines, atomic=atomic)]


def answers(ledger: Ledger, *commands: dict[str, Any], atomic: bool = False) -> list[str]:
    """Each command's answer: ``accepted``, ``duplicate``, ``rolled_back``, or
    ``code:field`` for a rejection."""
    found = []
    for result in run(ledger, *commands, atomic=atomic):
        error = result.error
        found.append(result.status if error is None else f"{error.code}:{error.field}")
    return found


def rows(ledger: Ledger, table: str) -> list[dict[str, Any]]:
    recorder = ledger.recorder
    assert isinstance(recorder, MemoryRecorder)
    return list(recorder.rows.rows[table].values())


def topics(ledger: Ledger) -> list[str]:
    """The topics of the whole log, in order."""
    return [n.topic for n in ledger.recorder.select_notifications(start=1, limit=10_000)]
