"""Where a command came from, which every event it records carries.

A command's provenance is not part of the command: it is neither in its JSON nor in its
fingerprint, so the same purchase delivered once by the Stripe webhook and again from a
file is still one purchase (the second is a duplicate). It travels with the command
object (``Command.stamped``) to the one place that records events (the service's
decision), which copies it onto each of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ledger.domain.errors import ValidationFailed

SOURCES = ("cli", "api", "http", "stripe")
# the payment processor: its money facts take the business time ``Purchase.effective_time``
# gives them (docs/events.md, "Business time from the payment processor")
PROCESSOR = "stripe"
# what an event recorded before provenance existed reads as (its upcaster sets it)
UNRECORDED = "unknown"
MAX_CORRELATION_ID = 255
# printable, single line: no C0/C1 controls, no DEL, no lone surrogates
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


@dataclass(frozen=True)
class Provenance:
    """``source`` names the entry point; ``correlation_id`` what it was answering (the
    input file and line, the HTTP request id, the Stripe event id), None if nothing."""

    source: str = "api"
    correlation_id: str | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValidationFailed(
                f"source: must be one of {', '.join(SOURCES)}, not {self.source!r}", "source"
            )
        check_correlation_id(self.correlation_id)


def check_correlation_id(value: str | None) -> None:
    """A correlation id is shown and filtered on: printable, on one line, bounded."""
    if value is None:
        return
    if not isinstance(value, str):
        raise ValidationFailed("correlation_id: must be a string", "correlation_id")
    if not value or len(value) > MAX_CORRELATION_ID:
        raise ValidationFailed(
            f"correlation_id: must be 1 to {MAX_CORRELATION_ID} characters long, not {len(value)}",
            "correlation_id",
        )
    bad = _UNPRINTABLE.search(value)
    if bad is not None:
        raise ValidationFailed(
            f"correlation_id: must be printable (U+{ord(bad.group()):04X} at character "
            f"{bad.start() + 1})",
            "correlation_id",
        )


DEFAULT = Provenance()


def line_id(file_name: str, line: int) -> str:
    """The correlation id of an input line, ``file.jsonl:42`` (``-:42`` for stdin); a
    long path keeps its end (the file name and the line), within the bound."""
    suffix = f":{line}"
    name = _UNPRINTABLE.sub("?", file_name) or "-"
    room = MAX_CORRELATION_ID - len(suffix)
    if len(name) > room:
        name = "…" + name[-(room - 1) :]
    return name + suffix
