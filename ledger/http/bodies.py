"""Request bodies, read within their bounds, and a batch split into its commands' texts.

A body is read chunk by chunk and refused (413) as soon as it passes its bound, or at
once when its ``Content-Length`` says it will: memory per request never exceeds the
bound. A batch becomes the texts of its commands, each parsed later by
``ledger.parse_command`` exactly as a line of ``ledger append`` is: a JSON array is cut
into its elements' original texts (so a key given twice in an element is still seen),
an NDJSON body into its lines.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from starlette.requests import Request

from ledger.http.answers import BadRequest, TooLarge
from ledger.http.config import HttpConfig

NDJSON = ("application/x-ndjson", "application/jsonl", "application/json-lines")
_WHITESPACE = " \t\n\r"


async def read_body(request: Request, limit: int, what: str) -> bytes:
    return await read_bounded(request.headers.get("content-length"), request.stream(), limit, what)


async def read_bounded(
    declared: str | None, chunks: AsyncIterator[bytes], limit: int, what: str
) -> bytes:
    """The body from its chunks, refused (``TooLarge``) at once when its declared length
    passes ``limit``, else as soon as what arrived does."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"{what} is {int(declared)} bytes; the limit is {limit}")
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"{what} is more than {limit} bytes, the limit")
        parts.append(chunk)
    return b"".join(parts)


def batch_lines(body: bytes, content_type: str, config: HttpConfig) -> list[bytes]:
    """The batch's command texts, numbered from 1 in the answers (blank NDJSON lines
    count, as in ``ledger append``); 413 beyond the batch's count or a command's size."""
    media = content_type.split(";", 1)[0].strip().lower()
    lines = body.split(b"\n") if media in NDJSON else _elements(body)
    commands = sum(1 for line in lines if line.strip())
    if commands > config.max_batch_commands:
        raise TooLarge(
            f"the batch holds {commands} commands; the limit is {config.max_batch_commands}"
        )
    for number, line in enumerate(lines, start=1):
        if len(line) > config.max_command_bytes:
            raise TooLarge(
                f"command {number} is {len(line)} bytes; the limit is {config.max_command_bytes}"
            )
    return lines


def _elements(body: bytes) -> list[bytes]:
    try:
        text = body.decode()
    except UnicodeDecodeError as error:
        raise BadRequest(f"the batch is not UTF-8: {error.reason} at byte {error.start}") from None
    decoder = json.JSONDecoder()
    at = _skip(text, 0)
    if not text.startswith("[", at):
        raise BadRequest(
            "a batch is a JSON array of commands, or JSON Lines sent as application/x-ndjson"
        )
    at = _skip(text, at + 1)
    elements: list[bytes] = []
    if text.startswith("]", at):
        return _ended(text, at, elements)
    while True:
        try:
            _, end = decoder.raw_decode(text, at)
        except (json.JSONDecodeError, RecursionError) as error:
            raise BadRequest(f"malformed JSON in the batch: {_reason(error)}") from None
        elements.append(text[at:end].encode())
        at = _skip(text, end)
        if text.startswith(",", at):
            at = _skip(text, at + 1)
        elif text.startswith("]", at):
            return _ended(text, at, elements)
        else:
            raise BadRequest(f"malformed JSON in the batch: expected , or ] at character {at}")


def _ended(text: str, at: int, elements: list[bytes]) -> list[bytes]:
    if _skip(text, at + 1) != len(text):
        raise BadRequest(f"malformed JSON in the batch: text after the array at {at + 1}")
    return elements


def _skip(text: str, at: int) -> int:
    while at < len(text) and text[at] in _WHITESPACE:
        at += 1
    return at


def _reason(error: Exception) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at character {error.pos}"
    return "nested too deeply"
