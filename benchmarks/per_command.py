"""The per-command append suite (``--only append``): one durable transaction per
purchase, from one writer and from eight writer processes, against raw INSERT+COMMIT and
against a bare ``eventsourcing`` Application (issue 6's figures, kept for comparison)."""

from __future__ import annotations

import multiprocessing
import time
import uuid
from typing import Any

import psycopg
from psycopg import sql

from benchmarks.references import raw_inserts
from benchmarks.workload import drop, purchase_lines, scratch, setup_lines
from ledger import api
from ledger.config import Settings
from ledger.log import statements as log_statements


def ledger_appends(settings: Settings, warm_up: list[bytes], lines: list[bytes]) -> float:
    """Commands per second of one writer, each its own durable transaction, cache warm."""
    with api.open_ledger(settings) as app:
        list(api.append_lines(app, warm_up))
        started = time.perf_counter()
        results = [r for _, r in api.append_lines(app, lines)]
        elapsed = time.perf_counter() - started
    assert all(r.status == "accepted" for r in results), {r.status for r in results}
    return len(lines) / elapsed


def _append_process(
    url: str,
    schema: str,
    warm_up: list[bytes],
    lines: list[bytes],
    barrier: Any,
    notify: bool = True,
) -> tuple[int, float, float]:
    """One writer process: warms its cache, waits for the others, then appends.

    Returns (accepted, started, finished) on the shared monotonic clock, so the
    parent measures from the first start to the last finish, without process start-up.
    ``notify=False`` measures the append without its NOTIFY (``without_notify``).
    """
    if not notify:
        without_notify()
    with api.open_ledger(Settings(url=url, schema=schema)) as app:
        list(api.append_lines(app, warm_up))
        barrier.wait()
        started = time.perf_counter()
        accepted = sum(1 for _, r in api.append_lines(app, lines) if r.status == "accepted")
        return accepted, started, time.perf_counter()


def writer_processes(context: Any, manager: Any, jobs: list[tuple[Any, ...]]) -> tuple[int, float]:
    """(commands accepted, commands/s) of one ``_append_process`` per job, from the first
    writer's start to the last one's finish; shuts ``manager`` down."""
    with context.Pool(len(jobs)) as pool:
        outcomes = pool.starmap(_append_process, jobs)
    manager.shutdown()
    accepted = sum(o[0] for o in outcomes)
    return accepted, accepted / (max(o[2] for o in outcomes) - min(o[1] for o in outcomes))


def bare_eventsourcing(url: str, count: int) -> float:
    """A plain eventsourcing Application saving one aggregate per command."""
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    class Sale(Aggregate):
        @event("Completed")
        def __init__(self, intent: str, amount: int) -> None:
            self.intent = intent
            self.amount = amount

    params = psycopg.conninfo.conninfo_to_dict(url)
    schema = f"bench_es_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(params.get("dbname")),
        "POSTGRES_HOST": str(params.get("host")),
        "POSTGRES_PORT": str(params.get("port") or 5432),
        "POSTGRES_USER": str(params.get("user")),
        "POSTGRES_PASSWORD": str(params.get("password") or ""),
        "POSTGRES_SCHEMA": schema,
    }
    app: Application[Any] = Application(env=env)
    started = time.perf_counter()
    for n in range(count):
        app.save(Sale(f"pi_{n}", 1999))
    rate = count / (time.perf_counter() - started)
    app.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    return rate


def bench_append(url: str, quick: bool) -> list[dict[str, Any]]:
    count = 400 if quick else 4000
    users = 200  # with VIDEOS, 10,000 distinct (customer, video) pairs
    settings = scratch(url)
    try:
        with api.open_ledger(settings) as app:
            list(api.append_lines(app, setup_lines(users)))
        # pairs [0, users) warm the caches; then each command buys another (customer, video)
        warm_up = purchase_lines(users, "pi_warm_", users)
        lines = purchase_lines(count, "pi_one_", users, first=users)
        ledger_rate = ledger_appends(settings, warm_up, lines)
        raw_rate = raw_inserts(url, settings.schema, count, len(lines[0]), 1)
        bare_rate = bare_eventsourcing(url, count)
        writers = 8
        context = multiprocessing.get_context("spawn")
        manager = context.Manager()
        barrier = manager.Barrier(writers)
        jobs = [
            (
                url,
                settings.schema,
                purchase_lines(users, f"pi_warm{w}_", users),
                purchase_lines(
                    count // writers,
                    f"pi_w{w}_",
                    users,
                    first=users + count + w * (count // writers),
                ),
                barrier,
            )
            for w in range(writers)
        ]
        accepted, many_rate = writer_processes(context, manager, jobs)
        assert accepted == count // writers * writers, accepted
        raw_many = raw_inserts(url, settings.schema, count, len(lines[0]), writers)
    finally:
        drop(settings)
    return [
        {
            "name": "append, 1 writer",
            "ledger": ledger_rate,
            "reference": raw_rate,
            "unit": "commands/s vs raw INSERT+COMMIT rows/s",
            "ratio": ledger_rate / raw_rate,
            "target": 0.6,
        },
        {
            "name": "append, 1 writer vs bare eventsourcing",
            "ledger": ledger_rate,
            "reference": bare_rate,
            "unit": "commands/s vs Application.save/s",
            "ratio": ledger_rate / bare_rate,
            "target": None,
        },
        {
            "name": "append, 8 writers",
            "ledger": many_rate,
            "reference": raw_many,
            "unit": "commands/s vs raw rows/s (8 threads)",
            "ratio": many_rate / raw_many,
            "target": 0.5,
        },
    ]


def without_notify() -> None:
    """Replaces the append's NOTIFY with a statement that does nothing (``SELECT 1``, so
    the pipeline keeps its shape): the append as it was before it notified."""
    log_statements.notify_sql = _no_notify  # type: ignore[assignment]


def with_notify() -> None:
    log_statements.notify_sql = _NOTIFY


def _no_notify(channel: str) -> sql.Composable:
    return _SELECT_ONE


_SELECT_ONE = sql.SQL("SELECT 1")
_NOTIFY = log_statements.notify_sql
