"""A key's claim on the distributed log is a lease (issue 28, docs/scaling.md "A claim's lease").

A key that is one namespace across the ledger (an idempotency key, a payment intent) is
claimed in ``ledger_key_claims`` in a transaction of its own before the organization's append
(``ledger.log.claims``). A claim whose append never committed (a crash between the two
commits) is taken over by another organization once its lease (``LEDGER_CLAIM_LEASE``) has
run out and its holder's chain holds no event of the key; the old holder's late append is
fenced (``ledger_claim_fence``, migration 0028: refused past its deadline, bounded by
``transaction_timeout`` before it), so it is decided again and finds the key another's. A
live claim, and a claim whose holder's events committed, are never taken. The waits are on
the claim's row and the server's clock, never a fixed sleep.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import api
from ledger.config import Settings
from ledger.database.connections import connect
from ledger.domain import ids
from ledger.errors import ConfigurationError
from ledger.log import claims
from tests import citus_support
from tests.citus_support import CitusCluster
from tests.support import append, cli, complete, org, publish, statuses, user

Conn = psycopg.Connection[Any]
KEY = "shared-key-1"
VIDEO = {0: "11111111-1111-4111-8111-111111111111", 1: "22222222-2222-4222-8222-222222222222"}


@pytest.fixture
def two(citus: CitusCluster, distributed: Settings, conn: Conn) -> tuple[str, str]:
    """Two organizations on two workers, each with a published video and a customer."""
    log = f"{distributed.schema}.ledger_events"
    a, b = (str(o) for o in citus.on_distinct_workers(conn, log, citus_support.organizations(), 2))
    conn.commit()
    with api.open_ledger(distributed) as ledger:
        setup = [org(a, "A"), org(b, "B"), user("creator"), user("alice")]
        setup += [publish(VIDEO[0], a), publish(VIDEO[1], b)]
        assert statuses(append(ledger, *setup)) == ["accepted"] * 6
    return a, b


def bought(organization: int, intent: str) -> dict[str, Any]:
    return complete(intent, content_id=VIDEO[organization], idempotency_key=KEY)


def key_claim(conn: Conn) -> tuple[uuid.UUID, datetime] | None:
    row = conn.execute(
        "SELECT organization_id, claimed_at FROM ledger_key_claims WHERE claim_id = %s",
        (ids.command_key_id("idempotency_key", KEY),),
    ).fetchone()
    return None if row is None else (row[0], row[1])


def chains_with_the_key(conn: Conn) -> list[uuid.UUID]:
    rows = conn.execute(
        "SELECT DISTINCT organization_id FROM ledger_events WHERE originator_id = %s",
        (ids.command_key_id("idempotency_key", KEY),),
    ).fetchall()
    return [r[0] for r in rows]


def wait_run_out(conn: Conn, lease: str, timeout_s: float = 30.0) -> None:
    """Waits for an event: the key's claim's lease run out on the server's clock."""
    deadline = time.monotonic() + timeout_s
    while True:
        row = conn.execute(
            "SELECT claimed_at + %s::interval < clock_timestamp() FROM ledger_key_claims "
            "WHERE claim_id = %s",
            (lease, ids.command_key_id("idempotency_key", KEY)),
        ).fetchone()
        if row is not None and row[0]:
            return
        assert time.monotonic() < deadline, "the claim's lease never ran out"
        conn.execute("SELECT pg_sleep(0.05)")  # a poll of the server's clock


OUTCOMES: list[str] = []  # what each claim_first of the hooked tests answered, in order


class Crash(Exception):
    """The process lost between the claims' commit and the append's."""


def hooked(monkeypatch: pytest.MonkeyPatch, after: Callable[[], None]) -> Callable[[], bool]:
    """``claims.claim_first`` that runs ``after`` once, when its claims have committed and
    before the append begins (the gap a crash or a stalled process leaves)."""
    original = claims.claim_first
    state = {"done": False, "inside": False}

    def claim_first(conn: Conn, schema: str, wanted: Sequence[Any]) -> Any:
        try:
            deadline = original(conn, schema, wanted)
        except claims.HeldElsewhere:
            OUTCOMES.append("held elsewhere")
            raise
        if state["inside"]:  # a claim of ``after`` itself, made in the gap
            OUTCOMES.append("claimed in the gap" if wanted else "none in the gap")
        else:
            OUTCOMES.append("claimed" if wanted else "none")
        if wanted and not state["done"] and not state["inside"]:
            state["done"] = state["inside"] = True
            try:
                after()
            finally:
                state["inside"] = False
        return deadline

    monkeypatch.setattr(claims, "claim_first", claim_first)
    return lambda: state["done"]


@pytest.mark.citus
def test_an_orphan_claim_is_taken_over_after_its_lease_and_a_live_one_never(
    citus: CitusCluster,
    distributed: Settings,
    two: tuple[str, str],
    conn: Conn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A's append crashes after its claims committed: the key's claim is A's, its chain has
    no event of the key. While the lease lasts B's command with the same key is refused
    (retryable, the claim still A's); once it ran out, B's is accepted and holds the key,
    and A's command sent again is decided again on B's events: nothing applied twice."""
    a, b = two
    monkeypatch.setenv(claims.LEASE_KEY, "10min")

    def crash() -> None:
        raise Crash("lost between the claim's commit and the append's")

    hooked(monkeypatch, crash)
    with api.open_ledger(distributed) as ledger:
        with pytest.raises(Crash):
            append(ledger, bought(0, "pi_a"))
        held = key_claim(conn)
        assert held is not None and str(held[0]) == a
        assert chains_with_the_key(conn) == []
        # live: never taken, whatever B tries
        with pytest.raises(RuntimeError, match="gave up after"):
            append(ledger, bought(1, "pi_b"))
        assert key_claim(conn) == held
        monkeypatch.setenv(claims.LEASE_KEY, "500ms")
        wait_run_out(conn, "500ms")
        assert statuses(append(ledger, bought(1, "pi_b"))) == ["accepted"]
        taken = key_claim(conn)
        assert taken is not None and str(taken[0]) == b
        assert [str(c) for c in chains_with_the_key(conn)] == [b]
        # A's command sent again: the key is B's now, as on one server where B came first
        again = append(ledger, bought(0, "pi_a"))
        assert statuses(again) == ["rejected:conflict"], again
    assert [str(c) for c in chains_with_the_key(conn)] == [b]
    assert conn.execute("SELECT count(*) FROM purchases").fetchone() == (1,)


@pytest.mark.citus
def test_a_late_append_of_the_old_holder_is_fenced_and_decided_again(
    citus: CitusCluster,
    distributed: Settings,
    two: tuple[str, str],
    conn: Conn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A claims the key and stalls before its append (a paused process); its lease runs
    out, B takes the key over and commits. A's append then goes on: its fence refuses it
    (past its deadline, nothing written), the recorder claims again, finds the key B's, and
    the service decides A's command again: not accepted, the key's events B's alone."""
    _, b = two
    lease = "1s"
    monkeypatch.setenv(claims.LEASE_KEY, lease)
    answers: dict[str, Any] = {}

    with api.open_ledger(distributed) as ledger, api.open_ledger(distributed) as other:

        def b_takes_over() -> None:
            wait_run_out(conn, lease)
            answers["b"] = statuses(append(other, bought(1, "pi_b")))
            answers["taken"] = key_claim(conn)

        OUTCOMES.clear()
        ran = hooked(monkeypatch, b_takes_over)
        answers["a"] = append(ledger, bought(0, "pi_a"))
        assert ran()
    # A claimed; B (inside A's gap) took the key over (and claimed again, renewing its own
    # claim, only if a loaded machine kept its append past its fence's deadline, 800 ms
    # after its claim); A's append, fenced, claimed again and found the key B's; then A's
    # command was decided again on B's events
    gap = OUTCOMES.count("claimed in the gap")
    assert gap >= 1, OUTCOMES
    assert OUTCOMES[: gap + 2] == ["claimed", *["claimed in the gap"] * gap, "held elsewhere"], (
        OUTCOMES
    )
    assert statuses(answers["a"]) == ["rejected:conflict"], answers["a"]
    assert answers["b"] == ["accepted"]
    assert answers["taken"] is not None and str(answers["taken"][0]) == b
    assert statuses(answers["a"]) != ["accepted"], answers["a"]
    held = key_claim(conn)
    assert held is not None and str(held[0]) == b
    assert [str(c) for c in chains_with_the_key(conn)] == [b]
    rows = conn.execute("SELECT organization_id::text FROM purchases").fetchall()
    assert rows == [(b,)]


@pytest.mark.citus
def test_a_claim_whose_events_committed_is_never_taken(
    citus: CitusCluster,
    distributed: Settings,
    two: tuple[str, str],
    conn: Conn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing accepted is lost: A's purchase with the key committed; long after its lease
    ran out, B's command with the same key is answered as on one server (the key taken),
    and the claim and the events stay A's."""
    a, _ = two
    lease = "500ms"
    monkeypatch.setenv(claims.LEASE_KEY, lease)
    with api.open_ledger(distributed) as ledger:
        assert statuses(append(ledger, bought(0, "pi_a"))) == ["accepted"]
        wait_run_out(conn, lease)
        answer = append(ledger, bought(1, "pi_b"))
    assert statuses(answer) == ["rejected:conflict"], answer
    held = key_claim(conn)
    assert held is not None and str(held[0]) == a
    assert [str(c) for c in chains_with_the_key(conn)] == [a]
    assert conn.execute("SELECT count(*) FROM purchases").fetchone() == (1,)


@pytest.mark.citus
def test_the_fence_refuses_a_past_deadline_and_bounds_the_transaction(
    citus: CitusCluster, distributed: Settings, conn: Conn
) -> None:
    """``ledger_claim_fence`` on the cluster's coordinator (PostgreSQL 17+): a deadline
    already past refuses the transaction (retryable, SQLSTATE 40001); a deadline ahead ends
    a transaction still open then (``transaction_timeout``, SQLSTATE 25P04), here one
    waiting for a lock another transaction holds, waited for in ``pg_locks``."""
    with connect(distributed) as late:
        with pytest.raises(psycopg.errors.SerializationFailure, match="LEDGER_CLAIM_LEASE"):
            late.execute("SELECT ledger_claim_fence(clock_timestamp() - interval '1 ms')")
        late.rollback()
    holder = psycopg.connect(citus.url)
    try:
        holder.execute("SELECT pg_advisory_lock(28028)")
        outcome: dict[str, BaseException | None] = {}

        def bounded() -> None:
            with connect(distributed) as waiting:
                try:
                    # one round trip: the lock is asked for at once after the fence, never
                    # after the deadline (a client thread held up 2 s would find the
                    # transaction ended before it waited, and no waiter in pg_locks)
                    waiting.execute(
                        "SELECT ledger_claim_fence(clock_timestamp() + interval '2s');"
                        " SELECT pg_advisory_xact_lock(28028)"
                    )
                    waiting.commit()
                    outcome["error"] = None
                except psycopg.Error as error:
                    outcome["error"] = error

        thread = threading.Thread(target=bounded)
        thread.start()
        _wait_for_waiter(holder, 28028)
        thread.join(timeout=60)
        assert not thread.is_alive()
        error = outcome["error"]
        assert error is not None, "the transaction outlived its deadline"
        assert claims.bounded(error) or "transaction timeout" in str(error), error
    finally:
        holder.close()


def _wait_for_waiter(conn: Conn, key: int) -> None:
    """Until a backend waits for the advisory lock (``pg_locks``, not granted)."""
    deadline = time.monotonic() + 30
    while True:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s "
            "AND NOT granted",
            (key,),
        ).fetchone()
        if row is not None and row[0]:
            return
        assert time.monotonic() < deadline, "no transaction waited for the lock"
        conn.execute("SELECT pg_sleep(0.02)")


@given(
    number=st.integers(min_value=0, max_value=10**10),
    unit=st.sampled_from(["ms", "s", "min", "h", "", "m", "sec", " s"]),
)
def test_the_lease_is_a_whole_number_with_its_unit_from_100ms(number: int, unit: str) -> None:
    """``LEDGER_CLAIM_LEASE``: accepted exactly when a whole number with a unit of ms, s,
    min or h makes 100ms to transaction_timeout's bound; else refused naming the setting."""
    scale = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000}.get(unit)
    text = f"{number}{unit}"
    expected = number * scale if scale is not None else None
    if expected is not None and 100 <= expected <= 2**31 - 1:
        assert claims.lease_ms(text) == expected
        assert 0 < claims.margin_ms(expected) < expected
    else:
        with pytest.raises(ConfigurationError, match="LEDGER_CLAIM_LEASE"):
            claims.lease_ms(text)


@pytest.mark.citus
def test_a_bad_lease_is_a_configuration_error_naming_the_variable_writing_nothing(
    citus: CitusCluster,
    distributed: Settings,
    two: tuple[str, str],
    cli_env: dict[str, str],
    conn: Conn,
) -> None:
    """``ledger append`` with ``LEDGER_CLAIM_LEASE=60`` (no unit) on a distributed log: one
    line naming the variable and its rule, exit 2, no traceback, nothing written."""
    env = {**cli_env, claims.LEASE_KEY: "60"}
    done = cli(env, "append", "-", stdin=json.dumps(bought(0, "pi_bad")) + "\n")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert "LEDGER_CLAIM_LEASE '60' is not a claim's lease" in done.stderr, done.stderr
    assert key_claim(conn) is None
    assert conn.execute("SELECT count(*) FROM purchases").fetchone() == (0,)
