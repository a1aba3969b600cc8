"""A keyed heartbeat's claim, left by a process lost between its claim and its write, goes
with an erasure of its person (migration 0035, docs/privacy.md "Races").

On the distributed store a keyed heartbeat claims its key in a transaction of its own before
its group's (``ledger.playback.keys``). A process killed between the two left the claim: the
key and the digest of a payload naming the person, which no heartbeat names, so no erasure
found it. The claim now holds its person (``playback_keys.user_id``), and the erasure deletes
the person's claims by it (``ledger.privacy.store``). On one server the key is written with
its heartbeat, in the group's one statement: a process lost before it leaves nothing. Both
layouts: the module is on the distributed list (``.ci/run``).
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from ledger.config import Settings
from ledger.service import Ledger
from tests import citus_support
from tests.integration.test_erasure import erase, history, pg_dump, traces
from tests.playback_placed import lost_before_the_write
from tests.support import append, grant, play, statuses, t, user

Conn = psycopg.Connection[Any]


def placed() -> bool:
    return citus_support.distribute_requested()


def claims_of(conn: Conn, key: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT fingerprint IS NOT NULL, user_id FROM playback_keys WHERE idempotency_key = %s",
        (key,),
    ).fetchall()


def held(conn: Conn, key: str) -> Any:
    return conn.execute(
        "SELECT count(*) FROM playback_keys WHERE idempotency_key = %s", (key,)
    ).fetchone()


def recorded(conn: Conn, key: str) -> Any:
    return conn.execute(
        "SELECT count(*) FROM playback_heartbeats WHERE idempotency_key = %s", (key,)
    ).fetchone()


def test_a_claim_left_by_a_process_lost_before_its_write_goes_with_the_erasure(
    ledger_app: Ledger, settings: Settings, conn: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The heartbeat's key claimed (on the distributed store), its process lost before the
    write: the claim holds the person, and no heartbeat names the key. The person erased:
    the key is nowhere, not in a dump of the database (Citus's COPY reads every shard), not
    in ``playback_keys``; the heartbeat sent again finds no one, ``not_found``, and writes
    nothing, its key included."""
    person = f"crashed-{uuid.uuid4().hex}"
    key = f"lost-{person}"
    assert set(statuses(append(ledger_app, *history(person)))) == {"accepted"}
    beat = {**play(person, 75, at=t(5, 14)), "idempotency_key": key}
    lost_before_the_write(monkeypatch, ledger_app, beat, placed=placed())
    # the claim on the distributed store; on one server nothing of it was written
    claimed = citus_support.distribute_requested()
    assert held(conn, key) == ((1,) if claimed else (0,))
    assert recorded(conn, key) == (0,)
    assert (key in pg_dump(settings)) == claimed
    assert statuses(append(ledger_app, erase(person))) == ["accepted"]
    dumped = pg_dump(settings)
    assert [trace for trace in [*traces(person), key] if trace in dumped] == []
    assert held(conn, key) == (0,)
    assert statuses(append(ledger_app, beat)) == ["rejected:not_found"]
    assert held(conn, key) == (0,) and recorded(conn, key) == (0,)
    assert key not in pg_dump(settings)


def test_a_claim_left_by_a_lost_process_is_recorded_once_and_erased_with_its_heartbeat(
    ledger_app: Ledger, settings: Settings, conn: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The person not erased: the heartbeat sent again is recorded once (``accepted``, then
    ``duplicate``), as before the claims held their person; another person's claim left the
    same way stays through this one's erasure (the erasure deletes its person's claims
    only), and goes with its own."""
    person, other = (f"{who}-{uuid.uuid4().hex}" for who in ("kept", "other"))
    key, other_key = f"lost-{person}", f"lost-{other}"
    assert set(statuses(append(ledger_app, *history(person), user(other), grant(other)))) == {
        "accepted"
    }
    beat = {**play(person, 75, at=t(5, 14)), "idempotency_key": key}
    other_beat = {**play(other, 76, at=t(5, 15)), "idempotency_key": other_key}
    lost_before_the_write(monkeypatch, ledger_app, beat, placed=placed())
    lost_before_the_write(monkeypatch, ledger_app, other_beat, placed=placed())
    assert statuses(append(ledger_app, beat)) == ["accepted"]
    assert statuses(append(ledger_app, beat)) == ["duplicate"]
    assert recorded(conn, key) == (1,)
    assert statuses(append(ledger_app, erase(person))) == ["accepted"]
    assert claims_of(conn, key) == [] and recorded(conn, key) == (0,)
    distributed_layout = citus_support.distribute_requested()
    assert claims_of(conn, other_key) == ([(True, other)] if distributed_layout else [])
    assert statuses(append(ledger_app, erase(other))) == ["accepted"]
    assert claims_of(conn, other_key) == []
    dumped = pg_dump(settings)
    assert [
        trace for trace in [key, other_key, *traces(person), *traces(other)] if trace in dumped
    ] == []
