"""The rebuild's scale curve, its memory, the audit and the access check
(``--only rebuild``, ``--only access``)."""

from __future__ import annotations

import multiprocessing
import resource
import statistics
import sys
import time
from typing import Any

import psycopg
from psycopg import sql

from benchmarks.concurrent import paired
from benchmarks.references import copy_out_and_in
from benchmarks.workload import ORG, drop, scratch
from ledger import api
from ledger.config import Settings


def _rebuild_child(url: str, schema: str, queue: Any) -> None:
    import io

    from ledger.upkeep.rebuild import rebuild

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


def bench_rebuild(
    url: str, sizes: list[int], runner_limit: int, pairs: int = 1
) -> list[dict[str, Any]]:
    """At each size: the rebuild (in a process of its own, for its peak memory) vs COPY of
    the events out plus COPY of the final rows in, in ``pairs`` alternating pairs; the
    audit; and the library's runner up to ``runner_limit`` events."""
    return [row for size in sizes for row in _rebuild_at(url, size, runner_limit, pairs)]


def _rebuild_at(url: str, size: int, runner_limit: int, pairs: int) -> list[dict[str, Any]]:
    from benchmarks import library_runner
    from benchmarks.synthetic import write_log

    results = []
    settings = scratch(url)
    try:
        print(f"  writing a log of about {size:,} events", file=sys.stderr, flush=True)
        with api.open_ledger(settings) as app, psycopg.connect(url, autocommit=True) as conn:
            events = write_log(conn, app, settings.schema, size)
        runs: list[tuple[float, int, int]] = []
        copies: list[tuple[float, float]] = []

        def side(rebuild: bool) -> float:
            if rebuild:
                runs.append(_rebuild_in_child(url, settings.schema))
                return events / runs[-1][0]
            copies.append(copy_out_and_in(settings))
            return events / sum(copies[-1])

        rate, reference, ratio = paired(side, pairs, f"rebuild of {events:,} events vs COPY")
        audit_seconds = audit_time(settings)
        runner_seconds = library_runner.run(settings) if size <= runner_limit else None
    finally:
        drop(settings)
    out_seconds = statistics.median(c[0] for c in copies)
    in_seconds = statistics.median(c[1] for c in copies)
    results.append(
        {
            "name": f"rebuild, {events:,} events",
            "key": "rebuild",
            "events": events,
            "ledger": rate,
            "reference": reference,
            "unit": "events/s (rebuild) vs events/s (COPY of the events out + COPY of "
            "the final rows in)",
            "ratio": ratio,
            "target": 0.5,
            "rows": runs[0][1],
            "seconds": statistics.median(r[0] for r in runs),
            "copy_out_seconds": out_seconds,
            "copy_in_seconds": in_seconds,
            "peak_rss_mb": max(r[2] for r in runs) / 1024,
        }
    )
    if runner_seconds is not None:
        seconds = statistics.median(r[0] for r in runs)
        results.append(
            {
                "name": f"rebuild vs library ProjectionRunner, {events:,} events",
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
            "name": f"audit revenue, {events:,} events",
            "key": "audit",
            "events": events,
            "ledger": audit_seconds,
            "reference": out_seconds,
            "unit": "seconds vs seconds to COPY the log out (same log, same run)",
            "ratio": out_seconds / audit_seconds,
            "target": None,
        }
    )
    return results


def _rebuild_in_child(url: str, schema: str) -> tuple[float, int, int]:
    """(seconds, final rows, peak RSS in kB) of one rebuild in a fresh process."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_rebuild_child, args=(url, schema, queue))
    child.start()
    seconds, _, rows, peak_kb = queue.get()
    child.join()
    return seconds, rows, peak_kb


def audit_time(settings: Settings) -> float:
    from ledger.audit.revenue import RevenueQuery, revenue

    with psycopg.connect(settings.url, autocommit=True) as conn:
        started = time.perf_counter()
        revenue(conn, settings.schema, RevenueQuery(group_by="month"))
        return time.perf_counter() - started


def bench_access_check(url: str, rows: int) -> list[dict[str, Any]]:
    from ledger.reading.tables import can_play

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
            "name": f"access check, {rows:,} rows",
            "key": "access",
            "ledger": p99,
            "reference": 1.0,
            "unit": f"p99 ms (p50 {p50:.3f} ms) vs 1 ms budget",
            "ratio": 1.0 / p99,
            "target": 1.0,
            "p50_ms": p50,
            "p99_ms": p99,
        }
    ]
