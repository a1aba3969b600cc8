"""``POST /v1/webhooks/stripe``: Stripe's events, verified, mapped and appended.

Stripe delivers at least once, out of order, and retries any answer other than 2xx for
up to three days. So every answer is chosen for what Stripe does with it: 200 when the
event is recorded, was recorded before, or records nothing (redelivering would not
change that); 409 with ``Retry-After`` when it comes before what it refers to (a
refund before its payment), so that a later delivery records it; 400, 413 and 422 when
the request itself is wrong. The body is read raw and bounded, and the signature is
checked over those bytes, before anything is parsed (docs/stripe.md).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from ledger.commands.base import Command
from ledger.commands.purchases import FailPurchase, RefundPurchase, StartPurchase
from ledger.commands.results import Result
from ledger.domain.errors import ValidationFailed
from ledger.errors import ConfigurationError
from ledger.http.redaction import described
from ledger.http.stripe_events import METADATA, Mapped, map_event
from ledger.http.stripe_signature import (
    DEFAULT_TOLERANCE_SECONDS,
    SECRETS_ENV,
    SignatureError,
    verify,
)

PATH = "/v1/webhooks/stripe"
MAX_BODY_BYTES = 1024 * 1024
RETRY_AFTER_SECONDS = 60
UNKNOWN_TYPE = "unknown"  # the metric's type when the body is not (yet) Stripe's

Submit = Callable[[Command], Awaitable[Result]]
OnEvent = Callable[[str, str], None]

_log = logging.getLogger("ledger.http.stripe")

# the status of a rejection, as POST /v1/commands answers it
_STATUS_BY_CODE = {
    "validation_error": 422,
    "not_found": 404,
    "conflict": 409,
    "invalid_state": 409,
    "no_access": 403,
}

# when a charge.refunded gives several commands, the answer is the worst of theirs
_RANK = {"duplicate": 0, "superseded": 1, "accepted": 2, "retry_later": 3, "rejected": 4}


@dataclass
class _Answer:
    status: int
    outcome: str
    event_type: str = UNKNOWN_TYPE
    body: dict[str, Any] = field(default_factory=dict)
    retry_after: bool = False

    def response(self) -> JSONResponse:
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if self.retry_after else None
        return JSONResponse({"outcome": self.outcome, **self.body}, self.status, headers)


def _error(status: int, outcome: str, code: str, message: str, **extra: Any) -> _Answer:
    error: dict[str, Any] = {"code": code, "message": message}
    return _Answer(status, outcome, body={"error": error}, **extra)


# the body is read raw (the signature covers its bytes), so the schema is stated here
_OPENAPI: dict[str, Any] = {
    "parameters": [
        {
            "name": "Stripe-Signature",
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
            "description": "t=<unix seconds>,v1=<HMAC-SHA256 hex>[,v1=...]",
        }
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object", "description": "a Stripe Event object"}
            }
        },
    },
}


def stripe_router(
    submit: Submit,
    secrets: Sequence[str],
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    on_event: OnEvent | None = None,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> APIRouter:
    """The webhook's route: ``submit`` appends one command (the service's group commit,
    or ``ledger.append`` in a thread); ``on_event(type, outcome)`` is called once per
    request, for the metrics."""
    if isinstance(secrets, str):  # its characters would each be taken for a secret
        raise TypeError("secrets: a sequence of secrets, not one string")
    if any(not secret.strip() for secret in secrets):
        raise ConfigurationError(f"{SECRETS_ENV}: a secret is blank")
    router = APIRouter()
    keys = tuple(secrets)

    @router.post(
        PATH,
        summary="Stripe webhook endpoint (authenticated by its Stripe-Signature)",
        openapi_extra=_OPENAPI,
        responses={
            200: {"description": "recorded, a duplicate, superseded, or not mapped"},
            400: {"description": "bad signature or malformed event"},
            409: {"description": "refers to what the ledger does not know yet (Retry-After)"},
            413: {"description": "body over 1 MiB"},
            422: {"description": "bad metadata or event field, named"},
            503: {"description": "not configured, or the ledger is unavailable (Retry-After)"},
        },
    )
    async def stripe_webhook(request: Request) -> JSONResponse:
        try:
            answer = await _handle(request, submit, keys, tolerance_seconds, max_body_bytes)
        except ClientDisconnect:
            raise  # gone before its body arrived: nothing to record, nobody to answer
        except Exception as error:  # never a traceback to the client: Stripe will deliver again
            _log.error("the Stripe webhook failed\n%s", described(error))
            answer = _error(
                500, "error", "internal_error", "the event was not recorded", retry_after=True
            )
        if on_event is not None:
            try:
                on_event(answer.event_type, answer.outcome)
            except Exception as error:  # a metric lost is no reason to have Stripe deliver again
                _log.error("counting a Stripe event failed\n%s", described(error))
        return answer.response()

    return router


async def _handle(
    request: Request,
    submit: Submit,
    secrets: tuple[str, ...],
    tolerance_seconds: int,
    max_body_bytes: int,
) -> _Answer:
    if not secrets:
        _log.error("a Stripe event arrived, but %s is not set", SECRETS_ENV)
        return _error(
            503, "not_configured", "not_configured", "the webhook has no secret", retry_after=True
        )
    body = await _bounded_body(request, max_body_bytes)
    if body is None:
        return _error(413, "too_large", "too_large", f"the body exceeds {max_body_bytes} bytes")
    try:
        verify(body, request.headers.get("stripe-signature"), secrets, tolerance_seconds)
    except SignatureError as error:
        return _error(400, "bad_signature", "bad_signature", error.reason)
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        return _error(400, "malformed", "validation_error", f"malformed JSON: {error}")
    event_type = event.get("type") if isinstance(event, dict) else None
    known_type = event_type[:100] if isinstance(event_type, str) and event_type else UNKNOWN_TYPE
    try:
        mapped = map_event(event)
    except ValidationFailed as error:
        bad_metadata = (error.field or "").startswith(METADATA)
        outcome = "bad_metadata" if bad_metadata else "bad_event"
        return _Answer(422, outcome, known_type, {"error": error.as_dict()})
    if isinstance(mapped, Mapped):
        answer = await _record(mapped, submit)
    else:
        answer = _Answer(200, mapped.outcome, body={"reason": mapped.reason})
    answer.body = {"event_id": mapped.event_id, "event_type": mapped.event_type, **answer.body}
    answer.event_type = known_type
    return answer


async def _bounded_body(request: Request, limit: int) -> bytes | None:
    """The raw body, or ``None`` past ``limit`` bytes (read no further: memory stays
    bounded whatever the sender claims or sends)."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _record(mapped: Mapped, submit: Submit) -> _Answer:
    judged: list[tuple[str, int]] = []
    results: list[dict[str, Any]] = []
    for command in mapped.commands:
        try:
            result = await submit(command)
        except Exception as error:
            _log.error("appending Stripe event %s failed\n%s", mapped.event_id, described(error))
            return _error(
                503,
                "unavailable",
                "unavailable",
                "the ledger could not record the event now",
                retry_after=True,
            )
        judged.append(_judge(command, result))
        results.append(result.as_dict())
    outcome, status = max(judged, key=lambda j: _RANK[j[0]])
    return _Answer(status, outcome, body={"results": results}, retry_after=outcome == "retry_later")


def _judge(command: Command, result: Result) -> tuple[str, int]:
    """The outcome and status of one command's result, for Stripe."""
    if result.status == "accepted":
        return "accepted", 200
    if result.status == "duplicate":
        return "duplicate", 200
    code = result.error.code if result.error is not None else "rejected"
    about_purchase = result.error is not None and result.error.field == "stripe_payment_intent_id"
    if code == "not_found":
        return "retry_later", 409  # the purchase, customer or content is not recorded yet
    if code == "invalid_state" and about_purchase:
        if isinstance(command, StartPurchase | FailPurchase):
            # a late start, or a failed attempt delivered after the payment succeeded:
            # the purchase has moved on, and no later delivery would change that
            return "superseded", 200
        if isinstance(command, RefundPurchase):
            return "retry_later", 409  # a refund before its payment succeeded in the ledger
    return "rejected", _STATUS_BY_CODE.get(code, 409)
