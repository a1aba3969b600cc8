"""Faults: an appender killed mid-stream, backends terminated under it."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from typing import IO, Any

import psycopg
import pytest

from ledger.config import Settings
from ledger.database.connections import connect
from ledger.service import Ledger
from ledger.upkeep.verify import verify
from tests import forkserve
from tests.support import answers, append, catalogue, cli, event_count, stream

Conn = psycopg.Connection[Any]


def fully_applied(conn: Conn, intents: list[str]) -> None:
    """Each accepted payment: exactly one completion event, its access grant, its rows.
    Read in two statements for all the intents (one scan of the log, not one per intent)."""
    wanted = sorted(set(intents))
    counted = {
        intent: (completions, grants)
        for intent, completions, grants in conn.execute(
            "SELECT convert_from(state, 'UTF8')::jsonb->>'stripe_payment_intent_id' AS intent,"
            " count(*) FILTER (WHERE topic = 'PurchaseCompleted'),"
            " count(*) FILTER (WHERE topic = 'AccessGranted')"
            " FROM ledger_events"
            " WHERE convert_from(state, 'UTF8')::jsonb->>'stripe_payment_intent_id' = ANY(%s)"
            " GROUP BY 1",
            (wanted,),
        ).fetchall()
    }
    assert {intent: counted.get(intent, (0, 0)) for intent in wanted} == {
        intent: (1, 1) for intent in wanted
    }
    statuses = dict(
        conn.execute(
            "SELECT stripe_payment_intent_id, status FROM purchases"
            " WHERE stripe_payment_intent_id = ANY(%s)",
            (wanted,),
        ).fetchall()
    )
    assert {intent: statuses.get(intent) for intent in wanted} == {
        intent: "completed" for intent in wanted
    }


def feed_forked(stdin: IO[str], payload: str) -> None:
    """Writes the stream; the appender may be killed, or stop reading, while we write."""
    try:
        stdin.write(payload)
        stdin.close()
    except (BrokenPipeError, ValueError):
        pass


@pytest.mark.parametrize("batch", ["1", "7", "100"])
def test_sigkill_mid_stream_leaves_nothing_half_applied(
    batch: str, ledger_app: Ledger, settings: Settings, cli_env: dict[str, str], conn: Conn
) -> None:
    """Killed at any point, ``append`` (one line or a batch per transaction) has lost only
    lines it had not answered; delivering the whole stream again completes it, nothing
    doubled. With batches, a kill between a commit and its answers leaves lines committed
    without answers: the rerun answers them ``duplicate``."""
    append(ledger_app, *catalogue())
    runs = int(os.environ.get("LEDGER_FAULT_RUNS", "3"))
    for seed in range(runs):
        prefix = f"pi_kill{seed}_"
        payload = stream(250, prefix)
        # a process of its own, forked from one that has imported the ledger already
        # (tests/forkserve.py): SIGKILL ends it as it ends a new interpreter
        process = forkserve.server().start(["append", "--batch", batch, "-"], cli_env, streams=True)
        assert process.stdin is not None and process.stdout is not None
        writer = threading.Thread(target=feed_forked, args=(process.stdin, payload))
        writer.start()
        answered: list[dict[str, Any]] = []
        stop_after = random.Random(seed).randint(20, 150)
        for line in process.stdout:
            answered.append(json.loads(line))
            if len(answered) >= stop_after:
                process.send_signal(signal.SIGKILL)
                break
        process.wait()
        process.stdout.close()
        writer.join(timeout=10)
        accepted = [f"{prefix}{a['line'] - 1}" for a in answered if a["status"] == "accepted"]
        assert len(accepted) == stop_after
        fully_applied(conn, accepted)
        assert verify(settings) == []  # whatever else committed is whole too
        # delivering the whole stream again completes it: nothing doubled
        again = cli(cli_env, "append", "--batch", batch, "-", stdin=payload)
        assert again.returncode == 0
        rerun = answers(again.stdout)
        assert {a["status"] for a in rerun} <= {"accepted", "duplicate"}
        assert all(rerun[n - 1]["status"] == "duplicate" for n in range(1, stop_after + 1))
        fully_applied(conn, [f"{prefix}{n}" for n in range(250)])


def test_terminated_backends_never_double_a_command(
    ledger_app: Ledger, settings: Settings, cli_env: dict[str, str], conn: Conn
) -> None:
    append(ledger_app, *catalogue())
    payload = stream(150, "pi_term_")
    # first, one cut that cannot be missed: the appender's first transaction held at the log's
    # lock, mid-way, and cut there (read only between commits, the cuts could all come after
    # its last one on a loaded machine: killed 0 once in CI). Then after every commit the
    # appender's connections are cut (a transaction in flight then, mid-way; the pool's idle
    # ones, at their next use), so its work goes on by retries on new connections and commits
    # between the cuts; how long the pool waits for a connection is not what is tested (1 s,
    # not the default 10 s), nor how long an append waits at the held log (120 s, not 5 s)
    env = dict(
        cli_env,
        PGAPPNAME="ledger-fault-victim",
        LEDGER_POOL_TIMEOUT="1s",
        LEDGER_LOCK_TIMEOUT="120s",
    )
    stop = threading.Event()
    killed = held = 0

    def cut(admin: Conn, waiting: bool) -> int:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'ledger-fault-victim'"
            " AND (NOT %s OR wait_event_type = 'Lock')",
            (waiting,),
        ).fetchall()
        return sum(1 for (done,) in rows if done)

    def killer(holder: Conn) -> None:
        nonlocal killed, held
        with connect(settings, autocommit=True) as admin:
            deadline = time.monotonic() + 120
            while not held and time.monotonic() < deadline:
                held += cut(admin, waiting=True)
                time.sleep(0.005)
            holder.rollback()  # the log let go
            killed += held
            last = event_count(admin)
            while not stop.is_set():
                now = event_count(admin)
                if now > last:  # a commit went through: cut whatever comes next
                    killed += cut(admin, waiting=False)
                    last = now
                time.sleep(0.005)

    with connect(settings) as holder:
        holder.execute("LOCK TABLE ledger_events IN EXCLUSIVE MODE")
        thread = threading.Thread(target=killer, args=(holder,))
        thread.start()
        try:
            first = cli(env, "append", "-", stdin=payload)
        finally:
            stop.set()
            thread.join()
    assert held > 0 and killed >= held  # cut mid-way at the held log, then after commits
    # the appender answered what it could; an error it could not settle is exit 2
    assert first.returncode in (0, 2), first.stderr
    accepted = [
        f"pi_term_{a['line'] - 1}" for a in answers(first.stdout) if a["status"] == "accepted"
    ]
    assert accepted  # commits went through between the cuts: the rerun below has work to check
    fully_applied(conn, accepted)
    assert verify(settings) == []
    again = cli(cli_env, "append", "-", stdin=payload)
    assert again.returncode == 0, again.stderr
    fully_applied(conn, [f"pi_term_{n}" for n in range(150)])
