"""Business time as canonical strings.

Every timestamp in an event is UTC with microseconds and a fixed width
(``2026-01-31T09:30:00.000000+00:00``): equal instants give equal strings, string
order is time order, and PostgreSQL reads them as timestamptz unchanged.

Business times lie in a window, from 2000-01-01 to 2099-12-31 (UTC): wide enough for
any real purchase, narrow enough that every canonical string has the same width and
that no offset can push a time past the range a ``datetime`` or PostgreSQL holds.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ledger.domain.errors import InvalidState

WINDOW_START = datetime(2000, 1, 1, tzinfo=UTC)  # inclusive
WINDOW_END = datetime(2100, 1, 1, tzinfo=UTC)  # exclusive: 2099-12-31 is the last day
WINDOW = "from 2000-01-01 to 2099-12-31 (UTC)"


def within_window(moment: datetime) -> bool:
    """Whether an aware time lies in the business window (compared without converting
    it, so that 0001-01-01T00:00:00+01:00 is simply outside, not an overflow)."""
    return WINDOW_START <= moment < WINDOW_END


def canonical(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("a timestamp needs an offset")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def now() -> str:
    return canonical(datetime.now(UTC))


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


def not_before(occurred_at: str, since: str | None, what: str) -> None:
    """Business time runs forward: nothing is dated before what it follows."""
    if since is not None and occurred_at < since:
        raise InvalidState(f"occurred_at {occurred_at} lies before {what} ({since})", "occurred_at")
