"""What the stream's guarantees cost appends (``--only stream``): the NOTIFY each append
sends and the insert-lock trigger, each measured against its absence in alternating pairs."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import psycopg
from psycopg import sql

from benchmarks.concurrent import paired
from benchmarks.per_command import with_notify, without_notify, writer_processes
from benchmarks.references import in_threads, row_table
from benchmarks.workload import drop, purchase_lines, scratch, setup_lines
from ledger import api
from ledger.config import Settings


def rate_in_threads(work: Callable[[int], None], count: int, threads: int) -> float:
    """Operations per second of ``work`` run in ``threads`` threads, ``count`` in all."""
    per_thread = count // threads
    return per_thread * threads / in_threads(lambda _: work(per_thread), threads)


def pipelined_commits(url: str, schema: str, count: int, threads: int, notify: bool) -> float:
    """Transactions per second of ``BEGIN; INSERT; [NOTIFY;] COMMIT`` sent as one pipeline
    (one round trip, as the recorder sends an append)."""
    insert = row_table(url, schema, "notify_rows")
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
            accepted, rate = writer_processes(context, manager, jobs)
            assert accepted == sum(len(j[3]) for j in jobs), accepted
            return rate

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
