"""Row changes: what a projection says an event does to a table.

Projections map events to these values and nothing else, so the same mapping
serves the inline path (``projections.inline`` turns changes into SQL in the
append's transaction) and the rebuild (``projections.fold`` applies them to rows
in memory). The two interpreters agree by construction; a property test holds them
to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Upsert:
    """Insert the row, or update it where ``key`` matches.

    On insert the row gets ``created_at = updated_at = at``; on update every column
    in ``values`` is set and ``updated_at = at`` (unless ``touch`` is false: the event
    is dated before the row's latest change, so ``updated_at`` stays), while
    ``created_at`` and the columns not named keep their values.
    """

    table: str
    key: tuple[str, ...]
    values: dict[str, Any]
    at: str
    touch: bool = True


@dataclass(frozen=True, slots=True)
class Update:
    """Set ``values`` on the rows matching ``match`` (none is fine).

    ``at`` bumps ``updated_at``; ``at=None`` leaves ``updated_at`` alone: what a
    foreign key's ON DELETE SET NULL does, or an event dated before the row's latest
    change (``updated_at`` never moves back).
    """

    table: str
    match: dict[str, Any]
    values: dict[str, Any]
    at: str | None


@dataclass(frozen=True, slots=True)
class Delete:
    """Remove the rows matching ``match`` (none is fine)."""

    table: str
    match: dict[str, Any]


RowChange = Upsert | Update | Delete
