"""``ledger serve`` with one planted fault, for the 500 tests (test_http_errors.py).

A request whose ``X-Request-Id`` starts with ``FAULT`` raises inside its handling, before
its command is appended, the way a bug in the service's own code would. Nothing else
differs from ``python -m ledger serve``: the same process, the same real database, and a
monkeypatched pure function (``provenance.check_correlation_id``, which every command's
provenance runs on its request id) rather than a mocked database, so the
test sees what a client and an operator would see of an unexpected error.

Run as a script (``python tests/faulty_serve.py serve --port 0``): tests/serving.py
starts it like the real service.
"""

from __future__ import annotations

from ledger.cli import run
from ledger.domain import provenance

FAULT = "fault-"
# what the planted error says: SQL and a name a client must never see in an answer
LEAK = "SELECT secret FROM ledger_events -- planted"


def plant() -> None:
    """Patches this process only: the tests import ``FAULT`` and ``LEAK`` from here
    without the fault reaching their own commands."""
    check = provenance.check_correlation_id

    def faulty(value: str | None) -> None:
        if value is not None and value.startswith(FAULT):
            raise LookupError(f"{LEAK} for {value}")
        check(value)

    provenance.check_correlation_id = faulty


if __name__ == "__main__":
    plant()
    run()
