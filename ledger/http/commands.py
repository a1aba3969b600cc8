"""``POST /v1/commands`` and ``POST /v1/commands/batch``: the checkout flow's commands,
parsed and answered exactly as ``ledger append`` parses and answers a line."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Query, Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from ledger import api
from ledger.commands.base import Command
from ledger.commands.catalogue import EraseUser
from ledger.commands.parsing import parse_command
from ledger.commands.results import Result
from ledger.domain.errors import Rejected, ValidationFailed
from ledger.http import openapi
from ledger.http.answers import (
    BadRequest,
    ServiceError,
    error_response,
    json_response,
    result_response,
)
from ledger.http.auth import Token, check_scope, check_token
from ledger.http.backend import Backend
from ledger.http.bodies import batch_lines, read_body, read_bounded
from ledger.http.config import HttpConfig
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
    key = request.headers.getlist("idempotency-key")
    return await answer_command(
        backend,
        request.state.token,
        body,
        _utf8_key([value.encode("latin-1") for value in key]),
        scope_request_id(request.scope),
    )


async def answer_command(
    backend: Backend, token: Token, body: bytes, idempotency_key: str | None, request_id: str
) -> Response:
    """One command's body (and ``Idempotency-Key`` header) -> its result as an answer.

    The command is stamped as one from ``http`` answering ``request_id`` (``X-Request-Id``
    or the one made for it): every event it records carries both. A token bound to an
    organization sends only commands about it (``ledger.http.tenancy``)."""
    try:
        command = parse_command(with_key(body, idempotency_key), "http", request_id)
    except Rejected as error:
        result = Result("rejected", error=error)
        backend.metrics.count(_declared_type(body), result)
        return result_response(result)
    if isinstance(command, EraseUser):
        check_scope(token, "users")  # a person's erasure (docs/privacy.md)
    if token.organization is not None:
        await backend.check_tenancy(token.organization, [(None, command)])
    return result_response(await backend.submit(command))


def _utf8_key(values: list[bytes]) -> str | None:
    """The ``Idempotency-Key`` header as UTF-8 text (as the body's key is); given twice,
    the first one; its rules are the body's (``parse_command``: no control or format
    character...)."""
    if not values:
        return None
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(
            "Idempotency-Key: the header is not UTF-8 text", "idempotency_key"
        ) from None


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
        headers, keys = _headers(scope)
        try:
            token = check_token(backend.config.tokens, headers.get(b"authorization", ""))
            check_scope(token, "commands")
            if scope["query_string"]:
                name = scope["query_string"].split(b"&", 1)[0].split(b"=", 1)[0]
                field = name.decode("latin-1")[:100]
                raise BadRequest(f"{field}: POST /v1/commands takes no query parameters", field)
            key = _utf8_key(keys) if keys else None
            body = await _read(receive, headers.get(b"content-length"), backend.config)
            answer = await answer_command(backend, token, body, key, scope_request_id(scope))
        except ServiceError as error:
            backend.metrics.refuse(error)
            answer = error_response(error)
        except ClientDisconnect:
            return  # nobody to answer, nothing was appended
        await answer(scope, receive, send)


_READ = (b"authorization", b"content-length")


def _headers(scope: Scope) -> tuple[dict[bytes, str], list[bytes]]:
    """The first value of the headers the endpoint reads (lower case, as ASGI gives
    them), and the values of ``Idempotency-Key``, as bytes (it is UTF-8 text)."""
    found: dict[bytes, str] = {}
    keys: list[bytes] = []
    for name, value in scope["headers"]:
        if name in _READ and name not in found:
            found[name] = value.decode("latin-1")
        elif name == b"idempotency-key":
            keys.append(value)
    return found, keys


async def _read(receive: Receive, declared: str | None, config: HttpConfig) -> bytes:
    """The body, within ``LEDGER_HTTP_MAX_COMMAND_BYTES`` (``read_bounded``'s checks,
    in its order). A body that arrives in one message, as a player's heartbeat does, is
    taken as it is: ``read_bounded``'s iteration over the messages costs an asynchronous
    generator and a join per request."""
    limit = config.max_command_bytes
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return await read_bounded(declared, _chunks(receive), limit, "the command")
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):
        body: bytes = message.get("body", b"")
        if len(body) <= limit:
            return body
    return await read_bounded(None, _chunks(receive, message), limit, "the command")


async def _chunks(receive: Receive, first: Message | None = None) -> AsyncIterator[bytes]:
    """The body's chunks (after the ``first`` message, if one was received already)."""
    while True:
        message = first if first is not None else await receive()
        first = None
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
    token: Token = request.state.token
    if any(isinstance(item, EraseUser) for _, item in numbered):
        check_scope(token, "users")  # a person's erasure (docs/privacy.md)
    if token.organization is not None:
        commands = [(n, item) for n, item in numbered if isinstance(item, Command)]
        await backend.check_tenancy(token.organization, commands)
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
