"""The audit's pure rules: times and ranges, the cumulative refund split, periods."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from fractions import Fraction
from math import ceil, floor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.audit.chart import minor_units, period_count, periods_between
from ledger.audit.revenue import RevenueQuery, parse_moment
from ledger.domain.aggregates import refund_shares


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-02-01", datetime(2026, 2, 1, tzinfo=UTC)),
        ("2026-02-01T10:30:00Z", datetime(2026, 2, 1, 10, 30, tzinfo=UTC)),
        ("2026-02-01t10:30:00z", datetime(2026, 2, 1, 10, 30, tzinfo=UTC)),
        ("2026-02-01 10:30:00.25+00:00", datetime(2026, 2, 1, 10, 30, 0, 250000, tzinfo=UTC)),
        (
            "2026-02-01T10:30:00-05:30",
            datetime(2026, 2, 1, 10, 30, tzinfo=timezone(-timedelta(hours=5, minutes=30))),
        ),
    ],
)
def test_a_moment_is_a_date_or_an_rfc3339_time(text: str, expected: datetime) -> None:
    assert parse_moment(text, "--from") == expected


@pytest.mark.parametrize(
    "text",
    [
        "yesterday",
        "2026-02-01T10:30:00",  # no offset
        "2026-13-01",
        "2026-02-30T10:00:00Z",
        "2026-2-1",
        "20260201",
        "2026-02-01T10:30Z",  # RFC 3339 needs seconds
        "",
    ],
)
def test_anything_else_is_refused_naming_the_option(text: str) -> None:
    with pytest.raises(ValueError, match=r"^--to: .*RFC 3339"):
        parse_moment(text, "--to")


def test_a_range_must_not_be_empty_or_reversed() -> None:
    day = datetime(2026, 2, 1, tzinfo=UTC)
    RevenueQuery(start=day, end=day + timedelta(microseconds=1))
    for end in (day, day - timedelta(days=1)):
        with pytest.raises(ValueError, match=r"--to .* must be later than --from"):
            RevenueQuery(start=day, end=end)
    with pytest.raises(ValueError, match="--group-by"):
        RevenueQuery(group_by="year")  # type: ignore[arg-type]


@st.composite
def refunded_purchases(draw: st.DrawFn) -> tuple[int, int, int, list[int]]:
    amount = draw(st.integers(1, 2_147_483_647))
    platform = draw(st.integers(0, amount))
    organization = draw(st.integers(0, amount - platform))
    refunds = []
    left = amount
    for _ in range(draw(st.integers(1, 6))):
        if left == 0:
            break
        part = draw(st.integers(1, left))
        refunds.append(part)
        left -= part
    if draw(st.booleans()) and left:
        refunds.append(left)  # refunded in full
    return amount, platform, organization, refunds


@given(refunded_purchases())
def test_cumulative_shares_stay_within_each_party_s_share(
    case: tuple[int, int, int, list[int]],
) -> None:
    """After refunds totalling R of A split (p, o, c): the platform has returned
    ceil(R*p/A), the creator floor(R*c/A), the organization the rest (the contract's
    rule, computed here exactly with fractions). Each party's cumulative return stays
    within 0 and its share, whatever the amount, the split and the sequence of partial
    refunds; each refund's shares add up to it; a full refund returns exactly the split.
    The platform's and the creator's returns only grow; the organization's rest may
    step back by a cent (see below), never below 0."""
    amount, platform, organization, refunds = case
    creator = amount - platform - organization
    total = 0
    returned = [0, 0, 0]
    for part in refunds:
        before = refund_shares(total, amount, platform, organization)
        total += part
        after = refund_shares(total, amount, platform, organization)
        shares = [a - b for a, b in zip(after, before, strict=True)]
        assert shares[0] >= 0 and shares[2] >= 0 and sum(shares) == part
        returned = [r + s for r, s in zip(returned, shares, strict=True)]
        assert returned[0] == ceil(Fraction(total * platform, amount))
        assert returned[2] == floor(Fraction(total * creator, amount))
        assert returned[1] == total - returned[0] - returned[2]
        for got, share in zip(returned, (platform, organization, creator), strict=True):
            assert 0 <= got <= share
    if total == amount:
        assert returned == [platform, organization, creator]


def test_no_party_returns_more_than_it_was_paid() -> None:
    """The issue's case: 3 cents split (2, 1, 0) refunded 1 cent. The earlier rule
    (floor for platform and organization, the rest to the creator) had the creator,
    paid nothing, return 1; now the platform, rounded up, returns it."""
    assert refund_shares(1, 3, 2, 1) == (1, 0, 0)
    assert refund_shares(3, 3, 2, 1) == (2, 1, 0)


def test_the_organization_rest_can_step_back() -> None:
    """A=29 split (26, 1, 2): after 14 cents the organization has returned 1, after 15
    it has returned 0 (the platform's ceiling and the creator's floor moved together);
    its cumulative return never leaves 0..1."""
    assert refund_shares(14, 29, 26, 1) == (13, 1, 0)
    assert refund_shares(15, 29, 26, 1) == (14, 0, 1)


def test_the_worked_example_of_docs_audit() -> None:
    """docs/audit.md: 1000 split (333, 333, 334), refunded 1, then 1, then 998."""
    shares = []
    total = 0
    for part in (1, 1, 998):
        before = refund_shares(total, 1000, 333, 333)
        total += part
        after = refund_shares(total, 1000, 333, 333)
        shares.append(tuple(a - b for a, b in zip(after, before, strict=True)))
    assert shares == [(1, 0, 0), (0, 1, 0), (332, 332, 334)]
    # per-refund rounding would drift: ceil(1*333/1000) = 1 on each of the first two
    assert -(-1 * 333 // 1000) == 1


def test_periods_between_fill_the_gaps() -> None:
    assert periods_between("2025-11", "2026-02") == ["2025-11", "2025-12", "2026-01", "2026-02"]
    assert periods_between("2024-02-28", "2024-03-01") == ["2024-02-28", "2024-02-29", "2024-03-01"]
    assert periods_between("2026-05", "2026-05") == ["2026-05"]


def test_minor_units() -> None:
    assert (minor_units("usd"), minor_units("JPY"), minor_units("kwd")) == (2, 0, 3)


@pytest.mark.parametrize(
    "text", ["0001-01-01", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "1999-12-31"]
)
def test_moments_outside_the_business_window_are_refused(text: str) -> None:
    for name in ("--from", "--to", "--as-of"):
        with pytest.raises(ValueError, match=rf"^{name}: .*outside the business window"):
            parse_moment(text, name, exclusive=name == "--to")


def test_an_exclusive_end_may_be_the_window_s_end() -> None:
    assert parse_moment("2100-01-01", "--to", exclusive=True) == datetime(2100, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="outside"):
        parse_moment("2100-01-01", "--from")


@given(
    first=st.dates(date(2000, 1, 1), date(2099, 12, 31)),
    days=st.integers(0, 800),
)
def test_period_counts_without_listing(first: date, days: int) -> None:
    last = min(first + timedelta(days=days), date(2099, 12, 31))
    assert period_count(first.isoformat(), last.isoformat()) == len(
        periods_between(first.isoformat(), last.isoformat())
    )
    assert period_count(first.isoformat()[:7], last.isoformat()[:7]) == len(
        periods_between(first.isoformat()[:7], last.isoformat()[:7])
    )
