"""The HTTP/1.1 connection, bounded against any client: uvicorn's httptools protocol with
a bound on the header section's size, deadlines for the header section, the body and the
answer's delivery, and a hard bound on connections (docs/service.md, "Limits, overload
and stopping").

uvicorn (with httptools) bounds none of these: a header line that never ends grows in
memory without limit (httptools joins the pieces of a header value by copying them, so
it costs quadratic time too), a connection that sends a byte now and then is never timed
out, and a new connection that sends nothing stays open for ever. The bounds are counted
here, before the parser sees the bytes, so the parser never holds more than the bound.

The request path pays for none of it when a request arrives whole, as the checkout
flow's do: a sum and a comparison per read, and no timer (the deadlines are armed only
when a read leaves a header section or a body incomplete). Answers the connection gives
itself (431, 408, 400) are JSON result objects, like every other answer of the service.

A request still running when the shutdown's grace runs out is cancelled by uvicorn, whose
``run_asgi`` logged that as an error with its traceback and answered a plain-text 500:
here it is logged in one line and answered 503 ``unavailable`` (``_cut_off``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

import orjson
from prometheus_client import Counter
from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

from ledger.http.answers import Unavailable, error_body
from ledger.http.gate import REQUEST_ID, new_request_id

log = logging.getLogger("ledger.http")
HEAD, BODY = 0, 1  # what the connection is reading: a request's header section, its body
CUT_OFF = (
    "the service stopped before it could answer (its shutdown's time ran out): the command "
    "may or may not have been recorded; send it again with the same key to learn which"
)


@dataclass
class Limits:
    """The bounds of every connection, and what they share: the set of open connections
    (uvicorn's, once the server exists) and the refusals' counter."""

    max_header_bytes: int
    header_timeout: float
    body_timeout: float
    max_connections: int
    refused: Counter | None = None
    open: set[Any] = field(default_factory=set)

    @property
    def hard_connections(self) -> int:
        """Connections beyond this are closed unread: memory stays bounded by it."""
        return self.max_connections * 2

    def over(self) -> bool:
        """More connections are open than are served (the gate answers 503, probes aside)."""
        return len(self.open) > self.max_connections

    def count(self, reason: str) -> None:
        if self.refused is not None:
            self.refused.labels(reason).inc()


def bounded_protocol(limits: Limits) -> type[BoundedProtocol]:
    """uvicorn's ``http`` setting: a protocol class bound to these limits."""
    return type("BoundedHttpProtocol", (BoundedProtocol,), {"limits": limits})


class BoundedProtocol(HttpToolsProtocol):
    limits: ClassVar[Limits]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits.open = self.connections
        self._reading = HEAD
        self._head_bytes = 0  # of the header section being read
        self._heads = 0  # header sections read
        self._deadline: asyncio.TimerHandle | None = None  # the header section's or the body's
        self._drain_deadline: asyncio.TimerHandle | None = None

    # --- the connection ------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.hard_connections:
            self.limits.count("connections")
            transport.abort()
            return
        # a new connection sends its first header section in time, or is closed
        self._deadline = self.loop.call_later(self.limits.header_timeout, self._head_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        if self._drain_deadline is not None:
            self._drain_deadline.cancel()
            self._drain_deadline = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading == HEAD:
            room = self.limits.max_header_bytes - self._head_bytes
            if len(data) > room:
                self._beyond_room(data, room)
                return
            self._head_bytes += len(data)
        super().data_received(data)
        if self._deadline is None and not self.transport.is_closing():
            if self._reading == BODY:
                self._deadline = self.loop.call_later(self.limits.body_timeout, self._body_late)
            elif self._head_bytes:
                self._deadline = self.loop.call_later(self.limits.header_timeout, self._head_late)

    def _beyond_room(self, data: bytes, room: int) -> None:
        """More bytes than the header section may still take: the parser gets only what
        fits; if that does not complete the section, the request is refused (431). The
        rest goes on to the body, or to the next request's section, counted afresh."""
        heads = self._heads
        super().data_received(data[:room])
        if self.transport.is_closing():
            return
        if self._heads == heads:
            self.limits.count("header_too_large")
            self._refuse(
                431,
                "too_large",
                f"the request's header section is over {self.limits.max_header_bytes} bytes "
                "(LEDGER_HTTP_MAX_HEADER_BYTES)",
            )
            return
        self.data_received(data[room:])

    # --- the parser's callbacks ----------------------------------------------------

    def on_headers_complete(self) -> None:
        self._reading = BODY
        self._heads += 1
        self._cancel()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._reading = HEAD
        self._head_bytes = 0
        self._cancel()
        super().on_message_complete()

    # --- deadlines -----------------------------------------------------------------

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_late(self) -> None:
        """The header section did not arrive in time. A connection that sent nothing is
        closed; one that sent part of a section is answered 408. If the connection is
        still answering an earlier request, it closes once that answer is written."""
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
            return
        if not self._head_bytes:
            self.transport.close()
            return
        self.limits.count("header_timeout")
        self._refuse(
            408,
            "timeout",
            f"the request's header section did not arrive within {self.limits.header_timeout:g} s "
            "(LEDGER_HTTP_HEADER_TIMEOUT)",
        )

    def _body_late(self) -> None:
        """The body did not arrive in time. The request is answered 408 in place of the
        application, which then finds its client gone (nothing was appended: a command is
        appended only once its whole body has arrived); if the application has answered
        already, the connection is closed."""
        self._deadline = None
        cycle = self.cycle
        if self.transport.is_closing():
            return
        if cycle is None or cycle.response_started:
            self.transport.close()
            return
        self.limits.count("body_timeout")
        self._refuse(
            408,
            "timeout",
            f"the request's body did not arrive within {self.limits.body_timeout:g} s "
            "(LEDGER_HTTP_BODY_TIMEOUT): nothing was recorded",
            request_id=cycle.scope.get("state", {}).get("request_id"),
        )
        cycle.response_started = cycle.response_complete = True
        cycle.disconnected = True
        cycle.message_event.set()

    def pause_writing(self) -> None:
        """The client does not read its answer: it must within the body's time limit."""
        super().pause_writing()
        if self._drain_deadline is None:
            self._drain_deadline = self.loop.call_later(self.limits.body_timeout, self._stuck)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._drain_deadline is not None:
            self._drain_deadline.cancel()
            self._drain_deadline = None

    def _stuck(self) -> None:
        self._drain_deadline = None
        self.limits.count("answer_unread")
        self.transport.abort()

    # --- a request cut off by the shutdown -------------------------------------------

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        """Every request (pipelined ones too) runs its application through ``_cut_off``:
        uvicorn's own handling of everything else in ``run_asgi`` is left as it is."""
        super()._start_asgi_task(cycle, partial(_cut_off, cycle, app))

    # --- the connection's own answers ----------------------------------------------

    def send_400_response(self, msg: str) -> None:
        """A request the parser cannot read: answered in JSON, and the connection closed."""
        self._refuse(400, "validation_error", "the request is not valid HTTP/1.1")

    def _refuse(self, status: int, code: str, message: str, request_id: str | None = None) -> None:
        body = orjson.dumps(error_body(code, message))
        rid = (request_id or new_request_id()).encode()
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            REQUEST_ID + b": " + rid + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]
        self.transport.write(b"".join(head))
        self.transport.close()


async def _cut_off(
    cycle: RequestResponseCycle,
    app: ASGI3Application,
    scope: Scope,
    receive: ASGIReceiveCallable,
    send: ASGISendCallable,
) -> None:
    """``app``, and the answer to its cancellation: uvicorn cancels what still runs once
    the shutdown's grace is over (``LEDGER_HTTP_BODY_TIMEOUT`` + 15 s, ledger/http/server.py),
    and its ``run_asgi`` logged that with a traceback and answered a plain-text 500. The
    request is logged in one line and answered as a database not had in time is: 503
    ``unavailable`` with ``Retry-After``, since its command, handed to a thread, may still
    commit after the answer (or not): sent again, it is answered ``duplicate`` or
    ``accepted``. If the answer had begun, the connection is closed. Nothing else is
    caught: every other error keeps uvicorn's handling."""
    try:
        await app(scope, receive, send)
    except asyncio.CancelledError:
        rid = scope.get("state", {}).get("request_id") or new_request_id()
        started = cycle.response_started
        log.error(
            "request %s (%s %s) cut off by the shutdown's time limit: %s; its command may "
            "have been recorded",
            rid,
            scope.get("method"),
            scope.get("path"),
            "its answer cut short" if started else "answered 503",
        )
        if started:
            cycle.transport.close()
            cycle.disconnected = True  # so uvicorn does not report the answer as unfinished
            return
        error = Unavailable(CUT_OFF)
        body = orjson.dumps(error_body(error.code, error.message))
        headers = [(k.lower().encode(), v.encode()) for k, v in error.headers().items()]
        await send(
            {
                "type": "http.response.start",
                "status": error.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", b"%d" % len(body)),
                    (REQUEST_ID, rid.encode()),
                    (b"connection", b"close"),
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})
