"""``ledger serve`` with one planted fault, for the 500 tests (test_http_errors.py).

A request whose ``X-Request-Id`` starts with ``FAULT`` raises inside its handling, before
its command is appended, the way a bug in the service's own code would. Nothing else
differs from ``python -m ledger serve``: the same process, the same real database, and a
monkeypatched pure function (``Command.stamped``) rather than a mocked database, so the
test sees what a client and an operator would see of an unexpected error.

Run as a script (``python tests/faulty_serve.py serve --port 0``): tests/serving.py
starts it like the real service.
"""

from __future__ import annotations

from ledger.cli import run
from ledger.commands.base import Command

FAULT = "fault-"
# what the planted error says: SQL and a name a client must never see in an answer
LEAK = "SELECT secret FROM ledger_events -- planted"


def plant() -> None:
    """Patches this process only: the tests import ``FAULT`` and ``LEAK`` from here
    without the fault reaching their own commands."""
    stamped = Command.stamped

    def faulty(self: Command, source: str, correlation_id: str | None) -> Command:
        if correlation_id is not None and correlation_id.startswith(FAULT):
            raise LookupError(f"{LEAK} for {correlation_id}")
        return stamped(self, source, correlation_id)

    Command.stamped = faulty  # type: ignore[assignment,method-assign]


if __name__ == "__main__":
    plant()
    run()
