"""Bearer tokens for ``/v1/*`` (the Stripe webhook excepted: its signature is its
authentication). Each given token is compared with every configured one in constant
time, so neither a match's position nor a prefix shows in the time of the answer."""

from __future__ import annotations

import hmac

from starlette.requests import Request

from ledger.http.answers import Unauthorized


async def require_token(request: Request) -> None:
    """A coroutine, not a plain function: FastAPI runs a plain dependency in a worker
    thread, a thread hop per request for a check that never blocks."""
    check_token(request.app.state.backend.config.tokens, request.headers.get("authorization", ""))


def check_token(tokens: tuple[str, ...], authorization: str) -> None:
    """``Unauthorized`` unless ``authorization`` is ``Bearer <one of tokens>``."""
    scheme, _, given = authorization.partition(" ")
    presented = given.strip().encode()
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(presented, token.encode())
    if scheme.lower() != "bearer" or not presented or not matched:
        raise Unauthorized("send Authorization: Bearer <token>, a token of LEDGER_API_TOKENS")
