"""Subjects: the random pseudonyms the log names people by (docs/privacy.md).

A person's id (``user_id``, ``customer_id``, ``creator_id`` of a command) never reaches
the log: the service swaps it for the person's subject, ``subject:`` and a random UUID
drawn when they register, before it decides. So every event, every fingerprint, every
aggregate id (``ids.user_id(subject)``, ``ids.access_id(subject, content)``) is computed
from the subject, never from the id, and holds nothing anyone could compute from the id.
The one place that ties the two is ``ledger_subjects`` (migration 0012), beside the log:
``user.erase`` deletes the person's row, and from then on nothing in the database leads
from their id to their events.

The projected tables keep the reviewed schema (``user_id TEXT``): their rows are filled
at projection time, a subject in a person's column turned back into the id by
``resolve``. A subject with no row (an erased person) names no one: the changes that
would make a row of theirs are dropped, as the erasure deleted them, and a content's
``creator_id`` is null, as ``ON DELETE SET NULL`` left it.

Events written before subjects name people by their id, in the clear: their values do
not start with ``subject:`` and pass through unchanged (docs/privacy.md, "Older events").
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from threading import Lock
from typing import Protocol
from uuid import uuid4

from ledger.domain import ids
from projections.changes import Delete, RowChange, Update, Upsert

PREFIX = "subject:"

# the command fields that hold a person's id (swapped for the subject before deciding)
PERSON_FIELDS = ("user_id", "customer_id", "creator_id")

# the projected columns that hold a person (by table: ``users.id`` is one)
_COLUMNS = frozenset(("user_id", "customer_id", "creator_id"))
_NULLABLE = frozenset(("creator_id",))  # ON DELETE SET NULL: the row stays, unnamed


def mint() -> str:
    """A new subject: random, so nothing about the person can compute it."""
    return f"{PREFIX}{uuid4()}"


def is_subject(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


@dataclass(frozen=True, slots=True)
class SubjectAdded:
    """A person registered: their row of ``ledger_subjects``, written with their events."""

    user_id: str
    subject: str


@dataclass(frozen=True, slots=True)
class SubjectErased:
    """A person erased: their row of ``ledger_subjects`` deleted with their events, and
    what the playback store keeps of them, by ``user_id`` (the store names people by id).
    A person registered before subjects is erased by their id: ``subject`` is the id, which
    has no row, and their records in the store go all the same."""

    subject: str
    user_id: str


SubjectChange = SubjectAdded | SubjectErased


class SubjectStore(Protocol):
    """What the service reads of ``ledger_subjects`` (``LedgerRecorder``, ``MemoryRecorder``)."""

    def subjects_of(self, user_ids: Collection[str]) -> dict[str, str]:
        """The subject of each of these ids that has one."""
        ...

    def users_of(self, subjects: Collection[str]) -> dict[str, str]:
        """The id of each of these subjects that has one."""
        ...


class Subjects:
    """The service's view of ``ledger_subjects``: both directions, cached for the
    people it has met (a subject never changes owner; an erased one is forgotten here,
    and in another process its aggregate says it was erased)."""

    MAX = 1 << 18

    def __init__(self, store: SubjectStore) -> None:
        self._store = store
        self._subject: dict[str, str] = {}
        self._user: dict[str, str] = {}
        self._lock = Lock()

    def subjects_of(self, user_ids: Collection[str]) -> dict[str, str]:
        with self._lock:
            found = {u: self._subject[u] for u in user_ids if u in self._subject}
        missing = [u for u in user_ids if u not in found]
        if missing:
            fetched = self._store.subjects_of(missing)
            self.remember(fetched.items())
            found.update(fetched)
        return found

    def users_of(self, subjects: Collection[str]) -> dict[str, str]:
        with self._lock:
            found = {s: self._user[s] for s in subjects if s in self._user}
        missing = [s for s in subjects if s not in found]
        if missing:
            fetched = self._store.users_of(missing)
            self.remember((u, s) for s, u in fetched.items())
            found.update(fetched)
        return found

    def remember(self, pairs: Iterable[tuple[str, str]]) -> None:
        with self._lock:
            if len(self._subject) > self.MAX:
                self._subject.clear()
                self._user.clear()
            for user_id, subject in pairs:
                self._subject[user_id] = subject
                self._user[subject] = user_id

    def forget(self, subjects: Iterable[str]) -> None:
        with self._lock:
            for subject in subjects:
                user_id = self._user.pop(subject, None)
                if user_id is not None and self._subject.get(user_id) == subject:
                    del self._subject[user_id]


def subjects_in(changes: Sequence[RowChange]) -> set[str]:
    """The subjects the changes name in a person's column."""
    found: set[str] = set()
    for change in changes:
        for _column, value in _people(change):
            if isinstance(value, str) and value.startswith(PREFIX):
                found.add(value)
    return found


def _people(change: RowChange) -> Iterable[tuple[str, object]]:
    if isinstance(change, Upsert):
        parts: tuple[Mapping[str, object], ...] = (change.values,)
    elif isinstance(change, Update):
        parts = (change.match, change.values)
    else:
        parts = (change.match,)
    for part in parts:
        for column, value in part.items():
            if column in _COLUMNS or (column == "id" and change.table == "users"):
                yield column, value


def resolve(changes: Sequence[RowChange], names: Mapping[str, str]) -> list[RowChange]:
    """The changes with each subject in a person's column turned into the person's id
    (``names``: subject to id); a change naming a subject with no id (erased) is dropped,
    except a content's ``creator_id``, which becomes null."""
    resolved: list[RowChange] = []
    for change in changes:
        named = [(c, v) for c, v in _people(change) if is_subject(v)]
        if not named:
            resolved.append(change)
            continue
        result = _resolved(change, names)
        if result is not None:
            resolved.append(result)
    return resolved


def _swap(
    part: Mapping[str, object], names: Mapping[str, str], table: str, nullable: bool
) -> dict[str, object] | None:
    out: dict[str, object] = {}
    for column, value in part.items():
        person = column in _COLUMNS or (column == "id" and table == "users")
        if person and is_subject(value):
            name = names.get(value)  # type: ignore[call-overload]
            if name is None and not (nullable and column in _NULLABLE):
                return None
            out[column] = name
        else:
            out[column] = value
    return out


# the tables whose row id is derived from the person and the content: derived again from
# the person's id, so a row's id is what it was before subjects, the same in every ledger
# (the row names the person anyway, and goes with them)
_ROW_IDS = {"content_access": ids.access_id, "video_playback": ids.playback_id}


def _resolved(change: RowChange, names: Mapping[str, str]) -> RowChange | None:
    if isinstance(change, Upsert):
        values = _swap(change.values, names, change.table, nullable=True)
        if values is None:
            return None
        derive = _ROW_IDS.get(change.table)
        if derive is not None and "id" in values:
            values["id"] = str(derive(str(values["user_id"]), str(values["content_id"])))
        return replace(change, values=values)
    if isinstance(change, Update):
        match = _swap(change.match, names, change.table, nullable=False)
        values = _swap(change.values, names, change.table, nullable=True)
        if match is None or values is None:
            return None
        return replace(change, match=match, values=values)
    match = _swap(change.match, names, change.table, nullable=False)
    return None if match is None else Delete(change.table, match)
