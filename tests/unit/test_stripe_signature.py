"""The Stripe-Signature check: any v1 against any secret, a two-sided tolerance, a strict header."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.http.stripe_signature import (
    DEFAULT_TOLERANCE_SECONDS,
    SignatureError,
    parse_header,
    sign,
    verify,
)
from tests.stripe_support import OTHER_SECRET, SECRET

NOW = 1_767_787_200
BODY = b'{"id":"evt_1","type":"payment_intent.succeeded"}'


def header(body: bytes = BODY, secret: str = SECRET, at: int = NOW) -> str:
    return f"t={at},v1={sign(body, secret, at)}"


def reason(body: bytes, signature: str | None, secrets: list[str], at: float = NOW) -> str:
    with pytest.raises(SignatureError) as caught:
        verify(body, signature, secrets, DEFAULT_TOLERANCE_SECONDS, now=at)
    return caught.value.reason


def test_the_signature_is_stripes_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(BODY, SECRET, NOW) == expected
    assert verify(BODY, header(), [SECRET], now=NOW) == NOW


def test_any_v1_may_match_any_secret_and_other_schemes_are_ignored() -> None:
    mine = sign(BODY, SECRET, NOW)
    theirs = sign(BODY, OTHER_SECRET, NOW)
    several = f"t={NOW},v1={theirs},v0=deadbeef,v1={mine}"
    assert verify(BODY, several, [SECRET], now=NOW) == NOW
    # rotation: the old and the new secret both verify
    assert verify(BODY, header(secret=OTHER_SECRET), [SECRET, OTHER_SECRET], now=NOW) == NOW
    assert verify(BODY, header(secret=SECRET), [OTHER_SECRET, SECRET], now=NOW) == NOW
    assert "no v1 signature matches" in reason(BODY, header(secret=OTHER_SECRET), [SECRET])


def test_the_timestamp_must_lie_within_the_tolerance_in_the_past_and_in_the_future() -> None:
    limit = DEFAULT_TOLERANCE_SECONDS
    assert verify(BODY, header(at=NOW - limit), [SECRET], now=NOW) == NOW - limit
    assert verify(BODY, header(at=NOW + limit), [SECRET], now=NOW) == NOW + limit
    assert "in the past" in reason(BODY, header(at=NOW - limit - 1), [SECRET])
    assert "in the future" in reason(BODY, header(at=NOW + limit + 1), [SECRET])
    assert verify(BODY, header(at=NOW - 1000), [SECRET], tolerance_seconds=1001, now=NOW)


def test_a_forged_timestamp_fails_the_signature_not_the_tolerance() -> None:
    signed_long_ago = sign(BODY, SECRET, NOW - 10_000)
    assert "no v1 signature matches" in reason(BODY, f"t={NOW},v1={signed_long_ago}", [SECRET])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "no Stripe-Signature header"),
        ("", "no Stripe-Signature header"),
        (f"v1={'0' * 64}", "no timestamp"),
        (f"t={NOW},t={NOW},v1={'0' * 64}", "more than one timestamp"),
        (f"t=+{NOW},v1={'0' * 64}", "not a whole number of seconds"),
        (f"t= {NOW}x,v1={'0' * 64}", "not a whole number of seconds"),
        (f"t={NOW}.5,v1={'0' * 64}", "not a whole number of seconds"),
        (f"t={NOW}", "no v1 signature"),
        (f"t={NOW},v0=abc", "no v1 signature"),
        (f"t={NOW},garbage", "not a key=value pair"),
    ],
)
def test_a_malformed_header_is_refused_with_its_reason(value: str | None, expected: str) -> None:
    assert expected in reason(BODY, value, [SECRET])


def test_without_a_secret_nothing_verifies() -> None:
    assert "no webhook secret is configured" in reason(BODY, header(), [])
    signed_with_nothing = f"t={NOW},v1={sign(BODY, '', NOW)}"
    assert "no webhook secret is configured" in reason(BODY, signed_with_nothing, [""])


def test_a_non_hex_or_non_ascii_v1_never_matches_and_never_raises_otherwise() -> None:
    assert "no v1 signature matches" in reason(BODY, f"t={NOW},v1=é{'0' * 63}", [SECRET])
    upper = sign(BODY, SECRET, NOW).upper()
    assert "no v1 signature matches" in reason(BODY, f"t={NOW},v1={upper}", [SECRET])


def test_the_header_parser_keeps_the_timestamp_as_signed() -> None:
    assert parse_header(f"t={NOW}, v1=a ,v1=b") == (str(NOW), ["a", "b"])


@given(body=st.binary(max_size=512), data=st.data())
def test_any_tampered_byte_fails(body: bytes, data: st.DataObject) -> None:
    signed = header(body)
    assert verify(body, signed, [SECRET], now=NOW) == NOW
    if body:
        index = data.draw(st.integers(0, len(body) - 1), label="index")
        byte = data.draw(st.integers(0, 255).filter(lambda b: b != body[index]), label="byte")
        tampered = body[:index] + bytes([byte]) + body[index + 1 :]
    else:
        tampered = data.draw(st.binary(min_size=1, max_size=4), label="added")
    assert "no v1 signature matches" in reason(tampered, signed, [SECRET])


@given(body=st.binary(max_size=256), secret=st.text(min_size=1, max_size=40))
def test_only_the_signing_secret_verifies(body: bytes, secret: str) -> None:
    signed = header(body, secret)
    assert verify(body, signed, [secret], now=NOW) == NOW
    if secret != SECRET:
        assert "no v1 signature matches" in reason(body, signed, [SECRET])
