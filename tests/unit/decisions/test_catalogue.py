"""The catalogue's rules (docs/events.md, "Commands and their effects"), in memory."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.service import Ledger
from ledger.service.memory import MemoryRecorder
from tests.support import (
    CONTENT,
    CONTENT_2,
    ORG,
    ORG_2,
    complete,
    grant,
    org,
    play,
    publish,
    user,
)
from tests.unit.decisions.conftest import answers, rows, topics


def test_an_organization_registered_again_is_a_duplicate_and_with_another_name_a_conflict(
    app: Ledger,
) -> None:
    assert answers(app, org(), org(name="Other")) == ["duplicate", "conflict:organization_id"]


def test_a_user_registered_again_is_a_duplicate(app: Ledger) -> None:
    assert answers(app, user("alice")) == ["duplicate"]


def test_a_deleted_user_id_cannot_be_registered_again(app: Ledger) -> None:
    deleted = {"type": "user.delete", "user_id": "bob"}
    assert answers(app, deleted, user("bob")) == ["accepted", "invalid_state:user_id"]


def test_deleting_an_unknown_user_is_not_found_and_deleting_twice_a_duplicate(app: Ledger) -> None:
    assert answers(app, {"type": "user.delete", "user_id": "nobody"}) == ["not_found:user_id"]
    twice = [{"type": "user.delete", "user_id": "bob"}] * 2
    assert answers(app, *twice) == ["accepted", "duplicate"]


def test_a_deleted_users_rows_leave_the_tables_and_the_log_keeps_them(app: Ledger) -> None:
    answers(app, complete("pi_1"), play("alice", 10))
    before = len(topics(app))
    assert answers(app, {"type": "user.delete", "user_id": "alice"}) == ["accepted"]
    for table in ("purchases", "content_access", "video_playback"):
        assert rows(app, table) == []
    assert [r["id"] for r in rows(app, "users")] == ["creator", "bob"]
    assert len(topics(app)) == before + 1


def test_content_published_again_is_a_duplicate_and_with_other_details_a_conflict(
    app: Ledger,
) -> None:
    assert answers(app, publish(), publish(title="Another")) == ["duplicate", "conflict:content_id"]


def test_content_needs_a_registered_organization_and_a_live_creator(app: Ledger) -> None:
    assert answers(app, publish(CONTENT_2, organization_id=ORG_2)) == ["not_found:organization_id"]
    assert answers(app, publish(CONTENT_2, creator="nobody")) == ["not_found:creator_id"]
    answers(app, {"type": "user.delete", "user_id": "bob"})
    assert answers(app, publish(CONTENT_2, creator="bob")) == ["not_found:creator_id"]


def test_deleted_content_cannot_be_published_again(app: Ledger) -> None:
    deleted = {"type": "content.delete", "content_id": CONTENT}
    assert answers(app, deleted, publish()) == ["accepted", "invalid_state:content_id"]


def test_deleting_content_unknown_or_twice(app: Ledger) -> None:
    assert answers(app, {"type": "content.delete", "content_id": CONTENT_2}) == [
        "not_found:content_id"
    ]
    twice = [{"type": "content.delete", "content_id": CONTENT}] * 2
    assert answers(app, *twice) == ["accepted", "duplicate"]


def test_a_purchase_row_restricts_the_deletion_of_its_content(app: Ledger) -> None:
    deleted = {"type": "content.delete", "content_id": CONTENT}
    assert answers(app, complete("pi_1"), deleted) == ["accepted", "invalid_state:content_id"]
    assert [r["id"] for r in rows(app, "content")] == [CONTENT]


def test_a_purchase_earlier_in_the_same_atomic_batch_restricts_the_deletion(app: Ledger) -> None:
    deleted = {"type": "content.delete", "content_id": CONTENT}
    assert answers(app, complete("pi_1"), deleted, atomic=True) == [
        "rolled_back",
        "invalid_state:content_id",
    ]
    assert rows(app, "purchases") == []


def test_once_the_customer_is_deleted_their_purchase_no_longer_restricts(app: Ledger) -> None:
    answers(app, complete("pi_1"), {"type": "user.delete", "user_id": "alice"})
    assert answers(app, {"type": "content.delete", "content_id": CONTENT}) == ["accepted"]


def test_a_customer_deleted_earlier_in_the_same_batch_no_longer_restricts(app: Ledger) -> None:
    """As one by one: the user's deletion takes their purchase row, so the content's
    deletion that follows in the batch is accepted (it was once refused, the batch's
    decision reading the purchase rows of before the batch)."""
    answers(app, complete("pi_1"), complete("pi_2", customer="bob"))
    batch = [
        {"type": "user.delete", "user_id": "alice"},
        {"type": "user.delete", "user_id": "bob"},
        {"type": "content.delete", "content_id": CONTENT},
    ]
    assert answers(app, *batch, atomic=True) == ["accepted"] * 3
    assert rows(app, "content") == [] and rows(app, "purchases") == []


def test_a_purchase_by_another_customer_still_restricts_after_a_deletion(app: Ledger) -> None:
    answers(app, complete("pi_1"))
    batch = [
        {"type": "user.delete", "user_id": "alice"},
        complete("pi_2", customer="bob"),
        {"type": "content.delete", "content_id": CONTENT},
    ]
    assert answers(app, *batch, atomic=True) == [
        "rolled_back",
        "rolled_back",
        "invalid_state:content_id",
    ]


def test_the_registered_organization_is_a_row(app: Ledger) -> None:
    assert [(r["id"], r["name"]) for r in rows(app, "organizations")] == [(ORG, "Northwind")]


def test_an_atomic_batch_asks_for_its_peoples_subjects_once(
    app: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's people are looked up together, and those without a subject are not asked
    again command by command (a batch of 17,000 registrations asked 17,000 times)."""
    store = app.recorder
    assert isinstance(store, MemoryRecorder)
    asked: list[list[str]] = []
    looked_up = store.subjects_of

    def counted(user_ids: Any) -> dict[str, str]:
        asked.append(sorted(user_ids))
        return looked_up(user_ids)

    monkeypatch.setattr(store, "subjects_of", counted)
    people = [f"new-{n}" for n in range(50)]
    batch = [user(p) for p in people] + [grant(p) for p in people] + [grant("alice")]
    assert answers(app, *batch, atomic=True) == ["accepted"] * len(batch)
    assert asked == [sorted(people)]  # alice's subject is cached since the catalogue
    # and they are each their own person: a subject of their own, found again by id
    subjects = app.subjects.subjects_of(people)
    assert len(set(subjects.values())) == len(people)
