"""The settings a user gives: the lock timeout."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.config import ConfigurationError, Settings, lock_timeout_ms

UNITS = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000}


@given(amount=st.integers(min_value=1, max_value=10**6), unit=st.sampled_from(sorted(UNITS)))
def test_a_whole_duration_with_its_unit_is_read_in_milliseconds(amount: int, unit: str) -> None:
    expected = amount * UNITS[unit]
    if expected <= 2**31 - 1:
        assert lock_timeout_ms(f"{amount}{unit}") == expected
        assert lock_timeout_ms(f" {amount}{unit}\n") == expected
    else:
        with pytest.raises(ConfigurationError, match="LEDGER_LOCK_TIMEOUT"):
            lock_timeout_ms(f"{amount}{unit}")


@given(value=st.text(max_size=12))
def test_anything_else_is_refused_naming_the_variable(value: str) -> None:
    stripped = value.strip()
    number = stripped.rstrip("minsh")
    if number.isascii() and number.isdigit() and stripped[len(number) :] in UNITS:
        return  # a well-formed duration: the test above
    with pytest.raises(ConfigurationError, match=r"^LEDGER_LOCK_TIMEOUT .* is not a lock timeout"):
        lock_timeout_ms(value)


def test_the_default_is_five_seconds_and_a_bad_value_fails_the_settings() -> None:
    assert Settings(url="postgresql:///x").lock_timeout_ms == 5000
    with pytest.raises(ConfigurationError, match="LEDGER_LOCK_TIMEOUT '0ms'"):
        Settings(url="postgresql:///x", lock_timeout="0ms")
