"""One idempotency key across the money log and the playback store (CONTRACT.md,
"Idempotency"; docs/events.md): a key a heartbeat used is a ``conflict`` for a money
command, alone, in a group and in an ``--atomic`` batch, and the other way round."""

from __future__ import annotations

import json
from typing import Any

from ledger import api
from ledger.service import Ledger
from tests.support import CONTENT, grant, play, start, t
from tests.unit.decisions.conftest import answers, rows, run, topics

CONFLICT = "conflict:idempotency_key"


def keyed(command: dict[str, Any], key: str = "K") -> dict[str, Any]:
    return {**command, "idempotency_key": key}


def revoke(user_id: str) -> dict[str, Any]:
    return {"type": "access.revoke", "user_id": user_id, "content_id": CONTENT, "occurred_at": t(5)}


def grouped(ledger: Ledger, *commands: dict[str, Any]) -> list[str]:
    """The answers of the commands sent as one group (group commit)."""
    lines = [json.dumps(c) for c in commands]
    found = []
    for _, result in api.append_lines(ledger, lines, batch=len(lines) + 1):
        error = result.error
        found.append(result.status if error is None else f"{error.code}:{error.field}")
    return found


def test_a_key_a_heartbeat_used_is_a_conflict_for_any_money_command(app: Ledger) -> None:
    assert answers(app, grant("bob"), keyed(play("bob", 10))) == ["accepted", "accepted"]
    before = topics(app)
    assert (
        answers(
            app,
            keyed(revoke("nobody")),
            keyed(grant("alice")),
            keyed(start("pi_k")),
            keyed(revoke("bob")),
        )
        == [CONFLICT] * 4
    )
    assert topics(app) == before
    assert [r["user_id"] for r in rows(app, "content_access")] == ["bob"]
    error = run(app, keyed(revoke("bob")))[0].error
    assert error is not None
    assert error.message == (
        "idempotency_key 'K' was already used by a different playback.progress command"
    )


def test_in_one_group_the_heartbeat_s_key_is_seen_by_the_money_command_after_it(
    app: Ledger,
) -> None:
    assert answers(app, grant("bob")) == ["accepted"]
    before = len(topics(app))
    assert grouped(app, keyed(play("bob", 10)), keyed(grant("alice")), keyed(start("pi_k"))) == [
        "accepted",
        CONFLICT,
        CONFLICT,
    ]
    assert len(topics(app)) == before
    # and a money command's key first: the heartbeat after it is the conflict
    assert grouped(app, keyed(grant("alice"), "M"), keyed(play("bob", 20, at=t(6)), "M")) == [
        "accepted",
        CONFLICT,
    ]


def test_in_one_atomic_batch_a_key_shared_by_a_heartbeat_and_a_money_command_writes_nothing(
    app: Ledger,
) -> None:
    assert answers(app, grant("bob")) == ["accepted"]
    before = topics(app)
    assert answers(app, keyed(play("bob", 10)), keyed(grant("alice")), atomic=True) == [
        "rolled_back",
        CONFLICT,
    ]
    assert answers(app, keyed(grant("alice")), keyed(play("bob", 10)), atomic=True) == [
        "rolled_back",
        CONFLICT,
    ]
    assert topics(app) == before
    assert rows(app, "video_playback") == []
    # a key a heartbeat used before the batch: the batch's money command is the conflict
    assert answers(app, keyed(play("bob", 10))) == ["accepted"]
    assert answers(app, grant("alice"), keyed(revoke("bob")), atomic=True) == [
        "rolled_back",
        CONFLICT,
    ]
    assert topics(app) == before
