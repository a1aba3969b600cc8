"""The outermost layer of the service: a request id for every request, and the bounds
on requests in flight and on connections.

A request beyond ``limit``, or on a connection beyond the connections served
(``crowded``), is answered 503 with ``Retry-After`` before its body is read, so load
beyond what the ledger can take costs a short answer, never a queue that grows without
bound; a crowded connection is closed after its answer, to free its place. The probes
and the metrics are outside both bounds: an overloaded service must still say that it
is alive and how loaded it is.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.http.answers import Overloaded, error_response
from ledger.http.metrics import Metrics

UNBOUNDED_PATHS = frozenset(("/healthz", "/readyz", "/metrics"))
REQUEST_ID = b"x-request-id"
MAX_REQUEST_ID = 200


# a new id is this process's random prefix and a count: unique across processes and
# restarts like a random UUID, without reading the kernel's random source per request
# (``uuid4`` was a twelfth of the service's CPU under load)
_PREFIX = secrets.token_hex(8)
_COUNT = itertools.count(1)


def _new_prefix() -> None:
    global _PREFIX
    _PREFIX = secrets.token_hex(8)


os.register_at_fork(after_in_child=_new_prefix)  # a forked worker makes ids of its own


def new_request_id() -> str:
    return f"{_PREFIX}{next(_COUNT):016x}"


def request_id(scope: Scope) -> str:
    """The caller's ``X-Request-Id`` when it is short printable ASCII, else a new one."""
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID:
            if 0 < len(value) <= MAX_REQUEST_ID and all(0x21 <= b <= 0x7E for b in value):
                return str(value.decode("ascii"))
            break
    return new_request_id()


def _never() -> bool:
    return False


class Gate:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        limit: int,
        retry_after: int,
        crowded: Callable[[], bool] = _never,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.limit = limit
        self.retry_after = retry_after
        self.crowded = crowded
        self.in_flight = 0  # one event loop: no lock needed
        # the gauge reads the count when scraped: not a locked increment twice a request
        metrics.in_flight.set_function(lambda: self.in_flight)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope)
        scope.setdefault("state", {})["request_id"] = rid
        tag = (REQUEST_ID, rid.encode())

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), tag]}
            await send(message)

        if scope["path"] in UNBOUNDED_PATHS:
            await self.app(scope, receive, tagged)
            return
        if self.in_flight >= self.limit or self.crowded():
            self.metrics.refused.labels("overloaded").inc()
            if self.in_flight >= self.limit:
                refusal = Overloaded(
                    f"{self.in_flight} requests are in flight, the limit: try again shortly",
                    self.retry_after,
                )
                answer = error_response(refusal)
            else:
                refusal = Overloaded(
                    "more connections are open than the service serves "
                    "(LEDGER_HTTP_MAX_CONNECTIONS): try again shortly",
                    self.retry_after,
                )
                answer = error_response(refusal)
                answer.headers["Connection"] = "close"
            await answer(scope, receive, tagged)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, tagged)
        finally:
            self.in_flight -= 1


def scope_request_id(scope: Scope) -> str:
    state = scope.get("state") or {}
    return str(state.get("request_id") or new_request_id())
