"""Stripe's webhook signature (``Stripe-Signature: t=...,v1=...``), checked with hmac.

Not ``stripe.WebhookSignature``: it takes one secret at a time, bounds the timestamp in
the past only, decodes the body as UTF-8 before signing it, and parses ``t`` with
``int()`` (so ``t= 12`` or ``t=1_2`` pass). Rotation, the future bound and a strict header
are what this module adds, in fewer lines than the wrapping would take, without the SDK
and its HTTP client as a dependency (docs/stripe.md).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Sequence

# the service reads both (ledger/http/config.py); the secrets' name is in an error below
SECRETS_ENV = "LEDGER_STRIPE_WEBHOOK_SECRETS"
TOLERANCE_ENV = "LEDGER_STRIPE_TOLERANCE_SECONDS"
DEFAULT_TOLERANCE_SECONDS = 300
SCHEME = "v1"

_TIMESTAMP = re.compile(r"[0-9]{1,12}", re.ASCII)
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}", re.ASCII)


class SignatureError(Exception):
    """The request is not Stripe's (or not any more): answered 400, nothing recorded."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_header(header: str | None) -> tuple[str, list[str]]:
    """The timestamp as sent (its digits are what was signed) and the ``v1`` signatures;
    other schemes (``v0``, test-mode extras) are ignored."""
    if header is None or not header.strip():
        raise SignatureError("no Stripe-Signature header")
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep or not name:
            raise SignatureError(f"Stripe-Signature: {item.strip()!r} is not a key=value pair")
        if name == "t":
            timestamps.append(value)
        elif name == SCHEME:
            signatures.append(value)
    if len(timestamps) != 1:
        raise SignatureError(
            "Stripe-Signature: no timestamp (t=)"
            if not timestamps
            else "Stripe-Signature: more than one timestamp (t=)"
        )
    if not _TIMESTAMP.fullmatch(timestamps[0]):
        raise SignatureError(
            f"Stripe-Signature: t={timestamps[0]!r} is not a whole number of seconds"
        )
    if not signatures:
        raise SignatureError("Stripe-Signature: no v1 signature")
    return timestamps[0], signatures


def sign(body: bytes, secret: str, timestamp: int | str) -> str:
    """The v1 signature of ``body`` at ``timestamp``: what Stripe sends, and what a
    test or a replay tool signs with."""
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def verify(
    body: bytes,
    header: str | None,
    secrets: Sequence[str],
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> int:
    """The signed timestamp, or ``SignatureError``: accepted when any ``v1`` matches any
    secret and the timestamp lies within ``tolerance_seconds`` of now either way (a
    captured request cannot be replayed later, nor one signed ahead of time used)."""
    secrets = [s for s in secrets if s]  # an empty key would let anyone sign
    if not secrets:
        raise SignatureError(f"no webhook secret is configured ({SECRETS_ENV})")
    timestamp, candidates = parse_header(header)
    given = [c.encode() for c in candidates if _HEX_SHA256.fullmatch(c)]
    matched = False
    for secret in secrets:  # every comparison is made: no early exit to time
        expected = sign(body, secret, timestamp).encode()
        for candidate in given:
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureError("no v1 signature matches the body with a configured secret")
    signed_at = int(timestamp)
    current = time.time() if now is None else now
    if signed_at < current - tolerance_seconds:
        raise SignatureError(
            f"the signature's timestamp lies {int(current - signed_at)} s in the past "
            f"(tolerance {tolerance_seconds} s)"
        )
    if signed_at > current + tolerance_seconds:
        raise SignatureError(
            f"the signature's timestamp lies {int(signed_at - current)} s in the future "
            f"(tolerance {tolerance_seconds} s)"
        )
    return signed_at
