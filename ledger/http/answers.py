"""Every answer is a result object, ``{"status": ..., "error": {"code", "message",
"field"?}}`` as ``ledger append`` writes them, with the HTTP status its code implies.

Errors of the service itself (401, 413, 503...) take the same shape with codes of their
own, and nothing a client sees ever holds a traceback or SQL: an unexpected error answers
500 with a fixed message and is logged on the server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

from ledger.commands.results import Result

# the result's error code -> the HTTP status (issue 17)
STATUS_OF_CODE: dict[str, int] = {
    "validation_error": 422,
    "not_found": 404,
    "conflict": 409,
    "invalid_state": 409,
    "no_access": 403,
}
STATUS_OF_RESULT: dict[str, int] = {"accepted": 201, "duplicate": 200}


class ServiceError(Exception):
    """A request the service answers with an error of its own, not a command's result."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def headers(self) -> dict[str, str]:
        return {}


class Unauthorized(ServiceError):
    status, code = 401, "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(ServiceError):
    """A valid token without the scope, or outside the organization, the request needs."""

    status, code = 403, "forbidden"


class TooLarge(ServiceError):
    status, code = 413, "too_large"


class Overloaded(ServiceError):
    """Too much is in flight: answered at once rather than queued without bound."""

    status, code = 503, "overloaded"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class Unavailable(Overloaded):
    """The database cannot be reached or its lock could not be had in time."""

    code = "unavailable"


class NotFound(ServiceError):
    """What the request names does not exist (a person's export: erased or unknown)."""

    status, code = 404, "not_found"


class BadRequest(ServiceError):
    status, code = 422, "validation_error"


def status_of(result: Result) -> int:
    if result.error is not None:
        return STATUS_OF_CODE.get(result.error.code, 422)
    return STATUS_OF_RESULT.get(result.status, 200)


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, headers=headers, media_type="application/json"
    )


class _JsonAnswer(Response):
    """A JSON answer whose headers are written out once: ``Response.__init__`` works
    them out at every answer (a charset check, a header object), a tenth of what the
    service's main thread spends on a heartbeat's request. The same two headers, in the
    same order, as ``json_response`` gives; still a ``Response`` (its ``headers`` work)."""

    media_type = "application/json"

    def __init__(self, body: bytes, status: int) -> None:  # not Response's: on purpose
        self.status_code = status
        self.body = body
        self.background = None
        self.raw_headers = [
            (b"content-length", b"%d" % len(body)),
            (b"content-type", b"application/json"),
        ]


def result_response(result: Result) -> Response:
    return _JsonAnswer(orjson.dumps(result.as_dict()), status_of(result))


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    error = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return {"status": "rejected", "error": error}


def error_response(error: ServiceError) -> Response:
    return json_response(
        error_body(error.code, error.message, error.field), error.status, error.headers()
    )
