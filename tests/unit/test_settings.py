"""The settings a user gives: the lock timeout."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.config import ConfigurationError, Settings, lock_timeout_ms, resolve

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


def test_the_pool_timeout_is_ten_seconds_read_from_the_environment_and_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings(url="postgresql:///x").pool_timeout_s == 10.0
    monkeypatch.setenv("LEDGER_POOL_TIMEOUT", "750ms")
    assert resolve("postgresql:///x").pool_timeout_s == 0.75
    for bad in ("0s", "10", "ten seconds"):
        monkeypatch.setenv("LEDGER_POOL_TIMEOUT", bad)
        with pytest.raises(ConfigurationError, match=rf"^LEDGER_POOL_TIMEOUT '{bad}' is not"):
            resolve("postgresql:///x")


BOUNDS = (
    "LEDGER_GROUP_MAX",
    "LEDGER_GROUP_MAX_BYTES",
    "LEDGER_QUEUE_MAX",
    "LEDGER_PLAYBACK_LANES",
)


@given(name=st.sampled_from(BOUNDS), number=st.integers(min_value=1, max_value=2**31 - 1))
def test_a_bound_is_a_whole_number_above_zero(name: str, number: int) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(name, f" {number}\n")
        patch.setenv("LEDGER_DATABASE_URL", "postgresql:///x")
        settings = resolve()
    field = {
        "LEDGER_GROUP_MAX": "group_max",
        "LEDGER_GROUP_MAX_BYTES": "group_max_bytes",
        "LEDGER_QUEUE_MAX": "queue_max",
        "LEDGER_PLAYBACK_LANES": "playback_lanes",
    }[name]
    assert getattr(settings, field) == number


ENVIRONMENT_TEXT = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12
)


@given(name=st.sampled_from(BOUNDS), value=ENVIRONMENT_TEXT)
def test_any_other_bound_is_refused_naming_the_variable(name: str, value: str) -> None:
    stripped = value.strip()
    if not value or (stripped.isascii() and stripped.isdigit() and 0 < int(stripped) < 2**31):
        return  # unset (the default) or well-formed: the test above
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(name, value)
        patch.setenv("LEDGER_DATABASE_URL", "postgresql:///x")
        with pytest.raises(ConfigurationError, match=rf"^{name} .* is not a bound"):
            resolve()


def test_the_bounds_default_and_are_checked_in_the_settings() -> None:
    settings = Settings(url="postgresql:///x")
    assert (settings.group_max, settings.group_max_bytes, settings.queue_max) == (
        256,
        1_048_576,
        4096,
    )
    with pytest.raises(ConfigurationError, match="LEDGER_QUEUE_MAX '0'"):
        Settings(url="postgresql:///x", queue_max=0)
    assert settings.playback_lanes == 1
    with pytest.raises(ConfigurationError, match="LEDGER_PLAYBACK_LANES '0'"):
        Settings(url="postgresql:///x", playback_lanes=0)
