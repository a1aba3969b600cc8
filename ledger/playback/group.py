"""A group of heartbeats as ``playback_record`` reads it (migrations 0020, 0025): one JSON
row a heartbeat, bound once as one parameter, with what the money log said of it once
asked; the first row flagged ``distinct`` when the group needs no walk in order.

Apart from ``ledger.playback.store`` (which sends it and reads the answers) so that each
stays small; the tests build a group here to call the statement in both of its forms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson

from ledger.domain import ids
from ledger.playback import partitions
from ledger.playback.decide import Heartbeat


@dataclass
class Lookups:
    """What the log said, asked once per group: why a user or content is not live, and
    the fingerprint and type of a key the log holds (``None``: none)."""

    why: dict[tuple[str, str], str] = field(default_factory=dict)
    keys: dict[str, tuple[str, str] | None] = field(default_factory=dict)
    legacy: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)


def distinct_group(heartbeats: Sequence[Heartbeat]) -> bool:
    """Whether no two heartbeats of the group share an identity or an idempotency key:
    then none is decided on another's answer, and ``playback_record`` decides each on its
    facts alone, without the walk in order (migration 0025: a fifth of the server's CPU a
    group, run for nothing when the walk holds no heartbeat)."""
    identities = {h.identity for h in heartbeats}
    keys = [h.key for h in heartbeats if h.key is not None]
    return len(identities) == len(heartbeats) and len(set(keys)) == len(keys)


def dumps(rows: list[dict[str, Any]]) -> str:
    """A group's rows as one ``json`` parameter (``json_to_recordset`` in the statement):
    orjson writes UUIDs and aware datetimes as PostgreSQL reads them back."""
    return orjson.dumps(rows).decode()


class GroupEncoder:
    """Groups of one schema's store: a day's partition named once (for ``to_regclass``)."""

    def __init__(self, schema: str) -> None:
        self._schema = schema
        self._parts: dict[date, str] = {}

    def encode(self, heartbeats: Sequence[Heartbeat], lookups: Lookups | None = None) -> str:
        """The group's JSON; the first row flagged ``distinct`` (``distinct_group``)."""
        asked = lookups if lookups is not None else Lookups()
        rows = [self._row(n, h, asked) for n, h in enumerate(heartbeats)]
        if rows and distinct_group(heartbeats):
            rows[0]["distinct"] = True
        return dumps(rows)

    def _row(self, n: int, h: Heartbeat, lookups: Lookups) -> dict[str, Any]:
        """One heartbeat of the group's JSON; what the log said of it, once asked."""
        c = h.command
        day = partitions.day(h.occurred_at)
        part = self._parts.get(day)
        if part is None:
            part = self._parts[day] = ".".join(
                '"' + x.replace('"', '""') + '"' for x in (self._schema, partitions.name(day))
            )
        row: dict[str, Any] = {
            "n": n,
            "user_id": h.user_id,
            "content_id": h.content_id,
            "occurred_at": h.occurred_at,
            "identity": h.identity,
            "playback_id": ids.playback_id(h.user_id, h.content_id),
            "p": c.position_seconds,
            "d": c.duration_seconds,
            "c": h.completed,
            "part": part,
        }
        if h.key is not None:
            row["key"] = h.key
            row["fp"] = h.fingerprint
            row["key_id"] = ids.command_key_id("idempotency_key", h.key)
            if h.key in lookups.keys:
                used = lookups.keys[h.key]
                row["log_asked"] = True
                if used is not None:
                    row["log_fp"], row["log_type"] = used
        if ("user", h.user_id) in lookups.why:
            row["user_asked"] = True
        if ("content", h.content_id) in lookups.why:
            row["content_asked"] = True
        legacy = lookups.legacy.get((h.user_id, h.content_id))
        if legacy is not None:
            row["legacy_asked"] = True
            row["legacy_seen"] = h.identity in legacy
        return row
