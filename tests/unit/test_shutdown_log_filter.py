"""``ledger serve`` drops uvicorn's "Cancel N running task(s)" line, and only it: each such
task is a request that ``_cut_off`` logs in a line of its own (ledger/http/server.py)."""

from __future__ import annotations

import logging

import pytest

from ledger.http.server import CANCELLED_SAID_ONCE, UVICORN_CANCEL


def test_only_uvicorns_cancel_line_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    uvicorn = logging.getLogger("uvicorn.error")
    uvicorn.addFilter(CANCELLED_SAID_ONCE)
    try:
        with caplog.at_level(logging.INFO, logger="uvicorn.error"):
            uvicorn.error(UVICORN_CANCEL, 2)
            uvicorn.error("Exception in ASGI application")
            uvicorn.warning("Invalid HTTP request received.")
            uvicorn.error("Cancel the order %s", 2)
    finally:
        uvicorn.removeFilter(CANCELLED_SAID_ONCE)
    assert [r.getMessage() for r in caplog.records] == [
        "Exception in ASGI application",
        "Invalid HTTP request received.",
        "Cancel the order 2",
    ]
