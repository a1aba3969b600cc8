"""Business time as canonical strings.

Every timestamp in an event is UTC with microseconds and a fixed width
(``2026-01-31T09:30:00.000000+00:00``): equal instants give equal strings, string
order is time order, and PostgreSQL reads them as timestamptz unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime


def canonical(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("a timestamp needs an offset")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def now() -> str:
    return canonical(datetime.now(UTC))


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text)
