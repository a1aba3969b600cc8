"""Helpers shared by the tests: command builders and table dumps."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from typing import Any

import orjson
import psycopg
from psycopg import sql

from ledger import api
from ledger.commands import demo
from ledger.commands.results import Result
from ledger.config import Settings
from ledger.service import Ledger
from tests import commandline, histories

TABLES = ("organizations", "users", "content", "content_access", "purchases", "video_playback")
ORG = "11111111-1111-4111-8111-111111111111"
ORG_2 = "22222222-2222-4222-8222-222222222222"
CONTENT = "33333333-3333-4333-8333-333333333333"
CONTENT_2 = "44444444-4444-4444-8444-444444444444"


def t(day: int, hour: int = 12, minute: int = 0) -> str:
    """A business time in January 2026 (day 1-31), later months via day > 31."""
    month, day = divmod(day - 1, 31)
    return f"2026-{month + 1:02d}-{day + 1:02d}T{hour:02d}:{minute:02d}:00+00:00"


def org(
    organization_id: str = ORG, name: str = "Northwind", at: str | None = None
) -> dict[str, Any]:
    return {
        "type": "organization.register",
        "organization_id": organization_id,
        "name": name,
        "occurred_at": at or t(1, 8),
    }


def user(user_id: str, at: str | None = None) -> dict[str, Any]:
    return {"type": "user.register", "user_id": user_id, "occurred_at": at or t(1, 9)}


def publish(
    content_id: str = CONTENT,
    organization_id: str = ORG,
    creator: str = "creator",
    title: str = "A video",
    at: str | None = None,
) -> dict[str, Any]:
    return {
        "type": "content.publish",
        "content_id": content_id,
        "organization_id": organization_id,
        "creator_id": creator,
        "title": title,
        "occurred_at": at or t(1, 10),
    }


def complete(
    intent: str,
    customer: str = "alice",
    content_id: str = CONTENT,
    amount: int = 1999,
    currency: str = "usd",
    fees: tuple[int, int] = (199, 800),
    at: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    platform, organization = fees
    return {
        "type": "purchase.complete",
        "stripe_payment_intent_id": intent,
        "customer_id": customer,
        "content_id": content_id,
        "amount_paid_cents": amount,
        "currency": currency,
        "platform_fee_cents": platform,
        "organization_fee_cents": organization,
        "creator_payout_cents": amount - platform - organization,
        "occurred_at": at or t(2),
        **extra,
    }


def start(
    intent: str,
    customer: str = "alice",
    content_id: str = CONTENT,
    amount: int = 1999,
    currency: str = "usd",
    at: str | None = None,
) -> dict[str, Any]:
    return {
        "type": "purchase.start",
        "stripe_payment_intent_id": intent,
        "customer_id": customer,
        "content_id": content_id,
        "amount_paid_cents": amount,
        "currency": currency,
        "occurred_at": at or t(2, 11),
    }


def refund(
    intent: str, refund_id: str, amount: int, at: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "type": "purchase.refund",
        "stripe_payment_intent_id": intent,
        "refund_id": refund_id,
        "amount_cents": amount,
        "occurred_at": at or t(3),
        **extra,
    }


def grant(
    user_id: str,
    content_id: str = CONTENT,
    access_type: str = "subscription",
    at: str | None = None,
    expires: str | None = None,
) -> dict[str, Any]:
    command = {
        "type": "access.grant",
        "user_id": user_id,
        "content_id": content_id,
        "access_type": access_type,
        "occurred_at": at or t(2),
    }
    if expires is not None:
        command["expires_at"] = expires
    return command


def play(
    user_id: str,
    position: int,
    duration: int = 100,
    content_id: str = CONTENT,
    at: str | None = None,
) -> dict[str, Any]:
    return {
        "type": "playback.progress",
        "user_id": user_id,
        "content_id": content_id,
        "position_seconds": position,
        "duration_seconds": duration,
        "occurred_at": at or t(4),
    }


def catalogue() -> list[dict[str, Any]]:
    """An organization, a creator, two customers and one video."""
    return [org(), user("creator"), user("alice"), user("bob"), publish()]


def append(ledger: Ledger, *commands: dict[str, Any] | str) -> list[Result]:
    lines = [c if isinstance(c, str) else json.dumps(c) for c in commands]
    return [result for _, result in api.append_lines(ledger, lines)]


def catalogue_and_purchase(settings: Settings, intent: str) -> None:
    """The catalogue and one completed purchase appended to ``settings``' schema: rows in
    every money table (reference and, on Citus, distributed), keys between them."""
    app = api.open_ledger(settings)
    try:
        assert statuses(append(app, *catalogue(), complete(intent))) == ["accepted"] * 6
    finally:
        app.close()


# lines per transaction when a test needs a log built, not the path that wrote it
HISTORY_GROUP = 128


def load_history(ledger: Ledger, purchases: int, *more: dict[str, Any]) -> list[Result]:
    """The demo's history (and ``more`` commands after it), appended by group commit:
    every line decided as it would be alone (``tests/property/test_group_equivalence.py``
    holds the answers and the rows to one by one), in a fraction of the transactions. The
    demo's 300-odd lines one by one took these tests' setups 1.2-1.4 s. Appended once per
    test process, then copied row for row into the next tests' schemas when the copy is
    exact (``tests/histories.py``)."""
    lines = [orjson.dumps(c) for c in [*demo.history(purchases=purchases), *more]]
    return [result for _, result in histories.append_lines(ledger, lines, HISTORY_GROUP)]


def at_once(apps: tuple[Ledger, ...], command: dict[str, Any]) -> list[list[Result]]:
    """``command`` sent by each ledger from a thread of its own, all released together (a
    barrier): each delivery dated when its ledger identifies it."""
    start = threading.Barrier(len(apps))
    answered: list[list[Result]] = [[] for _ in apps]

    def send(which: int) -> None:
        start.wait()
        answered[which] = append(apps[which], command)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(apps))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answered


def log_of(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """The log's events in order, without what the clock stamps (the state's timestamp).
    A person's aggregates are keyed by their random subject (docs/privacy.md), so each
    aggregate is named by where it first appears, not by its id."""
    rows = conn.execute(
        "SELECT notification_id, originator_id, originator_version, topic "
        "FROM ledger_events ORDER BY notification_id"
    ).fetchall()
    first: dict[Any, int] = {}
    return [(n, first.setdefault(o, len(first)), v, topic) for n, o, v, topic in rows]


def statuses(results: list[Result]) -> list[str]:
    return [r.status if r.error is None else f"{r.status}:{r.error.code}" for r in results]


def dump(conn: psycopg.Connection[Any], table: str) -> list[tuple[Any, ...]]:
    """Every row, every column, ordered by primary key: a table's exact content."""
    query = sql.SQL("SELECT * FROM {} ORDER BY id").format(sql.Identifier(table))
    return conn.execute(query).fetchall()


def dump_all(conn: psycopg.Connection[Any]) -> dict[str, list[tuple[Any, ...]]]:
    return {table: dump(conn, table) for table in TABLES}


def event_count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM ledger_events").fetchone()
    return int(row[0]) if row else 0


def cli(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The ``ledger`` command, run in this process (``tests.commandline``)."""
    return commandline.run(env, *args, stdin=stdin)


def cli_process(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The ``ledger`` command in a process of its own: where the process is what is tested."""
    return subprocess.run(
        [sys.executable, "-m", "ledger", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
    )


def answers(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def stream(count: int, prefix: str) -> str:
    """``count`` purchase completions as JSON Lines, payment intents ``prefix0``, ``prefix1``..."""
    return "".join(
        json.dumps(complete(f"{prefix}{n}", customer="alice" if n % 2 else "bob")) + "\n"
        for n in range(count)
    )


def feed(process: subprocess.Popen[str], payload: str) -> None:
    """Writes the stream; the appender may be killed, or stop reading, while we write."""
    assert process.stdin is not None
    try:
        process.stdin.write(payload)
        process.stdin.close()
    except (BrokenPipeError, ValueError):
        pass


def appender(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """``ledger append [args] -`` running, its stdin, stdout and stderr piped (text)."""
    return subprocess.Popen(
        [sys.executable, "-m", "ledger", "append", *args, "-"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def foreign_user_state(user_id: str = "foreign") -> str:
    """A well-formed ``UserRegistered`` state of the current version, for tests that insert
    into the log without the ledger (the log's shape trigger refuses anything that would not
    decode, and an earlier version as a new event)."""
    return json.dumps(
        {
            "timestamp": {"_type_": "datetime_iso", "_data_": "2026-01-01T00:00:00+00:00"},
            "originator_topic": "User",
            "occurred_at": "2026-01-01T00:00:00.000000+00:00",
            "user_id": user_id,
            "source": "api",
            "correlation_id": None,
            "idempotency_key": None,
            "class_version": 2,
        }
    )


def subject(conn: psycopg.Connection[Any], user_id: str) -> str:
    """The subject the log names ``user_id`` by (docs/privacy.md): what the ids of their
    aggregates are derived from."""
    row = conn.execute("SELECT subject FROM ledger_subjects WHERE user_id = %s", (user_id,))
    found = row.fetchone()
    assert found is not None, f"{user_id!r} has no subject"
    return str(found[0])
