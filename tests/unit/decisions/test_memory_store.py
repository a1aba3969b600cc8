"""The in-memory store keeps the promises decisions rest on, as ``LedgerRecorder`` does."""

from __future__ import annotations

from uuid import uuid4

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from ledger.domain import ids
from ledger.service import Ledger
from ledger.service.memory import MemoryRecorder
from tests.support import CONTENT, grant, play, t
from tests.unit.decisions.conftest import answers


def stored(originator: object, version: int) -> StoredEvent:
    return StoredEvent(originator_id=originator, originator_version=version, topic="T", state=b"{}")


def test_an_append_whose_read_moved_on_fails_and_writes_nothing() -> None:
    recorder = MemoryRecorder()
    read, written = uuid4(), uuid4()
    recorder.insert_events([stored(read, 1)])
    with pytest.raises(IntegrityError):  # read as absent, present since
        recorder.insert_events([stored(written, 1)], read_versions={read: 0})
    recorder.insert_events([stored(read, 2)])
    with pytest.raises(IntegrityError):  # read at version 1, at 2 since
        recorder.insert_events([stored(written, 1)], read_versions={read: 1})
    assert recorder.select_events(written) == []
    assert recorder.insert_events([stored(written, 1)], read_versions={read: 2}) == [3]


def test_events_after_gives_each_aggregates_newer_events_in_order() -> None:
    recorder = MemoryRecorder()
    one, two = uuid4(), uuid4()
    recorder.insert_events([stored(one, 1), stored(one, 2), stored(two, 1)])
    found = recorder.events_after({one: 1, two: 0, uuid4(): 0})
    assert [(e.originator_id, e.originator_version) for e in found] == [(one, 2), (two, 1)]


def test_what_a_rolled_back_batch_changed_in_the_cache_is_forgotten(app: Ledger) -> None:
    """The cache lends its aggregates to a speculative decision: a batch that revoked a
    cached access and was then rolled back must leave the access as the log has it."""
    answers(app, grant("bob", at=t(2)))
    # the log names bob by his subject (docs/privacy.md), and so does the access's id
    access_id = ids.access_id(app.subjects.subjects_of(["bob"])["bob"], CONTENT)
    assert app.aggregates.cached([access_id])[access_id] is not None
    revoke = {"type": "access.revoke", "user_id": "bob", "content_id": CONTENT, "occurred_at": t(3)}
    assert answers(app, revoke, play("nobody", 1), atomic=True) == [
        "rolled_back",
        "not_found:user_id",
    ]
    assert answers(app, play("bob", 10, at=t(4))) == ["accepted"]
