"""A reader's place in a log without a total order: one position per chain.

In the log's ``organization`` order (docs/stream.md, "Chains and orders") ``notification_id``
is an id, not an order across chains, so "everything after N" can skip an event that commits
late. Each chain's ``position`` is gapless and in commit order, so a reader that keeps one
position per chain (organization) never skips one. A ``Cursor`` is that map, immutable; a
chain it does not name stands at 0 (nothing of it read yet), so a cursor never has to know
which organizations exist.

Its text form, what ``ledger events`` prints in its resume hint and ``GET /v1/events``
answers as ``next_after``, is the chains in uuid order, ``ORGANIZATION:POSITION`` joined by
commas, the platform's chain written ``platform``::

    platform:12,0a000000-0000-4000-8000-00000000000a:7

Readable, greppable against the events' own ``organization_id``, and pasteable into a shell
without quoting (only hex digits, ``-``, ``:`` and ``,``). Chains at 0 are left out; the
cursor of nothing read is written ``platform:0``, so the text is never empty and never a
bare number (a bare number is the single server's global position). ``parse_cursor`` accepts any
case and chains at 0; ``str(parse_cursor(text))`` is the canonical text.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from uuid import UUID

PLATFORM = UUID(int=0)  # ledger.log.chains.PLATFORM (the reading side imports no log)
MAX_POSITION = 2**63 - 1
MAX_CHAINS = 100_000  # a bound on what one text may name (an HTTP query, a pasted hint)
_HEX = frozenset("0123456789abcdef")


class Cursor(Mapping[UUID, int]):
    """Positions by chain; a chain not named stands at 0. Equal cursors compare equal
    whatever chains at 0 they were built with."""

    __slots__ = ("_positions",)

    def __init__(self, positions: Mapping[UUID, int] | Iterable[tuple[UUID, int]] = ()) -> None:
        items = positions.items() if isinstance(positions, Mapping) else positions
        kept: dict[UUID, int] = {}
        for chain, position in items:
            if not isinstance(chain, UUID):
                raise ValueError(f"after: a chain is a uuid, not {chain!r}")
            if isinstance(position, bool) or not isinstance(position, int):
                raise ValueError(f"after: a position is a whole number, not {position!r}")
            if not 0 <= position <= MAX_POSITION:
                raise ValueError(f"after: a position is 0 to {MAX_POSITION}, not {position}")
            if position:
                kept[chain] = position
        self._positions = dict(sorted(kept.items()))

    def __getitem__(self, chain: UUID) -> int:
        return self._positions.get(chain, 0)

    def __iter__(self) -> Iterator[UUID]:
        return iter(self._positions)

    def __len__(self) -> int:
        return len(self._positions)

    def __contains__(self, chain: object) -> bool:
        return chain in self._positions

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Cursor):
            return self._positions == other._positions
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self._positions.items()))

    def __repr__(self) -> str:
        return f"Cursor({str(self)!r})"

    def __str__(self) -> str:
        if not self._positions:
            return "platform:0"
        return ",".join(f"{_chain_text(c)}:{p}" for c, p in self._positions.items())

    def advanced(self, positions: Mapping[UUID, int]) -> Cursor:
        """This cursor with the chains of ``positions`` moved to them (never back)."""
        merged = dict(self._positions)
        for chain, position in positions.items():
            merged[chain] = max(merged.get(chain, 0), position)
        return Cursor(merged)


def parse_cursor(text: str) -> Cursor:
    """A cursor from its text form; a ``ValueError`` naming ``after`` and the rule."""
    if not isinstance(text, str) or not text.isascii():
        raise ValueError("after: a cursor is ASCII: ORGANIZATION:POSITION joined by commas")
    entries = text.strip().lower().split(",")
    if len(entries) > MAX_CHAINS:
        raise ValueError(f"after: a cursor names at most {MAX_CHAINS} chains")
    positions: dict[UUID, int] = {}
    for entry in entries:
        chain_text, colon, position_text = entry.partition(":")
        if not colon:
            raise ValueError(
                f"after: {entry!r} is not ORGANIZATION:POSITION (a cursor is "
                "ORGANIZATION:POSITION joined by commas; the platform's chain is 'platform')"
            )
        chain = _chain(chain_text)
        if chain in positions:
            raise ValueError(f"after: the chain {chain_text} is named twice")
        if not position_text.isdigit() or len(position_text) > 19:
            raise ValueError(f"after: {position_text!r} is not a position (a whole number)")
        positions[chain] = int(position_text)
    return Cursor(positions)


def _chain(text: str) -> UUID:
    if text == "platform":
        return PLATFORM
    # the canonical form only (36 characters, hyphens in place): what the events print
    parts = text.split("-")
    if [len(p) for p in parts] != [8, 4, 4, 4, 12] or not _HEX.issuperset("".join(parts)):
        raise ValueError(f"after: {text!r} is not an organization's uuid nor 'platform'")
    return UUID(text)


def _chain_text(chain: UUID) -> str:
    return "platform" if chain == PLATFORM else str(chain)
