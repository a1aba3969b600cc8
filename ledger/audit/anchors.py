"""Anchors: heads of the chain recorded earlier, somewhere the database cannot reach.

The chain shows that the log is consistent with itself. A superuser can still rewrite
history and recompute every hash after it, or cut events off the end, and the chain
stays consistent. An anchor pins it: ``POSITION:HASH`` printed by an earlier verify and
kept outside the database (a ticket, another system, a signed e-mail). The hash at a
position covers everything up to it, so while the event at an anchored position still
carries the anchored hash, history up to there is what it was; anything else is named.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

from ledger.audit.chain import GENESIS

_ANCHOR = re.compile(r"^(?:([0-9a-fA-F-]{36})/)?(\d{1,19}):([0-9a-fA-F]{64})$")
_PLATFORM = str(UUID(int=0))


@dataclass(frozen=True, order=True)
class Anchor:
    """A chain's head: ``POSITION:HASH`` for the platform's chain (the old single chain's
    form, so anchors kept before per-organization chains still read), and
    ``ORGANIZATION/POSITION:HASH`` for an organization's."""

    position: int
    hash: str  # 64 lower-case hex digits
    chain: str = ""  # the organization's uuid; "" for the platform's chain

    def __str__(self) -> str:
        prefix = f"{self.chain}/" if self.chain else ""
        return f"{prefix}{self.position}:{self.hash}"


def parse_anchor(text: str, source: str = "--expect-head") -> Anchor:
    match = _ANCHOR.match(text.strip())
    chain = ""
    if match is not None and match[1] is not None:
        try:
            chain = str(UUID(match[1]))
        except ValueError:
            match = None
    if match is None:
        raise ValueError(
            f"{source}: {text.strip()!r} is not POSITION:HASH or ORGANIZATION/POSITION:HASH "
            "(64 hex digits)"
        )
    return Anchor(int(match[2]), match[3].lower(), "" if chain == _PLATFORM else chain)


def read_anchors(path: Path) -> list[Anchor]:
    """One ``POSITION:HASH`` per line, anything after it ignored; blank and ``#`` lines
    skipped. A file with no anchor at all reads as an empty list: the caller fails the
    check (a truncated anchors file is what a tamperer leaves behind)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise ValueError(f"--anchors: cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ValueError(
            f"--anchors {path}: not UTF-8 text (byte {error.start}): an anchors file holds "
            "POSITION:HASH lines, as --record-head writes them"
        ) from None
    anchors = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        anchors.append(parse_anchor(stripped.split()[0], f"--anchors {path}, line {number}"))
    return anchors


def check(anchors: list[Anchor], watched: dict[int, bytes], head_position: int) -> str | None:
    """The first anchor that no longer holds (in position order), described; else None.

    ``watched`` maps the anchored positions still in the log to their stored hashes.
    """
    for anchor in sorted(anchors):
        if anchor.position == 0:
            stored: bytes | None = GENESIS
        else:
            stored = watched.get(anchor.position)
        if stored is None:
            if anchor.position > head_position:
                return (
                    f"the log ends at position {head_position}, before the anchored position "
                    f"{anchor.position}: events were removed from its end"
                )
            return f"the anchored position {anchor.position} is no longer in the log"
        if stored.hex() != anchor.hash:
            return (
                f"the event at anchored position {anchor.position} carries hash {stored.hex()}, "
                f"not the anchored {anchor.hash}: history up to it was rewritten"
            )
    return None


def record(path: Path, anchor: Anchor) -> None:
    """Appends ``anchor`` with the time it was verified (the file is a trail of heads)."""
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        with path.open("a", encoding="utf-8") as out:
            out.write(f"{anchor}  # verified {stamp}\n")
    except OSError as error:
        raise ValueError(f"--record-head: cannot write {path}: {error.strerror or error}") from None
