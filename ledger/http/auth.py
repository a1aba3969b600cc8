"""Bearer tokens for ``/v1/*`` (the Stripe webhook excepted: its signature is its
authentication), each with the scopes it may use and, optionally, the one organization
it is bound to (docs/service.md, "Tokens and scopes").

``LEDGER_API_TOKENS`` is a comma-separated list of entries ``TOKEN`` (every scope, no
organization), ``TOKEN:SCOPES`` or ``TOKEN:SCOPES:ORGANIZATION_UUID``, scopes joined by
``+``. A given token is compared with every configured one in constant time, so neither a
match's position nor a prefix shows in the time of the answer; an error in the setting
names the entry by its place, never the token.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from starlette.requests import Request

from ledger.errors import ConfigurationError
from ledger.http.answers import Forbidden, Unauthorized

TOKENS_ENV = "LEDGER_API_TOKENS"
# scope -> what it allows (docs/service.md)
SCOPES: dict[str, str] = {
    "commands": "POST /v1/commands and /v1/commands/batch",
    "access": "GET /v1/access/{user_id}/{content_id}",
    "read": "GET /v1/revenue, /v1/events and /v1/playback/events",
    "users": "a person's data: GET /v1/users/{user_id}/export and erasure",
}
ALL_SCOPES = frozenset(SCOPES)
MAX_TOKEN = 512


@dataclass(frozen=True)
class Token:
    """A configured token: its secret, its scopes, the organization it is bound to."""

    secret: bytes
    scopes: frozenset[str] = ALL_SCOPES
    organization: str | None = None  # a canonical UUID


def parse_tokens(text: str) -> tuple[Token, ...]:
    """The tokens of ``LEDGER_API_TOKENS``; ``ConfigurationError`` (one line, naming the
    entry by its place) for an entry that is not one of the three forms."""
    tokens: list[Token] = []
    seen: set[bytes] = set()
    for place, entry in enumerate((entry.strip() for entry in text.split(",")), start=1):
        if not entry:
            continue  # "a,,b" and a trailing comma, as ever
        token = _entry(place, entry)
        if token.secret in seen:
            raise _malformed(place, "repeats the token of an earlier entry")
        seen.add(token.secret)
        tokens.append(token)
    return tuple(tokens)


def _malformed(place: int, why: str) -> ConfigurationError:
    return ConfigurationError(
        f"{TOKENS_ENV}: entry {place} {why}; each entry is TOKEN, TOKEN:SCOPES or "
        f"TOKEN:SCOPES:ORGANIZATION_UUID, scopes joined by + from {', '.join(SCOPES)}"
    )


def _entry(place: int, entry: str) -> Token:
    parts = entry.split(":")
    if len(parts) > 3:
        raise _malformed(place, "has more than three parts")
    secret = parts[0]
    if not secret:
        raise _malformed(place, "has no token before its first ':'")
    if len(secret) > MAX_TOKEN or not all("\x21" <= c <= "\x7e" for c in secret):
        raise _malformed(
            place, f"has a token that is not 1 to {MAX_TOKEN} printable ASCII characters"
        )
    if len(parts) == 1:
        return Token(secret.encode())
    names = parts[1].split("+")
    unknown = [name for name in names if name not in SCOPES]
    if unknown:
        raise _malformed(place, f"names an unknown scope {unknown[0][:40]!r}")
    if len(set(names)) != len(names):
        raise _malformed(place, "names a scope twice")
    organization = None
    if len(parts) == 3:
        try:
            organization = str(UUID(parts[2]))
        except ValueError:
            raise _malformed(
                place, f"has an organization {parts[2][:40]!r} that is not a UUID"
            ) from None
    return Token(secret.encode(), frozenset(names), organization)


def check_token(tokens: tuple[Token, ...], authorization: str) -> Token:
    """The configured token ``authorization`` (``Bearer <token>``) presents, else
    ``Unauthorized``. Every configured token is compared, in constant time."""
    scheme, _, given = authorization.partition(" ")
    presented = given.strip().encode()
    matched: Token | None = None
    for token in tokens:
        if hmac.compare_digest(presented, token.secret):
            matched = token
    if scheme.lower() != "bearer" or not presented or matched is None:
        raise Unauthorized("send Authorization: Bearer <token>, a token of LEDGER_API_TOKENS")
    return matched


def check_scope(token: Token, scope: str) -> None:
    if scope not in token.scopes:
        raise Forbidden(f"this token's scopes ({'+'.join(sorted(token.scopes))}) lack {scope!r}")


def require(scope: str) -> Callable[[Request], Coroutine[Any, Any, None]]:
    """The dependency of a router whose endpoints need ``scope``: the token is checked,
    and kept in ``request.state.token`` for the endpoint (its organization)."""

    async def dependency(request: Request) -> None:
        # a coroutine, not a plain function: FastAPI runs a plain dependency in a worker
        # thread, a thread hop per request for a check that never blocks
        token = check_token(
            request.app.state.backend.config.tokens, request.headers.get("authorization", "")
        )
        check_scope(token, scope)
        request.state.token = token

    return dependency
