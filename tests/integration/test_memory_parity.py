"""The in-memory recorder that the decision tests run on behaves as ``LedgerRecorder`` on
PostgreSQL: the same commands, one by one or in an atomic batch, get the same answers
and append the same events (``ledger.service.memory``, ``tests/unit/decisions``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from ledger import api
from ledger.config import Settings
from ledger.service import Ledger
from ledger.service.memory import memory_ledger
from tests.support import (
    CONTENT,
    CONTENT_2,
    catalogue,
    complete,
    grant,
    play,
    publish,
    refund,
    start,
    t,
    user,
)


def delete_user(user_id: str, day: int) -> dict[str, Any]:
    return {"type": "user.delete", "user_id": user_id, "occurred_at": t(day)}


def delete_content(content_id: str, day: int) -> dict[str, Any]:
    return {"type": "content.delete", "content_id": content_id, "occurred_at": t(day)}


COMMANDS: list[dict[str, Any]] = [
    complete("pi_1", customer="alice"),
    complete("pi_2", customer="bob", content_id=CONTENT_2),
    start("pi_3", customer="bob"),
    refund("pi_1", "re_1", 500),
    delete_user("alice", 5),
    delete_user("bob", 6),
    delete_content(CONTENT, 7),
    delete_content(CONTENT_2, 8),
    publish(CONTENT_2, title="Another"),
    grant("bob"),
    play("alice", 30),
    user("carol"),
    user("alice"),
]

Answer = tuple[str, str | None, str | None, str | None]


def answers(app: Ledger, commands: list[dict[str, Any]], atomic: bool) -> list[Answer]:
    lines = [json.dumps(c) for c in commands]
    return [
        (r.status, *((r.error.code, r.error.field, r.error.message) if r.error else (None,) * 3))
        for _, r in api.append_lines(app, lines, atomic=atomic)
    ]


def events(app: Ledger) -> list[tuple[str, str, int, dict[str, Any]]]:
    """Every event in log order, without the moment it was made (the clock's, not the
    command's: ``occurred_at`` stays)."""
    found = []
    # people are named by random subjects (docs/privacy.md), and their aggregates' ids,
    # fingerprints and identities are computed from them: each such value is named by
    # where it first appears, so two ledgers compare by the structure of their logs
    first: dict[str, str] = {}

    def named(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: named(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [named(v) for v in value]
        if isinstance(value, str) and (
            value.startswith("subject:") or key in ("fingerprint", "identity")
        ):
            return first.setdefault(value, f"#{len(first)}")
        return value

    for n in app.recorder.select_notifications(start=1, limit=100_000):
        state = json.loads(n.state)
        state.pop("timestamp", None)
        origin = first.setdefault(str(n.originator_id), f"#{len(first)}")
        found.append((n.topic, origin, n.originator_version, named(state)))
    return found


def run(app: Ledger, one_by_one: list[dict[str, Any]], batch: list[dict[str, Any]]) -> Any:
    try:
        return (
            answers(app, catalogue() + one_by_one, atomic=False),
            answers(app, batch, atomic=True),
            events(app),
        )
    finally:
        app.close()


@given(
    one_by_one=st.lists(st.sampled_from(COMMANDS), max_size=8),
    batch=st.lists(st.sampled_from(COMMANDS), max_size=6),
)
# a user deleted earlier in the batch takes their purchases with them: the content they
# bought may then be deleted (the group commit's has_purchase_rows once read the rows of
# before the batch, and refused it)
@example(one_by_one=[COMMANDS[0]], batch=[delete_user("alice", 5), delete_content(CONTENT, 7)])
def test_the_memory_recorder_answers_and_appends_as_postgresql(
    fresh: Callable[[], Settings], one_by_one: list[dict[str, Any]], batch: list[dict[str, Any]]
) -> None:
    on_postgresql = run(api.open_ledger(fresh()), one_by_one, batch)
    in_memory = run(memory_ledger(), one_by_one, batch)
    assert in_memory == on_postgresql


def test_a_batch_answers_as_one_by_one_when_a_customer_is_deleted_before_the_content(
    fresh: Callable[[], Settings],
) -> None:
    """On PostgreSQL: a user's deletion earlier in an atomic batch takes their purchases,
    so the content's deletion after it is accepted, as the same commands one by one."""
    commands = [delete_user("alice", 5), delete_content(CONTENT, 7)]
    found = {}
    for atomic in (False, True):
        app = api.open_ledger(fresh())
        try:
            answers(app, [*catalogue(), COMMANDS[0]], atomic=False)
            found[atomic] = [a[0] for a in answers(app, commands, atomic=atomic)]
        finally:
            app.close()
    assert found == {False: ["accepted", "accepted"], True: ["accepted", "accepted"]}
