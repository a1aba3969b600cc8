"""A keyed heartbeat sent without ``occurred_at`` is known by its key alone (docs/cli.md): it
is dated when it is identified, so each delivery has its own moment, and its key says it is
the same heartbeat. One server answers a redelivery ``duplicate`` by its key; the
distributed store, whose keys are claimed before their group's transaction
(``ledger.playback.keys``), recorded every delivery (issue 28: "nothing is applied twice").
A key's claim now holds its heartbeat's moment and every delivery takes it. The same
answers on both layouts (run with ``LEDGER_TEST_DISTRIBUTE=1`` for the distributed one).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import psycopg

from ledger import api
from ledger.config import Settings
from ledger.service import Ledger
from tests.support import append, at_once, catalogue, cli, grant, play, statuses, t, user

Conn = psycopg.Connection[Any]


def beat(key: str, position: int = 5) -> dict[str, Any]:
    """alice's heartbeat without ``occurred_at``, keyed."""
    command = {**play("alice", position), "idempotency_key": key}
    del command["occurred_at"]
    return command


def recorded(conn: Conn, key: str | None = None) -> int:
    if key is None:
        row = conn.execute("SELECT count(*) FROM playback_heartbeats").fetchone()
    else:
        row = conn.execute(
            "SELECT count(*) FROM playback_heartbeats WHERE idempotency_key = %s", (key,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def _granted(app: Ledger) -> None:
    assert set(statuses(append(app, *catalogue(), grant("alice")))) == {"accepted"}


def test_a_keyed_heartbeat_without_its_time_sent_again_is_a_duplicate(
    ledger_app: Ledger, conn: Conn
) -> None:
    """The lead's reproduction: k1, k1, k2, k1, each alone. k2 is a new heartbeat (a new
    key, a new moment); k1 is always the first one."""
    _granted(ledger_app)
    answers = [statuses(append(ledger_app, beat(k)))[0] for k in ("k1", "k1", "k2", "k1")]
    assert answers == ["accepted", "duplicate", "accepted", "duplicate"]
    assert recorded(conn) == 2
    assert (recorded(conn, "k1"), recorded(conn, "k2")) == (1, 1)


def test_through_ledger_append_in_one_batch_and_across_batches(
    ledger_app: Ledger, conn: Conn, cli_env: dict[str, str]
) -> None:
    """One batch is one moment: its k1 again is a duplicate by its key, its k2 the same
    heartbeat at the same moment (a duplicate by its identity). Across batches, as alone."""
    _granted(ledger_app)
    lines = "".join(json.dumps(beat(k, 7)) + "\n" for k in ("b1", "b1", "b2", "b1"))
    done = cli(cli_env, "append", stdin=lines)
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line)["status"] for line in done.stdout.splitlines()]
    assert answers == ["accepted", "duplicate", "duplicate", "duplicate"]
    across = []
    for key in ("c1", "c1", "c2", "c1"):
        done = cli(cli_env, "append", stdin=json.dumps(beat(key, 9)) + "\n")
        assert done.returncode == 0, done.stderr
        across.append(json.loads(done.stdout)["status"])
    assert across == ["accepted", "duplicate", "accepted", "duplicate"]
    assert [recorded(conn, k) for k in ("b1", "b2", "c1", "c2")] == [1, 0, 1, 1]


def test_in_an_atomic_batch_a_redelivery_is_a_duplicate(ledger_app: Ledger, conn: Conn) -> None:
    """An ``--atomic`` batch's heartbeats are checked before its money commands commit
    (``PlaybackStore.check``): the redelivery is checked, and answered, as the key's
    heartbeat."""
    _granted(ledger_app)
    assert statuses(append(ledger_app, beat("ka"))) == ["accepted"]
    lines = [json.dumps(c) for c in (beat("ka"), user("zed"), beat("ka"))]
    atomic = [r for _, r in api.append_lines(ledger_app, lines, atomic=True)]
    assert statuses(atomic) == ["duplicate", "accepted", "duplicate"]
    assert recorded(conn, "ka") == 1


def test_the_same_payload_at_another_time_under_its_key_is_a_duplicate(
    ledger_app: Ledger, conn: Conn
) -> None:
    """A key's fingerprint is its payload's, without the time: sent with its time, then
    again with another, it is the key's heartbeat again (one server answers so by the key)."""
    _granted(ledger_app)
    first = {**play("alice", 11, at=t(4, 11)), "idempotency_key": "kt"}
    later = {**first, "occurred_at": t(4, 13)}
    assert statuses(append(ledger_app, first)) == ["accepted"]
    assert statuses(append(ledger_app, later)) == ["duplicate"]
    assert statuses(append(ledger_app, first)) == ["duplicate"]
    row = conn.execute(
        "SELECT count(*), min(occurred_at) FROM playback_heartbeats WHERE idempotency_key = 'kt'"
    ).fetchone()
    assert row is not None and row[0] == 1
    assert row[1].isoformat() == t(4, 11).replace("Z", "+00:00")


ROUNDS = 12


def test_two_processes_sending_one_keyed_heartbeat_at_once_record_it_once(
    settings: Settings, ledger_app: Ledger, conn: Conn
) -> None:
    """Two ledgers (two pools, as two processes) send the same keyed heartbeat without
    its time at once, each round a new key: one is recorded, the other is a duplicate.
    Each delivery has its own moment; on the distributed store the second claim finds the
    first's moment and decides again at it."""
    _granted(ledger_app)
    other = api.open_ledger(settings)
    try:
        # each ledger has made the day's partition its own (else it decides again first)
        assert statuses(append(other, beat("warm", 1))) == ["accepted"]
        for n in range(ROUNDS):
            key = f"race-{n}"
            answered = at_once((ledger_app, other), beat(key, 20 + n))
            both = sorted(s for r in answered for s in statuses(r))
            assert both == ["accepted", "duplicate"], (n, both)
            assert recorded(conn, key) == 1, n
    finally:
        other.close()
    assert recorded(conn) == ROUNDS + 1


def of_before(conn: Conn, key: str) -> None:
    """The key's claim made a key of before migration 0034: no moment (a single server's
    keys hold none already; a distributed store's claims of before held none)."""
    conn.execute("UPDATE playback_keys SET occurred_at = NULL WHERE idempotency_key = %s", (key,))
    held = conn.execute(
        "SELECT occurred_at FROM playback_keys WHERE idempotency_key = %s", (key,)
    ).fetchall()
    assert held == [(None,)]


def test_a_key_of_before_whose_heartbeat_was_compacted_stays_a_duplicate(
    settings: Settings, ledger_app: Ledger, conn: Conn
) -> None:
    """A keyed heartbeat recorded, compacted (its record folded into the base, its key's
    owner kept: migration 0016), its key's claim without a moment (a key of before 0034).
    Sent again without its time, at another time, or at its own, it is the key's heartbeat:
    ``duplicate`` each time, as one server answers by its key; nothing is recorded again and
    the base is as the compaction left it."""
    _granted(ledger_app)
    first = {**play("alice", 11, at=t(4, 11)), "idempotency_key": "kc-old"}
    assert statuses(append(ledger_app, first)) == ["accepted"]
    done = api.playback_compact(settings, datetime.fromisoformat(t(5)))
    assert (done.records, done.pairs) == (1, 1)
    of_before(conn, "kc-old")
    base = "SELECT position_seconds, occurred_at, horizon FROM playback_base"
    folded = conn.execute(base).fetchall()
    assert [r[0] for r in folded] == [11]
    again = {k: v for k, v in first.items() if k != "occurred_at"}
    answers = [
        statuses(append(ledger_app, c))[0]
        for c in (again, again, {**first, "occurred_at": t(6)}, first)
    ]
    assert answers == ["duplicate"] * 4
    assert recorded(conn) == 0
    assert conn.execute(base).fetchall() == folded
    other = {**again, "position_seconds": 12}
    assert statuses(append(ledger_app, other)) == ["rejected:conflict"]
