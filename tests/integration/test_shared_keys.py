"""One idempotency key across the money log and the playback store, on PostgreSQL
(CONTRACT.md, "Idempotency"; docs/events.md, "One key, two stores")."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from ledger import api
from ledger.commands.results import Result
from ledger.config import Settings
from ledger.database.connections import connect
from ledger.service import Ledger
from tests import citus_support
from tests.integration.test_roles import as_role, roles  # noqa: F401 (a fixture)
from tests.support import (
    CONTENT,
    ORG,
    append,
    catalogue,
    dump_all,
    event_count,
    grant,
    play,
    start,
    t,
)

Conn = psycopg.Connection[Any]
CONFLICT = "rejected:conflict:idempotency_key"
MESSAGE = "idempotency_key 'K' was already used by a different playback.progress command"


def keyed(command: dict[str, Any], key: str = "K") -> dict[str, Any]:
    return {**command, "idempotency_key": key}


def revoke(user_id: str) -> dict[str, Any]:
    return {"type": "access.revoke", "user_id": user_id, "content_id": CONTENT, "occurred_at": t(5)}


def answers(results: list[Result]) -> list[str]:
    return [
        r.status if r.error is None else f"{r.status}:{r.error.code}:{r.error.field}"
        for r in results
    ]


def lines(ledger: Ledger, *commands: dict[str, Any], **how: Any) -> list[Result]:
    return [r for _, r in api.append_lines(ledger, [json.dumps(c) for c in commands], **how)]


@pytest.fixture
def heard(ledger_app: Ledger) -> Iterator[Ledger]:
    """The catalogue, bob's access, and a heartbeat of bob's sent with key ``K``."""
    assert answers(append(ledger_app, *catalogue(), grant("bob"))) == ["accepted"] * 6
    assert answers(append(ledger_app, keyed(play("bob", 10)))) == ["accepted"]
    yield ledger_app


def test_a_heartbeat_s_key_is_a_conflict_for_money_commands_alone(
    heard: Ledger, conn: Conn
) -> None:
    before = (dump_all(conn), event_count(conn))
    money = [
        keyed(revoke("nobody")),
        keyed(grant("alice")),
        keyed(start("pi_k")),
        keyed(revoke("bob")),
    ]
    results = append(heard, *money)
    assert answers(results) == [CONFLICT] * 4
    assert {r.error.message for r in results if r.error is not None} == {MESSAGE}
    assert (dump_all(conn), event_count(conn)) == before


def test_in_one_atomic_batch_and_in_one_group(heard: Ledger, conn: Conn) -> None:
    before = (dump_all(conn), event_count(conn))
    atomic = lines(heard, grant("alice"), keyed(start("pi_k")), atomic=True)
    assert answers(atomic) == ["rolled_back", CONFLICT]
    grouped = lines(heard, keyed(grant("alice")), keyed(revoke("bob")), batch=10)
    assert answers(grouped) == [CONFLICT, CONFLICT]
    assert (dump_all(conn), event_count(conn)) == before
    # a heartbeat and a money command sharing a new key inside one atomic batch: nothing
    shared = lines(
        heard, keyed(play("bob", 20, at=t(6)), "N"), keyed(grant("alice"), "N"), atomic=True
    )
    assert answers(shared) == ["rolled_back", CONFLICT]
    assert (dump_all(conn), event_count(conn)) == before
    assert conn.execute(
        "SELECT count(*) FROM playback_keys WHERE idempotency_key = 'N'"
    ).fetchone() == (0,)
    # inside one group the heartbeat commits first; the money command after it sees its key
    group = lines(heard, keyed(play("bob", 20, at=t(6)), "G"), keyed(grant("alice"), "G"), batch=10)
    assert answers(group) == ["accepted", CONFLICT]


def test_the_writer_role_reads_the_store_s_keys(
    settings: Settings,
    roles: dict[str, str],  # noqa: F811
) -> None:
    with api.open_ledger(as_role(settings, roles["writer"])) as app:
        assert answers(append(app, *catalogue(), grant("bob"))) == ["accepted"] * 6
        assert answers(append(app, keyed(play("bob", 10)), keyed(grant("alice")))) == [
            "accepted",
            CONFLICT,
        ]


def test_a_heartbeat_and_a_money_command_racing_with_a_new_key_may_both_be_accepted(
    settings: Settings, heard: Ledger, conn: Conn
) -> None:
    """What docs/events.md states: they commit under different locks, so each may decide
    before the other commits. Made deterministic: the heartbeat's statement reads its facts,
    then waits for its (user, content) row (locked here) while the money command commits."""
    other = api.open_ledger(settings)
    answered: list[Result] = []
    try:
        # the other process has made the day's partition its own (else it would decide again)
        assert answers(append(other, play("bob", 25, at=t(7, 11)))) == ["accepted"]
        with connect(settings) as holder:
            # by its organization too: on the distributed layout a row lock is taken on the
            # row's worker, which Citus reaches only through the distribution column
            holder.execute(
                "SELECT 1 FROM video_playback WHERE organization_id = %s AND user_id = 'bob'"
                " FOR UPDATE",
                (ORG,),
            )
            beat = threading.Thread(
                target=lambda: answered.extend(append(other, keyed(play("bob", 30, at=t(7)), "R")))
            )
            beat.start()
            _wait_for_a_waiter(conn, citus_support.waits_name(holder))
            # on the distributed store the heartbeat's key is claimed before its group's
            # transaction (ledger/playback/keys.py, i28y): the money command, deciding while
            # the heartbeat waits, finds it; on one server it is still uncommitted
            money = CONFLICT if citus_support.distribute_requested() else "accepted"
            assert answers(append(heard, keyed(grant("alice"), "R"))) == [money]
            holder.rollback()  # the row's lock goes: the heartbeat goes on
            beat.join()
    finally:
        other.close()
    assert answers(answered) == ["accepted"]
    # the key now stands for both: each one's redelivery is a duplicate, anything else not
    # (on the distributed store for the heartbeat alone)
    again = CONFLICT if money == CONFLICT else "duplicate"
    assert answers(append(heard, keyed(grant("alice"), "R"))) == [again]
    assert answers(append(heard, keyed(play("bob", 30, at=t(7)), "R"))) == ["duplicate"]
    assert answers(append(heard, keyed(revoke("bob"), "R"))) == [
        "rejected:conflict:idempotency_key"
    ]


def _wait_for_a_waiter(conn: Conn, holder: int) -> None:
    """Until a session waits for ``holder`` (``citus_support.waits_name``): the heartbeat's statement
    has read its facts and its upsert waits for the row ``holder`` locked. On the
    distributed layout the wait is a worker's, seen in ``citus_lock_waits``."""
    query = (
        "SELECT count(*) > 0 FROM citus_lock_waits WHERE blocking_gpid = %s"
        if citus_support.distribute_requested()
        else "SELECT count(*) > 0 FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))"
    )
    while not conn.execute(query, (holder,)).fetchone()[0]:  # type: ignore[index]
        conn.execute("SELECT pg_sleep(0.01)")
