"""Runs the service under uvicorn until SIGTERM or SIGINT.

On either signal uvicorn stops accepting connections, lets the requests in flight
finish (their appends commit and are answered), closes idle connections, and returns;
then the ledger is closed and ``serve`` returns 0 for SIGTERM (how a supervisor stops a
service) and 130 for SIGINT. uvicorn would raise the signal again once done, to die of
it; this server does not, so the exit status is ours.
"""

from __future__ import annotations

import gc
import logging
import signal
import sys
from collections.abc import Generator
from contextlib import contextmanager
from types import FrameType

import uvicorn

from ledger.config import Settings
from ledger.http.app import create_app
from ledger.http.backend import Backend
from ledger.http.config import HttpConfig
from ledger.http.metrics import Metrics

log = logging.getLogger("ledger.http")
GRACE_SECONDS = 30  # the longest a request in flight is waited for at shutdown
EXIT_OK, EXIT_INTERRUPTED = 0, 130


class _Server(uvicorn.Server):
    signum: int | None = None

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {s: signal.signal(s, self._stop) for s in handled}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        self.handle_exit(signum, frame)

    async def startup(self, sockets: list[object] | None = None) -> None:  # type: ignore[override]
        await super().startup(sockets)  # type: ignore[arg-type]
        for server in self.servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                # one line a supervisor (or a test, with --port 0) reads to find the port
                print(f"ledger: serving on http://{host}:{port}", file=sys.stderr, flush=True)


GC_THRESHOLDS = (50_000, 50, 100)


def _spread_garbage_collection() -> None:
    """Fewer, cheaper pauses of Python's cycle collector.

    Under load the service allocates fast, and with the default thresholds (700, 10, 10)
    a full collection ran every few seconds over everything alive: the modules, the
    command models and the aggregate cache of tens of thousands of aggregates. Each
    stopped every request for tens of milliseconds, which was the whole p99 at 32 clients
    (80 ms against 40 ms; docs/performance.md, "The HTTP service"). What exists once the
    service is open is moved out of the collector's sight (``gc.freeze``), and young
    objects are collected every 50,000 allocations instead of 700; cycles are still
    collected, less often."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def serve(settings: Settings, config: HttpConfig, host: str, port: int) -> int:
    """Opens the ledger (a ``ConfigurationError`` if the database is not ready for it),
    serves until a signal, and returns the exit status."""
    backend = Backend.open(settings, config, Metrics())
    _spread_garbage_collection()
    if not config.tokens:
        log.warning("LEDGER_API_TOKENS is empty: every /v1 request but the webhook answers 401")
    try:
        server = _Server(
            uvicorn.Config(
                create_app(backend),
                host=host,
                port=port,
                log_level="warning",
                access_log=False,
                timeout_graceful_shutdown=GRACE_SECONDS,
                # connections beyond this are refused by uvicorn itself (503): a bound on
                # memory for connections even before the service's own bound applies
                limit_concurrency=config.max_in_flight * 4 + 64,
                server_header=False,
                # the service reads no client address, so X-Forwarded-* is not parsed
                # (that middleware ran on every request)
                proxy_headers=False,
            )
        )
        server.run()
    finally:
        backend.close()
    return EXIT_INTERRUPTED if server.signum == signal.SIGINT else EXIT_OK
