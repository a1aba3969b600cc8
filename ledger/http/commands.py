"""``POST /v1/commands`` and ``POST /v1/commands/batch``: the checkout flow's commands,
parsed and answered exactly as ``ledger append`` parses and answers a line."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Query, Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ledger import api
from ledger.commands.base import Command
from ledger.commands.parsing import parse_command
from ledger.commands.results import Result
from ledger.domain.errors import Rejected, ValidationFailed
from ledger.http import openapi
from ledger.http.answers import ServiceError, error_response, json_response, result_response
from ledger.http.auth import check_token
from ledger.http.backend import Backend
from ledger.http.bodies import batch_lines, read_body, read_bounded
from ledger.http.gate import scope_request_id

router = APIRouter()


def with_key(body: bytes, header: str | None) -> bytes:
    """The body carrying the ``Idempotency-Key`` header as its ``idempotency_key``, so
    the command is parsed (and its rules checked) with it; a body that names another
    key is refused rather than one of the two chosen."""
    if header is None:
        return body
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body  # parse_command names the problem
    if not isinstance(parsed, dict):
        return body
    if "idempotency_key" in parsed:
        if parsed["idempotency_key"] != header:
            raise ValidationFailed(
                "idempotency_key: differs from the Idempotency-Key header (send one, or the same)",
                "idempotency_key",
            )
        return body
    inside = body.lstrip()[1:]
    separator = b"" if inside.lstrip().startswith(b"}") else b","
    return b'{"idempotency_key":' + orjson.dumps(header) + separator + inside


@router.post(
    "/v1/commands",
    summary="Append one command",
    openapi_extra=openapi.command_body(),
    responses=openapi.COMMAND_RESPONSES,
    status_code=201,
)
async def post_command(
    request: Request,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    """The route as FastAPI declares it (for the OpenAPI document); the service answers
    it through ``CommandEndpoint``, which runs the same ``answer_command``."""
    backend: Backend = request.app.state.backend
    body = await read_body(request, backend.config.max_command_bytes, "the command")
    return await answer_command(backend, body, idempotency_key, scope_request_id(request.scope))


async def answer_command(
    backend: Backend, body: bytes, idempotency_key: str | None, request_id: str
) -> Response:
    """One command's body (and ``Idempotency-Key`` header) -> its result as an answer.

    The command is stamped as one from ``http`` answering ``request_id`` (``X-Request-Id``
    or the one made for it): every event it records carries both."""
    try:
        command = parse_command(with_key(body, idempotency_key)).stamped("http", request_id)
    except Rejected as error:
        result = Result("rejected", error=error)
        backend.metrics.count(_declared_type(body), result)
        return result_response(result)
    return result_response(await backend.submit(command))


class CommandEndpoint:
    """``POST /v1/commands`` as a plain ASGI handler, in front of FastAPI.

    It is the path the checkout flow and the player take, one command a request:
    FastAPI's middleware, routing and dependency solving cost about as much CPU per
    request as parsing and deciding the command (docs/performance.md, "The HTTP
    service"). The same checks run here, in the same order: the bearer token, the body's
    bound, the ``Idempotency-Key`` header, then ``answer_command``.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        backend = self.backend
        headers = _headers(scope, (b"authorization", b"content-length", b"idempotency-key"))
        try:
            check_token(backend.config.tokens, headers.get(b"authorization", ""))
            body = await read_bounded(
                headers.get(b"content-length"),
                _chunks(receive),
                backend.config.max_command_bytes,
                "the command",
            )
            answer = await answer_command(
                backend, body, headers.get(b"idempotency-key"), scope_request_id(scope)
            )
        except ServiceError as error:
            backend.metrics.refuse(error)
            answer = error_response(error)
        except ClientDisconnect:
            return  # nobody to answer, nothing was appended
        await answer(scope, receive, send)


def _headers(scope: Scope, names: tuple[bytes, ...]) -> dict[bytes, str]:
    """The first value of each header named (lower case, as ASGI gives them)."""
    found: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        if name in names and name not in found:
            found[name] = value.decode("latin-1")
    return found


async def _chunks(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


@router.post(
    "/v1/commands/batch",
    summary="Append a batch of commands (JSON array or JSON Lines)",
    openapi_extra=openapi.batch_body(),
    responses=openapi.BATCH_RESPONSES,
)
async def post_batch(
    request: Request,
    atomic: Annotated[bool, Query(description="all or nothing, in one transaction")] = False,
) -> Response:
    backend: Backend = request.app.state.backend
    body = await read_body(request, backend.config.max_batch_bytes, "the batch")
    lines = batch_lines(body, request.headers.get("content-type", ""), backend.config)
    numbered = [
        (number, item)
        for number, item in enumerate(_parsed(lines, scope_request_id(request.scope)), start=1)
        if item is not None
    ]
    answers = await backend.submit_batch(numbered, atomic=atomic)
    return json_response([result.as_dict(number) for number, result in answers])


def _parsed(lines: list[bytes], request_id: str) -> list[Command | Rejected | None]:
    """Each line parsed as ``ledger append`` parses it (a byte order mark before the first
    ignored), from ``http`` answering ``<request id>:<line>``; ``None`` for a blank
    line, which has no answer but keeps its number."""
    return [
        next(api.parse_lines([text], source="http", name=request_id, first=number))
        if text.strip()
        else None
        for number, text in enumerate(api.without_bom(lines), start=1)
    ]


def _declared_type(body: bytes) -> str:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "unknown"
    value = parsed.get("type") if isinstance(parsed, dict) else None
    return value if isinstance(value, str) else "unknown"
