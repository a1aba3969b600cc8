"""``create_app``: the service as an ASGI application (FastAPI, with the one-command
route in front of it), over an opened ``Backend``. docs/service.md describes every
endpoint."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ledger.http import auth, commands, health, inputs, openapi, reads
from ledger.http.answers import ServiceError, error_body, error_response, json_response
from ledger.http.backend import Backend
from ledger.http.gate import Gate
from ledger.http.redaction import described
from ledger.http.stripe_webhook import stripe_router
from ledger.http.unexpected import MESSAGE as UNEXPECTED
from ledger.http.unexpected import CatchUnexpected

log = logging.getLogger("ledger.http")


def create_app(backend: Backend, crowded: Callable[[], bool] | None = None) -> ASGIApp:
    """The gate (request ids, the bounds on requests in flight and, through ``crowded``,
    on connections) around everything; behind it ``POST /v1/commands`` goes straight to
    its own handler and the rest to FastAPI."""
    app = FastAPI(
        title="ledger",
        version="1",
        description="The purchase and access ledger over HTTP (docs/service.md).",
    )
    app.state.backend = backend
    strict = Depends(inputs.strict_query)
    app.include_router(commands.router, dependencies=[Depends(auth.require("commands")), strict])
    app.include_router(reads.router, dependencies=[strict])  # each read names its scope
    app.include_router(health.router)
    # the Stripe webhook: authenticated by its signature only, no bearer token (docs/stripe.md)
    app.include_router(
        stripe_router(
            backend.submit,
            backend.config.stripe_secrets,
            backend.config.stripe_tolerance_seconds,
            backend.metrics.stripe_event,
        )
    )
    _handle_errors(app)
    openapi.install(app)
    return Gate(
        Front(app, CatchUnexpected(commands.CommandEndpoint(backend))),
        metrics=backend.metrics,
        limit=backend.config.max_in_flight,
        retry_after=backend.config.retry_after_seconds,
        **({"crowded": crowded} if crowded is not None else {}),
    )


class Front:
    """Sends ``POST /v1/commands`` to its plain ASGI handler (``CommandEndpoint``: the
    hot path, one command a request) and every other request to FastAPI."""

    def __init__(self, app: FastAPI, command: ASGIApp) -> None:
        self.app = app
        self.command = command

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = scope["type"] == "http" and scope["path"] == "/v1/commands"
        if hot and scope["method"] == "POST":
            await self.command(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def _handle_errors(app: FastAPI) -> None:
    """Every error answer is a result object; none carries a traceback or SQL."""
    app.add_middleware(CatchUnexpected)  # inside the gate (unexpected.py)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, error: ServiceError) -> Response:
        request.app.state.backend.metrics.refuse(error)
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> Response:
        first = error.errors()[0]
        location = [str(part) for part in first.get("loc", ())]
        field = location[-1] if location else None
        where = ".".join(location[1:]) if len(location) > 1 else (field or "request")
        return json_response(
            error_body("validation_error", f"{where}: {first.get('msg', 'invalid')}", field), 422
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        code = "not_found" if error.status_code == 404 else "http_error"
        return json_response(
            error_body(code, str(error.detail)), error.status_code, getattr(error, "headers", None)
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> Response:
        log.error("unexpected error\n%s", described(error))
        return error_response(ServiceError(UNEXPECTED))
