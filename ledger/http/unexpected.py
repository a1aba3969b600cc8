"""The answer to an unexpected error, given inside the request-id gate.

A handler for ``Exception`` (``app.exception_handler``) runs in Starlette's outermost
middleware, which answers and then raises the error again: the answer then lacks the
request's ``X-Request-Id`` (it bypasses the gate), and uvicorn, seeing the error, closes
the connection, so a client's next request on that keep-alive connection fails with a
reset. Here the error is logged and answered like every other error, and the request
ends normally: the connection stays usable. An error after the answer began cannot be
answered any more; it is left to propagate, and uvicorn closes that connection.
"""

from __future__ import annotations

import logging

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.http.answers import ServiceError, error_response
from ledger.http.gate import scope_request_id
from ledger.http.redaction import described

log = logging.getLogger("ledger.http")
MESSAGE = "an unexpected error stopped the request; it was logged"


class CatchUnexpected:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except ClientDisconnect:
            return
        except Exception as error:
            if started:
                raise
            log.error(
                "unexpected error (request %s)\n%s", scope_request_id(scope), described(error)
            )
            await error_response(ServiceError(MESSAGE))(scope, receive, send)
