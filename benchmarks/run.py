"""The ledger against the physical limit, side by side (``python -m benchmarks``).

Prints a table and writes JSON (benchmarks/results/latest.json by default). Each
figure is a ratio against its reference measured in the same run on the same server.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg import sql

from ledger import api
from ledger import store as ledger_store
from ledger.config import Settings
from projections.registry import TABLES

ORG = "00000000-0000-4000-8000-0000000000aa"


def scratch(url: str) -> Settings:
    settings = Settings(url=url, schema=f"bench_{uuid.uuid4().hex[:10]}")
    api.upgrade(settings)
    return settings


def drop(settings: Settings) -> None:
    with psycopg.connect(settings.url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(settings.schema))
        )
        conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(settings.schema + "_copyref")
            )
        )


VIDEOS = 50


def video(index: int) -> str:
    return f"00000000-0000-4000-8000-{index:012d}"


def setup_lines(users: int) -> list[bytes]:
    lines = [
        orjson.dumps({"type": "organization.register", "organization_id": ORG, "name": "Bench"}),
        orjson.dumps({"type": "user.register", "user_id": "creator"}),
    ]
    lines += [
        orjson.dumps(
            {
                "type": "content.publish",
                "content_id": video(v),
                "organization_id": ORG,
                "creator_id": "creator",
                "title": f"Video {v}",
            }
        )
        for v in range(VIDEOS)
    ]
    lines += [orjson.dumps({"type": "user.register", "user_id": f"u{n}"}) for n in range(users)]
    return lines


def purchase_lines(count: int, prefix: str, users: int, first: int = 0) -> list[bytes]:
    """``count`` purchases, each of another (customer, video) pair from pair ``first`` on."""
    assert first + count <= users * VIDEOS, "not enough distinct (customer, video) pairs"
    return [
        orjson.dumps(
            {
                "type": "purchase.complete",
                "stripe_payment_intent_id": f"{prefix}{n}",
                "customer_id": f"u{n % users}",
                "content_id": video(n // users),
                "amount_paid_cents": 1999,
                "currency": "usd",
                "platform_fee_cents": 199,
                "organization_fee_cents": 800,
                "creator_payout_cents": 1000,
            }
        )
        for n in range(first, first + count)
    ]


def raw_inserts(url: str, schema: str, count: int, payload: int, threads: int) -> float:
    """Rows per second of single-row INSERT + COMMIT (autocommit), a row of ``payload`` bytes."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, body text)").format(
                sql.Identifier(schema, "raw_rows")
            )
        )
    statement = sql.SQL("INSERT INTO {} (body) VALUES (%s)").format(
        sql.Identifier(schema, "raw_rows")
    )
    body = "x" * payload

    def work(n: int) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            for _ in range(n):
                conn.execute(statement, (body,), prepare=True)

    return rate_in_threads(work, count, threads)


def rate_in_threads(work: Callable[[int], None], count: int, threads: int) -> float:
    """Operations per second of ``work`` run in ``threads`` threads, ``count`` in all."""
    started = time.perf_counter()
    workers = [threading.Thread(target=work, args=(count // threads,)) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return (count // threads * threads) / (time.perf_counter() - started)


def paired(measure: Callable[[bool], float], pairs: int) -> tuple[float, float, float]:
    """(median with, median without, median of the pairwise ratios) of ``measure(True)``
    against ``measure(False)``: each pair measures both back to back, the order
    alternating, so the drift of a shared machine hits both sides alike."""
    on, off, ratios = [], [], []
    for n in range(pairs):
        got = {side: measure(side) for side in ((True, False) if n % 2 == 0 else (False, True))}
        on.append(got[True])
        off.append(got[False])
        ratios.append(got[True] / got[False])
    return statistics.median(on), statistics.median(off), statistics.median(ratios)


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
        with context.Pool(writers) as pool:
            outcomes = pool.starmap(_append_process, jobs)
        manager.shutdown()
        accepted = sum(o[0] for o in outcomes)
        assert accepted == count // writers * writers, accepted
        many_rate = accepted / (max(o[2] for o in outcomes) - min(o[1] for o in outcomes))
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


def pipelined_commits(url: str, schema: str, count: int, threads: int, notify: bool) -> float:
    """Transactions per second of ``BEGIN; INSERT; [NOTIFY;] COMMIT`` sent as one pipeline
    (one round trip, as the recorder sends an append)."""
    table = sql.Identifier(schema, "notify_rows")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, body text)").format(
                table
            )
        )
    insert = sql.SQL("INSERT INTO {} (body) VALUES (%s)").format(table)
    notify_statement = sql.SQL("NOTIFY {}").format(sql.Identifier(f"{schema}_bench"))

    def work(n: int) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            cursor = conn.cursor()
            for _ in range(n):
                with conn.pipeline():
                    cursor.execute(b"BEGIN")
                    cursor.execute(insert, ("x" * 200,), prepare=True)
                    if notify:
                        cursor.execute(notify_statement)
                    cursor.execute(b"COMMIT")

    return rate_in_threads(work, count, threads)


def without_notify() -> None:
    """Replaces the append's NOTIFY with a statement that does nothing (``SELECT 1``, so
    the pipeline keeps its shape): the append as it was before it notified."""
    ledger_store._notify_sql = _no_notify  # type: ignore[assignment]


def with_notify() -> None:
    ledger_store._notify_sql = _NOTIFY


def _no_notify(channel: str) -> sql.Composable:
    return _SELECT_ONE


_SELECT_ONE = sql.SQL("SELECT 1")
_NOTIFY = ledger_store._notify_sql


def _notify_row(name: str, unit: str, measured: tuple[float, float, float]) -> dict[str, Any]:
    with_, without, ratio = measured
    return {
        "name": name,
        "ledger": with_,
        "reference": without,
        "unit": unit,
        "ratio": ratio,
        "target": None,
    }


def bench_stream(url: str, quick: bool) -> list[dict[str, Any]]:
    """What the stream's guarantees cost appends: the NOTIFY each append sends (for the
    library's subscribers) and the trigger that takes the log's lock, each side
    measured against the other in alternating pairs (``paired``): bare commits with and
    without it (with and without a listening process), purchases with it and with
    ``SELECT 1`` in its place, and purchases while a library subscriber follows."""
    count = 100 if quick else 400
    pairs = 3 if quick else 7
    settings = scratch(url)
    results = []
    try:
        for threads, listen in ((1, False), (1, True), (8, False), (8, True)):
            with listening(url, f"{settings.schema}_bench") if listen else nullcontext():
                measured = paired(
                    lambda notify, t=threads: pipelined_commits(  # type: ignore[misc]
                        url, settings.schema, count, t, notify
                    ),
                    pairs,
                )
            name = f"NOTIFY per commit, {threads} writer{'s' if threads > 1 else ''}"
            results.append(
                _notify_row(
                    name + (", a listener" if listen else ""),
                    "commits/s with NOTIFY vs without (BEGIN; INSERT; COMMIT pipelined)",
                    measured,
                )
            )
    finally:
        drop(settings)
    return results + bench_append_notify(url, quick)


def bench_append_notify(url: str, quick: bool) -> list[dict[str, Any]]:
    """Purchases per second with the append's NOTIFY vs ``SELECT 1`` in its place (one
    writer in this process, then eight writer processes), with the insert-lock trigger vs
    without it, and with a library subscriber following the log from another process vs
    none."""
    users = 400  # 20,000 distinct (customer, video) pairs
    per_round = 60 if quick else 150
    writers = 8
    settings = scratch(url)
    pairs = iter(range(20_000))

    def fresh(count: int, prefix: str) -> list[bytes]:
        first = next(pairs)
        for _ in range(count - 1):
            next(pairs)
        return purchase_lines(count, prefix, users, first=users + first)

    try:
        with api.open_ledger(settings) as app:
            list(api.append_lines(app, setup_lines(users)))
            list(api.append_lines(app, purchase_lines(users, "pi_n_warm_", users)))

            def one_writer(notify: bool) -> float:
                with_notify() if notify else without_notify()
                lines = fresh(per_round, f"pi_n{notify}_{time.monotonic_ns()}_")
                try:
                    started = time.perf_counter()
                    results = [r for _, r in api.append_lines(app, lines)]
                    rate = len(lines) / (time.perf_counter() - started)
                finally:
                    with_notify()
                assert all(r.status == "accepted" for r in results)
                return rate

            def subscribed(on: bool) -> float:
                if not on:
                    return one_writer(True)
                context = multiprocessing.get_context("spawn")
                ready, done = context.Event(), context.Event()
                child = context.Process(
                    target=_subscriber, args=(settings.url, settings.schema, ready, done)
                )
                child.start()
                try:
                    ready.wait(60)
                    return one_writer(True)
                finally:
                    done.set()
                    child.join()

            def insert_lock(on: bool) -> float:
                state = sql.SQL("ENABLE ALWAYS" if on else "DISABLE")
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute(
                        sql.SQL("ALTER TABLE {} {} TRIGGER ledger_events_insert_lock").format(
                            sql.Identifier(settings.schema, "ledger_events"), state
                        )
                    )
                return one_writer(True)

            one = paired(one_writer, 3 if quick else 7)
            locked = paired(insert_lock, 3 if quick else 7)
            following = paired(subscribed, 2 if quick else 4)

        def many_writers(notify: bool) -> float:
            context = multiprocessing.get_context("spawn")
            manager = context.Manager()
            barrier = manager.Barrier(writers)
            tag = time.monotonic_ns()
            jobs = [
                (
                    url,
                    settings.schema,
                    fresh(10, f"pi_nw{tag}_{w}_"),
                    fresh(per_round // 2, f"pi_nm{tag}_{w}_"),
                    barrier,
                    notify,
                )
                for w in range(writers)
            ]
            with context.Pool(writers) as pool:
                outcomes = pool.starmap(_append_process, jobs)
            manager.shutdown()
            accepted = sum(o[0] for o in outcomes)
            assert accepted == sum(len(j[3]) for j in jobs), accepted
            return accepted / (max(o[2] for o in outcomes) - min(o[1] for o in outcomes))

        many = paired(many_writers, 1 if quick else 3)
    finally:
        drop(settings)
    unit = "commands/s with the NOTIFY vs with SELECT 1 in its place"
    return [
        _notify_row("append with NOTIFY vs without, 1 writer", unit, one),
        _notify_row(f"append with NOTIFY vs without, {writers} writers", unit, many),
        _notify_row(
            "append with the insert-lock trigger vs without, 1 writer",
            "commands/s with ledger_events_insert_lock vs the trigger disabled",
            locked,
        ),
        _notify_row(
            "append, 1 writer, a library subscriber following",
            "commands/s with a recorder.subscribe() process following vs none",
            following,
        ),
    ]


def _listener(url: str, channel: str, ready: Any, done: Any) -> None:
    """A process LISTENing on ``channel`` and draining it, as a library subscriber does."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        ready.set()
        while not done.is_set():
            for _ in conn.notifies(timeout=0.2):
                pass


@contextmanager
def listening(url: str, channel: str) -> Iterator[None]:
    context = multiprocessing.get_context("spawn")
    ready, done = context.Event(), context.Event()
    child = context.Process(target=_listener, args=(url, channel, ready, done))
    child.start()
    try:
        ready.wait(60)
        yield
    finally:
        done.set()
        child.join()


def _subscriber(url: str, schema: str, ready: Any, done: Any) -> None:
    """A process following the ledger's log with the library's ``recorder.subscribe()``."""
    with api.open_ledger(Settings(url=url, schema=schema)) as app:
        recorder = app.recorder
        with recorder.subscribe(gt=recorder.max_notification_id()) as follower:

            def stop_when_done() -> None:
                done.wait()
                follower.stop()

            threading.Thread(target=stop_when_done).start()
            ready.set()
            for _ in follower:
                pass


def _rebuild_child(url: str, schema: str, queue: Any) -> None:
    import io

    from projections.rebuild import rebuild

    started = time.perf_counter()
    report = rebuild(Settings(url=url, schema=schema), stream=io.StringIO())
    queue.put(
        (
            time.perf_counter() - started,
            report.events,
            sum(report.rows.values()),
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        )
    )


def bench_rebuild(url: str, sizes: list[int], runner_limit: int) -> list[dict[str, Any]]:
    """Rebuild vs COPY at each size; vs the library's runner up to ``runner_limit`` events."""
    from benchmarks import library_runner
    from benchmarks.synthetic import write_log

    results = []
    for size in sizes:
        settings = scratch(url)
        try:
            with api.open_ledger(settings) as app, psycopg.connect(url, autocommit=True) as conn:
                events = write_log(conn, app, settings.schema, size)
            context = multiprocessing.get_context("spawn")
            queue = context.Queue()
            child = context.Process(target=_rebuild_child, args=(url, settings.schema, queue))
            child.start()
            seconds, _, rows, peak_kb = queue.get()
            child.join()
            copy_seconds = bare_copy(settings)
            audit_seconds = audit_time(settings)
            runner_seconds = library_runner.run(settings) if size <= runner_limit else None
        finally:
            drop(settings)
        results.append(
            {
                "name": f"rebuild, {events} events",
                "ledger": events / seconds,
                "reference": events / copy_seconds,
                "unit": "events/s (rebuild) vs events/s (COPY of the final rows)",
                "ratio": copy_seconds / seconds,
                "target": 0.5,
                "rows": rows,
                "seconds": seconds,
                "copy_seconds": copy_seconds,
                "peak_rss_mb": peak_kb / 1024,
            }
        )
        if runner_seconds is not None:
            results.append(
                {
                    "name": f"rebuild vs library ProjectionRunner, {events} events",
                    "ledger": events / seconds,
                    "reference": events / runner_seconds,
                    "unit": "events/s (rebuild) vs events/s (ProjectionRunner)",
                    "ratio": runner_seconds / seconds,
                    "target": None,
                    "seconds": seconds,
                    "runner_seconds": runner_seconds,
                }
            )
        results.append(
            {
                "name": f"audit revenue, {events} events",
                "ledger": audit_seconds,
                "reference": None,
                "unit": "seconds",
                "ratio": None,
                "target": None,
            }
        )
    return results


def bare_copy(settings: Settings) -> float:
    """COPY the rebuilt tables' rows into fresh tables with the same indexes and constraints."""
    from ledger import migrations

    target = settings.schema + "_copyref"
    with psycopg.connect(settings.url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(target)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(target)))
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(target)))
        for migration in migrations.projection_migrations():
            conn.execute(migration.up.encode())
        dumps = {}
        for table in TABLES:
            buffer = bytearray()
            with conn.cursor().copy(
                sql.SQL("COPY {} TO STDOUT").format(sql.Identifier(settings.schema, table))
            ) as copy:
                for chunk in copy:
                    buffer += chunk
            dumps[table] = bytes(buffer)
        started = time.perf_counter()
        with conn.transaction():
            for table, data in dumps.items():
                with conn.cursor().copy(
                    sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(target, table))
                ) as copy:
                    copy.write(data)
        return time.perf_counter() - started


def audit_time(settings: Settings) -> float:
    from ledger.audit.revenue import RevenueQuery, revenue

    with psycopg.connect(settings.url, autocommit=True) as conn:
        started = time.perf_counter()
        revenue(conn, settings.schema, RevenueQuery(group_by="month"))
        return time.perf_counter() - started


def bench_access_check(url: str, rows: int) -> list[dict[str, Any]]:
    from ledger.access import can_play

    settings = scratch(url)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(settings.schema)))
            conn.execute("INSERT INTO organizations (id, name) VALUES (%s, 'Bench')", (ORG,))
            contents = [f"00000000-0000-4000-8000-{n:012d}" for n in range(100)]
            with conn.cursor().copy("COPY users (id) FROM STDIN") as copy:
                for n in range(rows // 100):
                    copy.write_row((f"u{n}",))
            with conn.cursor().copy("COPY content (id, organization_id, title) FROM STDIN") as copy:
                for c in contents:
                    copy.write_row((c, ORG, "T"))
            with conn.cursor().copy(
                "COPY content_access (user_id, content_id, organization_id, access_type) FROM STDIN"
            ) as copy:
                for n in range(rows):
                    copy.write_row((f"u{n // 100}", contents[n % 100], ORG, "purchased"))
            conn.execute("ANALYZE content_access")
            samples = []
            for n in range(2000):
                user, content = f"u{(n * 7919) % (rows // 100)}", contents[(n * 31) % 100]
                started = time.perf_counter()
                can_play(conn, user, content)
                samples.append((time.perf_counter() - started) * 1000)
    finally:
        drop(settings)
    samples.sort()
    p50, p99 = statistics.median(samples), samples[int(len(samples) * 0.99)]
    return [
        {
            "name": f"access check, {rows} rows",
            "ledger": p99,
            "reference": 1.0,
            "unit": f"p99 ms (p50 {p50:.3f} ms) vs 1 ms budget",
            "ratio": 1.0 / p99,
            "target": 1.0,
            "p50_ms": p50,
            "p99_ms": p99,
        }
    ]


def _serve() -> Any:
    from benchmarks import serve  # imports this module: loaded when chosen

    return serve


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("LEDGER_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--only", choices=("append", "rebuild", "access", "stream", "serve"), action="append"
    )
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "latest.json"
    )
    parser.add_argument(
        "--sizes", default=None, help="rebuild/audit log sizes, e.g. 10000,100000,1000000"
    )
    parser.add_argument(
        "--runner-limit",
        type=int,
        default=20_000,
        help="compare with the library's ProjectionRunner on logs up to this size "
        "(it commits once per event, so it is slow on large logs)",
    )
    args = parser.parse_args()
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else ([5000] if args.quick else [10_000, 100_000])
    )
    chosen = set(args.only or ("append", "rebuild", "access", "stream", "serve"))
    suites: list[tuple[str, Callable[[], list[dict[str, Any]]]]] = [
        ("append", lambda: bench_append(args.database_url, args.quick)),
        ("rebuild", lambda: bench_rebuild(args.database_url, sizes, args.runner_limit)),
        (
            "access",
            lambda: bench_access_check(args.database_url, 20_000 if args.quick else 1_000_000),
        ),
        ("stream", lambda: bench_stream(args.database_url, args.quick)),
        ("serve", lambda: _serve().bench_serve(args.database_url, args.quick)),
    ]
    results: list[dict[str, Any]] = []
    for name, run in suites:
        if name in chosen:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            results.extend(run())
    print(f"{'benchmark':<44}{'ledger':>12}{'reference':>12}{'ratio':>8}{'target':>8}  unit")
    for r in results:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        target = "-" if r["target"] is None else f"{r['target']:.2f}"
        reference = "-" if r["reference"] is None else f"{r['reference']:.1f}"
        ledger = f"{r['ledger']:.1f}" if r["ledger"] >= 100 else f"{r['ledger']:.3f}"
        print(f"{r['name']:<44}{ledger:>12}{reference:>12}{ratio:>8}{target:>8}  {r['unit']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cores": os.cpu_count(), "python": sys.version.split()[0]}
    with psycopg.connect(args.database_url) as conn:
        machine["postgres"] = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    print(f"wrote {args.json}", file=sys.stderr)
    return 0
