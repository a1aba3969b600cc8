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
from ledger.http.protocol import Limits, bounded_protocol

log = logging.getLogger("ledger.http")
# at shutdown, a request in flight is waited for as long as its body may still take to
# arrive (LEDGER_HTTP_BODY_TIMEOUT, then it is answered 408), and this much more for its
# append to commit (LEDGER_LOCK_TIMEOUT bounds the wait for the log's lock); what still
# runs then is cancelled, logged in one line and answered 503 (protocol.py, ``_cut_off``)
GRACE_MARGIN_SECONDS = 15
EXIT_OK, EXIT_INTERRUPTED = 0, 130
# uvicorn's own line when the grace runs out, its format exactly (uvicorn/server.py)
UVICORN_CANCEL = "Cancel %s running task(s), timeout graceful shutdown exceeded"


class _CancelledSaidOnce(logging.Filter):
    """Drops uvicorn's ``Cancel N running task(s), timeout graceful shutdown exceeded``:
    each of those tasks is a request run through ``_cut_off`` (ledger/http/protocol.py),
    which logs its own line naming the request and its answer (503), so an operator read
    each cut-off twice, the second time without which request. Every other record of
    uvicorn's logger passes (docs/scaling.md, "A request cut off by the shutdown's grace")."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != UVICORN_CANCEL


CANCELLED_SAID_ONCE = _CancelledSaidOnce()


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
    limits = Limits(
        max_header_bytes=config.max_header_bytes,
        header_timeout=config.header_timeout_seconds,
        body_timeout=config.body_timeout_seconds,
        max_connections=config.connections,
        refused=backend.metrics.refused,
    )
    try:
        server = _Server(
            uvicorn.Config(
                create_app(backend, crowded=limits.over),
                host=host,
                port=port,
                # the connection with its bounds: header size and time, body time, idle
                # connections, and connections (ledger/http/protocol.py); uvicorn's own
                # bound on connections answered in plain text, the probes included, so
                # the gate applies it instead
                http=bounded_protocol(limits),
                limit_concurrency=None,
                timeout_keep_alive=config.keep_alive_seconds,
                log_level="warning",
                access_log=False,
                timeout_graceful_shutdown=config.body_timeout_seconds + GRACE_MARGIN_SECONDS,
                server_header=False,
                # the service reads no client address, so X-Forwarded-* is not parsed
                # (that middleware ran on every request)
                proxy_headers=False,
            )
        )
        # after uvicorn.Config, which configures uvicorn's loggers
        logging.getLogger("uvicorn.error").addFilter(CANCELLED_SAID_ONCE)
        server.run()
    finally:
        backend.close()
    return EXIT_INTERRUPTED if server.signum == signal.SIGINT else EXIT_OK
