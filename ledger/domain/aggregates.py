"""Aggregates: the state each decision needs, rebuilt from the log.

Each aggregate holds just enough state to decide; deciding raises a
``Rejected`` or triggers events. Nothing here touches SQL or a clock: the
service passes ``occurred_at`` in and the events carry it out.

The aggregates live by what they are about: ``catalogue`` (organizations, users,
content), ``purchase``, ``access`` (access and playback) and ``command_key`` (claimed
idempotency keys and refund ids); this module is their one public face.
"""

from __future__ import annotations

from ledger.domain.access import Access, Playback
from ledger.domain.catalogue import Content, Departure, Organization, User
from ledger.domain.command_key import CommandKey
from ledger.domain.purchase import Purchase, Terms, refund_shares

__all__ = [
    "Access",
    "CommandKey",
    "Content",
    "Departure",
    "Organization",
    "Playback",
    "Purchase",
    "Terms",
    "User",
    "refund_shares",
]
