"""The write side in memory: the library's POPO persistence, with what the ledger's
PostgreSQL recorder adds.

``MemoryRecorder`` keeps the two promises of ``ledger.log.recorder.LedgerRecorder`` that
decisions rest on: an append fails with ``IntegrityError`` when an aggregate the
decision only read has moved on (absent ones included), and the append's row changes
are applied with it (to rows in memory, ``projections.fold``), so the read a decision
makes (``has_purchase_rows``) sees them. The decisions are then the same code as in
production, and their unit tests run in milliseconds without a database.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, IntegrityError, StoredEvent
from eventsourcing.popo import POPOApplicationRecorder, POPOFactory

from ledger.config import Settings
from ledger.log.chains import Route
from ledger.privacy.subjects import SubjectAdded
from ledger.service import Ledger
from projections.changes import RowChange
from projections.fold import Fold

SETTINGS = Settings(url="", schema="memory")
"""What ``Ledger.settings`` says of a ledger in memory: no database."""


class MemoryRecorder(POPOApplicationRecorder):
    def __init__(self) -> None:
        super().__init__()
        self.rows = Fold()
        self.subjects: dict[str, str] = {}  # ``ledger_subjects``: id to subject

    def _assert_uniqueness(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        super()._assert_uniqueness(stored_events)
        read_versions: Mapping[UUID, int] = kwargs.get("read_versions") or {}
        for aggregate_id, version in read_versions.items():
            if self._version(aggregate_id) != version:
                raise IntegrityError(f"ledger: aggregate {aggregate_id} moved on since it was read")
        for change in kwargs.get("subject_changes") or ():
            if isinstance(change, SubjectAdded) and change.user_id in self.subjects:
                raise IntegrityError(f"ledger: {change.user_id!r} has a subject already")

    def _update_table(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        notification_ids = super()._update_table(stored_events)
        row_changes: Sequence[RowChange] = kwargs.get("row_changes") or ()
        self.rows.apply(row_changes)
        for change in kwargs.get("subject_changes") or ():
            if isinstance(change, SubjectAdded):
                self.subjects[change.user_id] = change.subject
            else:
                self.subjects = {u: s for u, s in self.subjects.items() if s != change.subject}
        return notification_ids

    def _version(self, aggregate_id: UUID) -> int:
        return max(self._stored_events_index.get(str(aggregate_id), {0: 0}), default=0)

    def events_after(
        self, versions: Mapping[UUID, int], route: Route | None = None
    ) -> list[StoredEvent]:
        with self._database_lock:
            return [
                stored
                for aggregate_id, version in versions.items()
                for stored in self.select_events(aggregate_id, gt=version)
            ]

    def subjects_of(self, user_ids: Collection[str]) -> dict[str, str]:
        with self._database_lock:
            return {u: self.subjects[u] for u in user_ids if u in self.subjects}

    def users_of(self, subjects: Collection[str]) -> dict[str, str]:
        wanted = set(subjects)
        with self._database_lock:
            return {s: u for u, s in self.subjects.items() if s in wanted}

    def has_purchase_rows(
        self, content_id: str, organization_id: str, excluding: Sequence[str] = ()
    ) -> bool:
        with self._database_lock:
            purchases = self.rows.rows["purchases"].values()
            return any(
                row.get("content_id") == content_id
                and str(row.get("organization_id")) == organization_id
                and row.get("customer_id") not in excluding
                for row in purchases
            )


class MemoryFactory(POPOFactory):
    def application_recorder(self) -> ApplicationRecorder:
        return MemoryRecorder()


def environment() -> dict[str, str]:
    return {
        "PERSISTENCE_MODULE": f"{MemoryFactory.__module__}:{MemoryFactory.__qualname__}",
        "AGGREGATE_CACHE_MAXSIZE": "",
        "IS_SNAPSHOTTING_ENABLED": "no",
    }


def memory_ledger(*, per_organization: bool = False) -> Ledger:
    """A ledger whose log and tables live in this process, and die with it;
    ``per_organization``: as on a layout split by organization (a user's deletion in
    parts, ``ledger.service.departures``)."""
    return Ledger(SETTINGS, env=environment(), per_organization=per_organization)
