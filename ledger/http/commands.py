"""``POST /v1/commands`` and ``POST /v1/commands/batch``: the checkout flow's commands,
parsed and answered exactly as ``ledger append`` parses and answers a line."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Query, Request
from starlette.responses import Response

from ledger import api
from ledger.commands import Command, parse_command
from ledger.domain.errors import Rejected, ValidationFailed
from ledger.http import openapi
from ledger.http.answers import json_response, result_response
from ledger.http.backend import Backend
from ledger.http.bodies import batch_lines, read_body
from ledger.http.gate import scope_request_id
from ledger.results import Result

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


def stamped(command: Command, request: Request) -> Command:
    """The command as one from HTTP, answering the request's id (``X-Request-Id`` or
    the one made for it): every event it records carries both."""
    return command.stamped("http", scope_request_id(request.scope))


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
    backend: Backend = request.app.state.backend
    body = await read_body(request, backend.config.max_command_bytes, "the command")
    try:
        command = stamped(parse_command(with_key(body, idempotency_key)), request)
    except Rejected as error:
        result = Result("rejected", error=error)
        backend.metrics.count(_declared_type(body), result)
        return result_response(result)
    return result_response(await backend.submit(command))


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
