"""The playback store decides a group in SQL (``ledger.playback.statements``); the pure
``decide`` is its specification. For any state (access windows that begin late or expire,
users not registered or deleted, heartbeats and keys stored before, a key the money log
holds, a compacted horizon) and any group (the same heartbeat twice, one key on different
heartbeats, heartbeats before the horizon), the statement's answers are ``decide``'s on the
same facts, and the memory store's on the same history."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from ledger import api
from ledger.commands.access import RecordPlayback
from ledger.commands.parsing import parse_command
from ledger.commands.results import Result
from ledger.config import Settings
from ledger.domain import clock
from ledger.playback.decide import Heartbeat
from ledger.playback.group import distinct_group
from ledger.service.memory import memory_ledger
from tests.support import append, catalogue, grant, play, t, user

USERS = ["alice", "bob", "carol", "nobody"]  # carol is deleted; nobody never registered
KEYS = [None, None, "A", "B", "M"]  # "M" is a money command's key, in the log


def heartbeats() -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda who, day, hour, position, key: {
            **play(who, position, at=t(day, hour)),
            **({"idempotency_key": key} if key is not None else {}),
        },
        st.sampled_from([*USERS, "alice", "bob"]),  # mostly the ones who may play
        st.integers(min_value=3, max_value=8),
        st.sampled_from([0, 12]),
        st.sampled_from([10, 96]),  # 96 of 100: completed
        st.sampled_from(KEYS),
    )


@st.composite
def groups(draw: st.DrawFn, before: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Heartbeats, some of them repeating one before them or one of the history."""
    group: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        pool = before + group
        if pool and draw(st.booleans()):
            group.append(draw(st.sampled_from(pool)))
        else:
            group.append(draw(heartbeats()))
    return group


def setup(since: int, until: int | None) -> list[dict[str, Any]]:
    access = grant("alice", at=t(since), expires=t(until) if until is not None else None)
    return [
        *catalogue(),
        user("carol"),
        {"type": "user.delete", "user_id": "carol", "occurred_at": t(1, 10)},
        access,
        {**grant("bob", at=t(1, 11)), "idempotency_key": "M"},
        play("bob", 5, at=t(3, 6)),  # a compaction leaves bob a horizon
    ]


def shown(result: Result | None) -> dict[str, Any]:
    """An answer without its position (``check`` writes nothing, so it has none)."""
    if result is None:
        return {"status": "accepted"}
    answer = result.as_dict()
    answer.pop("position", None)
    return answer


def commands(lines: list[dict[str, Any]]) -> list[RecordPlayback]:
    parsed = [parse_command(json.dumps(line)) for line in lines]
    return [c for c in parsed if isinstance(c, RecordPlayback)]


@given(
    window=st.tuples(st.integers(min_value=2, max_value=5), st.none() | st.integers(6, 8)),
    history=st.lists(heartbeats(), max_size=6),
    horizon=st.none() | st.integers(min_value=4, max_value=7),
    data=st.data(),
)
def test_the_statement_decides_as_decide_and_the_memory_store(
    fresh: Callable[[], Settings],
    window: tuple[int, int | None],
    history: list[dict[str, Any]],
    horizon: int | None,
    data: st.DataObject,
) -> None:
    group = data.draw(groups(history), label="group")
    settings = fresh()
    with api.open_ledger(settings) as app:
        assert all(r.status == "accepted" for r in append(app, *setup(*window)))
        append(app, *history)
        if horizon is not None:  # everything before the day folded into the base
            api.playback_compact(settings, datetime.fromisoformat(t(horizon, 0)).astimezone(UTC))
        expected = [shown(r) for r in app.playback.check(commands(group))]
        recorded = [shown(r) for r in app.playback.record(commands(group))]
    for answer in expected:
        event(answer["status"] + ":" + answer.get("error", {}).get("code", ""))
    # both forms of the statement (migration 0025): a group sharing nothing skips the walk
    identified = [Heartbeat.of(c, clock.now()) for c in commands(group)]
    event("distinct group" if distinct_group(identified) else "walked group")
    assert recorded == expected
    if horizon is None:  # the memory store keeps no horizon: no compaction there
        memory = memory_ledger()
        try:
            append(memory, *setup(*window))
            append(memory, *history)
            assert [shown(r) for r in memory.playback.record(commands(group))] == expected
        finally:
            memory.close()
