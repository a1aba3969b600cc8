"""The heartbeat's rules, pure: what the store read decides what each heartbeat gets.

The PostgreSQL store reads the facts of a whole group in one statement and the memory
store reads them from its rows; both hand them here, so the rules are written once. A
group is decided in order, each heartbeat on what the ones before it left (a heartbeat
repeated inside one group is a ``duplicate``, as it would be alone).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

import orjson

from ledger.commands.access import RecordPlayback
from ledger.commands.results import DUPLICATE, Result
from ledger.domain import clock
from ledger.domain.access import check_playable
from ledger.domain.errors import Conflict, InvalidState, NotFound, Rejected

# ``Command.payload`` of a heartbeat, written out: its fields but ``occurred_at`` and
# ``idempotency_key``, none of them optional, the content's UUID as text. Its digest then
# needs neither pydantic's dump nor a conversion per value (a sixth of the caller's CPU
# went to ``Heartbeat.of``, docs/performance.md); tests/unit/test_heartbeat_identity.py
# holds it byte-identical to the command's own fingerprint, and a field added to the
# command stops the import here rather than changing what a redelivery is.
_FIELDS = {"type", "user_id", "content_id", "position_seconds", "duration_seconds"}
if set(RecordPlayback.model_fields) != _FIELDS | {"occurred_at", "idempotency_key"}:
    raise RuntimeError("RecordPlayback's fields changed: update decide._fingerprint")


def _fingerprint(command: RecordPlayback, content_id: str) -> str:
    """``command.fingerprint()``, the same bytes hashed, without pydantic's dump (the keys
    written in sorted order: what ``OPT_SORT_KEYS`` would make of them)."""
    payload = {
        "content_id": content_id,
        "duration_seconds": command.duration_seconds,
        "position_seconds": command.position_seconds,
        "type": command.type,
        "user_id": command.user_id,
    }
    return hashlib.sha256(orjson.dumps(payload)).hexdigest()


@functools.lru_cache(maxsize=4096)
def _text(content_id: UUID) -> str:
    """A content id as text, remembered for the videos being watched now: ``UUID.__str__``
    formats it in Python, 2 µs of a heartbeat's 7 in its caller; the cache's hit, 0.3."""
    return str(content_id)


@dataclass(frozen=True)
class Heartbeat:
    """One heartbeat as the store keeps it: the command at its moment."""

    command: RecordPlayback
    occurred_at: datetime
    identity: str  # the payload at its moment: what a redelivery repeats
    fingerprint: str  # the idempotency key's fingerprint
    content_id: str  # the command's, as text (kept: a group asks for it several times)

    @classmethod
    def of(cls, command: RecordPlayback, now: str) -> Heartbeat:
        at = command.occurred_at
        if at is None:
            return cls._at(command, now, clock.parse(now))
        moment = at.astimezone(UTC)  # what parsing its canonical text gives back
        return cls._at(command, moment.isoformat(timespec="microseconds"), moment)

    @classmethod
    def now(cls, command: RecordPlayback) -> Heartbeat:
        """The heartbeat as of this moment (its ``occurred_at``, else now: the clock is
        read only then)."""
        if command.occurred_at is not None:
            return cls.of(command, "")
        moment = datetime.now(UTC)
        return cls._at(command, moment.isoformat(timespec="microseconds"), moment)

    def moved(self, moment: datetime) -> Heartbeat:
        """The same command identified at ``moment``, as ``of`` would with it as its
        ``occurred_at``: on the distributed store a keyed heartbeat takes the moment its
        key's claim holds, so every delivery of the key is one heartbeat
        (``ledger.playback.keys.adopt``)."""
        at = moment.astimezone(UTC)
        return self._at(self.command, at.isoformat(timespec="microseconds"), at)

    @classmethod
    def _at(cls, command: RecordPlayback, occurred: str, moment: datetime) -> Heartbeat:
        """``occurred``: the moment's canonical text (``clock.canonical``), which its
        identity hashes; each made once, neither parsed back from the other."""
        given = command.content_id
        content_id = _text(given) if given.__class__ is UUID else str(given)
        # a heartbeat derives nothing, so its canonical fingerprint is the payload's digest
        fingerprint = _fingerprint(command, content_id)
        return cls(
            command, moment, command.identity(occurred, fingerprint), fingerprint, content_id
        )

    @classmethod
    def each(cls, items: Sequence[RecordPlayback | Heartbeat], now: str) -> list[Heartbeat]:
        """The heartbeats, those given as commands identified at ``now`` (a lane's
        callers identify theirs before they queue, ``ledger.service.lanes``)."""
        return [i if isinstance(i, Heartbeat) else cls.of(i, now) for i in items]

    def size(self) -> int:
        """About its command's JSON bytes, for ``LEDGER_GROUP_MAX_BYTES`` (the fixed
        fields' names and values take under 200; serializing it to count would cost
        its caller as much as its digest)."""
        return 200 + len(self.command.user_id) + len(self.command.idempotency_key or "")

    @property
    def user_id(self) -> str:
        return self.command.user_id

    @property
    def key(self) -> str | None:
        return self.command.idempotency_key

    @property
    def completed(self) -> bool:
        """This heartbeat alone reaches 95 % of the video."""
        c = self.command
        return c.position_seconds * 100 >= c.duration_seconds * 95


@dataclass
class Facts:
    """What the store holds about one heartbeat, read before deciding."""

    user: str | None  # None: live; else why not ("is not registered", "was deleted")
    content: str | None  # the same for the content
    organization_id: str | None = None
    access_since: datetime | None = None  # the present access row's creation, if any
    access_expires: datetime | None = None
    horizon: datetime | None = None  # before it this (user, content) is compacted
    seen: bool = False  # this very heartbeat is stored already
    key_fingerprint: str | None = None  # the idempotency key's, if used before
    key_type: str = "playback.progress"


@dataclass
class Decided:
    """The group's answers (``None``: to be written) and the heartbeats to write."""

    results: list[Result | None] = field(default_factory=list)
    accepted: list[tuple[Heartbeat, str]] = field(default_factory=list)  # with organization


def decide(heartbeats: Sequence[Heartbeat], facts: Sequence[Facts]) -> Decided:
    decided = Decided()
    identities: set[tuple[str, datetime]] = set()
    keys: dict[str, str] = {}
    for heartbeat, fact in zip(heartbeats, facts, strict=True):
        try:
            _check(heartbeat, fact, identities, keys)
        except _Duplicate:
            decided.results.append(DUPLICATE)
            continue
        except Rejected as error:
            decided.results.append(Result("rejected", error=error))
            continue
        assert fact.organization_id is not None
        decided.results.append(None)
        decided.accepted.append((heartbeat, fact.organization_id))
        identities.add((heartbeat.identity, heartbeat.occurred_at))
        if heartbeat.key is not None:
            keys[heartbeat.key] = heartbeat.fingerprint
    return decided


class _Duplicate(Exception):
    pass


def _check(
    heartbeat: Heartbeat,
    fact: Facts,
    identities: set[tuple[str, datetime]],
    keys: dict[str, str],
) -> None:
    """The checks in the order the log's handler made them (docs/events.md)."""
    key = heartbeat.key
    if key is not None:
        used = keys.get(key, fact.key_fingerprint)
        if used is not None:
            if used != heartbeat.fingerprint:
                raise key_conflict(heartbeat, fact.key_type)
            raise _Duplicate
    if fact.user is not None:
        raise not_found(heartbeat, "user", fact.user)
    if fact.content is not None:
        raise not_found(heartbeat, "content", fact.content)
    if fact.seen or (heartbeat.identity, heartbeat.occurred_at) in identities:
        raise _Duplicate  # recorded already: a replay is a duplicate, access or not
    at = heartbeat.occurred_at
    if fact.horizon is not None and at < fact.horizon:
        raise before_horizon(heartbeat, fact.horizon)
    check_playable(
        heartbeat.user_id,
        heartbeat.content_id,
        at,
        fact.access_since is not None,
        fact.access_since,
        fact.access_expires,
    )


def key_conflict(heartbeat: Heartbeat, key_type: str) -> Conflict:
    """The heartbeat's key was used by a different command (``key_type``'s)."""
    return Conflict(
        f"idempotency_key {heartbeat.key!r} was already used by a different {key_type} command",
        "idempotency_key",
    )


def not_found(heartbeat: Heartbeat, kind: str, why: str) -> NotFound:
    """The heartbeat's user or content (``kind``) is not live, and ``why``."""
    if kind == "user":
        return NotFound(f"user {heartbeat.user_id!r} {why}", "user_id")
    return NotFound(f"content {heartbeat.content_id} {why}", "content_id")


def before_horizon(heartbeat: Heartbeat, horizon: datetime) -> InvalidState:
    """The heartbeat is dated before its (user, content)'s compacted horizon."""
    return InvalidState(
        f"heartbeat dated {clock.canonical(heartbeat.occurred_at)}, before the playback "
        f"store's horizon for this user and content ({clock.canonical(horizon)}): what came "
        "before it is compacted, so it is not recorded",
        "occurred_at",
    )


@dataclass(frozen=True)
class Shown:
    """What a group's heartbeats of one (user, content) make of its row."""

    heartbeat: Heartbeat  # the newest by occurred_at (the later one on a tie)
    completed: bool  # any of them reached 95 %
    first: datetime  # the first one's time: a new row's created_at


def newest(heartbeats: Sequence[Heartbeat]) -> dict[tuple[str, str], Shown]:
    """Per (user, content), in the order given."""
    rows: dict[tuple[str, str], Shown] = {}
    for h in heartbeats:
        pair = (h.user_id, h.content_id)
        before = rows.get(pair)
        if before is None:
            rows[pair] = Shown(h, h.completed, h.occurred_at)
        else:
            shown = h if h.occurred_at >= before.heartbeat.occurred_at else before.heartbeat
            rows[pair] = Shown(shown, before.completed or h.completed, before.first)
    return rows
