"""The playback store in memory: the same rules (``decide``) on rows held in memory.

For the decisions' unit tests (``ledger.service.memory``): the facts come from the rows the
memory recorder folded, the accepted heartbeats are kept in a list, and the rows change
as the PostgreSQL store's statements change them (newest ``occurred_at`` wins,
``completed`` stays true, ``last_accessed_at`` never moves back).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger.commands.access import RecordPlayback
from ledger.commands.results import Result
from ledger.domain import clock, ids
from ledger.playback.decide import Facts, Heartbeat, decide, newest
from ledger.playback.store import Explain, Legacy, LogKey
from projections.changes import Update, Upsert
from projections.fold import Fold


@dataclass(frozen=True)
class Record:
    position: int
    heartbeat: Heartbeat
    organization_id: str


def _time(value: Any) -> datetime | None:
    return clock.parse(value) if isinstance(value, str) else value


class MemoryPlayback:
    def __init__(
        self,
        rows: Callable[[], Fold],
        explain: Explain,
        log_key: LogKey,
        legacy: Legacy,
        lock: Any,
    ) -> None:
        self._legacy = legacy
        self._rows = rows
        self._explain = explain
        self._log_key = log_key
        self._lock: threading.RLock = lock
        self.records: list[Record] = []
        self.keys: dict[str, str] = {}

    def record(self, commands: Sequence[RecordPlayback | Heartbeat]) -> list[Result]:
        now = clock.now()
        heartbeats = Heartbeat.each(commands, now)
        with self._lock:
            decided = decide(heartbeats, [self._facts(h) for h in heartbeats])
            positions = iter(range(len(self.records) + 1, len(self.records) + 1 + len(heartbeats)))
            answers: list[Result] = []
            accepted = iter(decided.accepted)
            for result in decided.results:
                if result is None:
                    h, org = next(accepted)
                    record = Record(next(positions), h, org)
                    self.records.append(record)
                    if h.key is not None:
                        self.keys[h.key] = h.fingerprint
                    result = Result("accepted", position=record.position)
                answers.append(result)
            self._project([h for h, _ in decided.accepted])
            return answers

    def forget(self, user_ids: Sequence[str]) -> None:
        """An erasure: the people's heartbeats and the keys they used, as the SQL store's
        erasure deletes them (``ledger.privacy.store``)."""
        gone = set(user_ids)
        with self._lock:
            dropped = [r for r in self.records if r.heartbeat.user_id in gone]
            self.records = [r for r in self.records if r.heartbeat.user_id not in gone]
            for record in dropped:
                if record.heartbeat.key is not None:
                    self.keys.pop(record.heartbeat.key, None)

    def keys_of(self, keys: Collection[str]) -> dict[str, str]:
        """The heartbeats' keys among ``keys``, as ``PlaybackStore.keys_of``."""
        with self._lock:
            return {k: self.keys[k] for k in keys if k in self.keys}

    def check(self, commands: Sequence[RecordPlayback]) -> list[Result | None]:
        """What each heartbeat would get now (``None``: accepted), writing nothing."""
        now = clock.now()
        heartbeats = [Heartbeat.of(c, now) for c in commands]
        with self._lock:
            return decide(heartbeats, [self._facts(h) for h in heartbeats]).results

    def _facts(self, h: Heartbeat) -> Facts:
        fold = self._rows()
        rows = fold.rows
        content = fold.find("content", {"id": h.content_id})
        access = (  # keyed with the organization, as the table (migration 0013)
            rows["content_access"].get((content["organization_id"], h.user_id, h.content_id))
            if content is not None
            else None
        )
        fact = Facts(
            user=None if (h.user_id,) in rows["users"] else self._explain("user", h.user_id),
            content=None if content is not None else self._explain("content", h.content_id),
            organization_id=content["organization_id"] if content is not None else None,
            access_since=_time(access["created_at"]) if access else None,
            access_expires=_time(access["expires_at"]) if access else None,
            seen=any(
                r.heartbeat.identity == h.identity and r.heartbeat.occurred_at == h.occurred_at
                for r in self.records
            )
            or h.identity in self._legacy(h.user_id, h.content_id),
            key_fingerprint=self.keys.get(h.key) if h.key is not None else None,
        )
        if h.key is not None and fact.key_fingerprint is None:
            used = self._log_key(h.key)
            if used is not None:
                fact.key_fingerprint, fact.key_type = used
        return fact

    def _project(self, heartbeats: list[Heartbeat]) -> None:
        fold = self._rows()
        for (user_id, content_id), made in sorted(newest(heartbeats).items()):
            shown, done = made.heartbeat, made.completed
            at = clock.canonical(shown.occurred_at)
            content = fold.find("content", {"id": content_id})
            organization = content["organization_id"] if content is not None else None
            # keyed with the organization, as the table (migration 0026)
            pair = (organization, user_id, content_id)
            row = fold.rows["video_playback"].get(pair)
            values: dict[str, Any] = {
                "id": str(ids.playback_id(user_id, content_id)),
                "user_id": user_id,
                "content_id": content_id,
                "organization_id": organization,
                "position_seconds": shown.command.position_seconds,
                "duration_seconds": shown.command.duration_seconds,
                "completed": done,
            }
            older = row is not None and at < row["updated_at"]
            if row is not None:
                if older:
                    for k in ("position_seconds", "duration_seconds"):
                        values[k] = row[k]
                values["completed"] = row["completed"] or done
            key = ("organization_id", "user_id", "content_id")
            fold.apply([Upsert("video_playback", key, values, at, not older)])
            if row is None:
                fold.rows["video_playback"][pair]["created_at"] = clock.canonical(made.first)
            access = fold.rows["content_access"].get((organization, user_id, content_id))
            if access is not None:
                stamped = max(at, access.get("last_accessed_at") or at)
                touch = max(at, access["updated_at"])
                match = {
                    "organization_id": organization,
                    "user_id": user_id,
                    "content_id": content_id,
                }
                fold.apply([Update("content_access", match, {"last_accessed_at": stamped}, touch)])
