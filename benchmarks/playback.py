"""Issue 26's benchmarks: the playback store, each figure beside its reference in one run.

* 8 threads, one heartbeat per ``ledger.append`` call, vs raw single-row INSERT+COMMIT from
  8 threads (target >= 1.0): heartbeats no longer take the log's lock; a group of them is
  one statement (``playback_record``, migrations 0020 and 0025: a group of distinct
  heartbeats without the walk in order); a heartbeat is identified in its
  caller's thread and the lane gathers its callers (groups of about 8 for 8 threads, where
  they alternated around 4.5); ``benchmarks.playback_profile`` shows where a group's CPU goes.
* Log growth per heartbeat: bytes of ``ledger_events`` (table, indexes, TOAST) before and
  after (target 0), and the store's bytes per heartbeat.
* ``ledger playback compact`` of N heartbeats (1M in a full run): seconds, and the
  client's peak memory (the fold runs in the server: one INSERT ... SELECT ... GROUP BY).
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import psycopg
from psycopg import sql

import ledger
from benchmarks import references, workload
from benchmarks.concurrent import USERS, VIEWERS, paired, threaded_appends
from ledger import api, config
from ledger.playback import partitions


def _bytes(conn: psycopg.Connection[Any], schema: str, table: str) -> int:
    row = conn.execute(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s "
        "AND c.relkind IN ('r', 'p') AND (c.relname = %s OR c.relname LIKE %s)",
        (schema, table, f"{table}\\_p%"),
    ).fetchone()
    return int(row[0]) if row else 0


def bench_playback(url: str, quick: bool, pairs: int, threads: int = 8) -> list[dict[str, Any]]:
    beats = 400 if quick else 8000
    raw_rows = 400 if quick else 8000
    growth: dict[str, float] = {}
    # where the time goes: CPU per heartbeat (this process, its server backends) on each
    # side, and the groups the heartbeats were committed in
    cpu: dict[bool, list[dict[str, float | None]]] = {True: [], False: []}
    groups: list[tuple[int, float]] = []

    # the workload's settings are explicit: the lanes are taken from the environment here,
    # as ``ledger serve`` takes them (they were not, so runs "with two lanes" ran one)
    lanes = config.count("LEDGER_PLAYBACK_LANES", os.environ.get("LEDGER_PLAYBACK_LANES") or "1")
    in_flight = config.count(
        "LEDGER_PLAYBACK_IN_FLIGHT", os.environ.get("LEDGER_PLAYBACK_IN_FLIGHT") or "1"
    )

    def side(ledger_side: bool) -> float:
        meter = references.Meter(url)
        with workload.scratch_schema(url) as scratch:
            settings = replace(scratch, playback_lanes=lanes, playback_in_flight=in_flight)
            if not ledger_side:
                count = raw_rows // threads * threads
                rate = references.raw_inserts(url, settings.schema, count, 200, threads, meter)
                cpu[False].append(meter.per(count))
                return rate
            mine = [range(t, VIEWERS, threads) for t in range(threads)]
            per_thread = [workload.heartbeat_commands(v, beats // threads, 1) for v in mine]
            with ledger.open_ledger(settings) as app:
                workload.prepare(app, USERS, VIEWERS)
                # each viewer's first heartbeat creates its row and the day's partition
                threaded_appends(app, [workload.heartbeat_commands(v, len(v)) for v in mine])
                with psycopg.connect(url, autocommit=True) as conn:
                    log_before = _bytes(conn, settings.schema, "ledger_events")
                    store_before = _bytes(conn, settings.schema, partitions.PARENT)
                rate, _ = threaded_appends(app, per_thread, groups, meter)
                cpu[True].append(meter.per(beats // threads * threads))
                with psycopg.connect(url, autocommit=True) as conn:
                    growth["log"] = _bytes(conn, settings.schema, "ledger_events") - log_before
                    growth["store"] = (
                        _bytes(conn, settings.schema, partitions.PARENT) - store_before
                    ) / (beats // threads * threads)
            return rate

    on, off, ratio = paired(side, pairs, f"{threads} threads, heartbeats (store)")
    results: list[dict[str, Any]] = [
        {
            "name": f"{threads} threads, one heartbeat per call (playback store)",
            "key": "playback_threads",
            "ledger": on,
            "reference": off,
            "unit": f"heartbeats/s vs raw INSERT+COMMIT rows/s ({threads} threads)",
            "ratio": ratio,
            "target": 1.0,
            **_cpu(cpu),
            "lanes": lanes,
            "in_flight": in_flight,
            "groups": len(groups),
            "group_size": statistics.mean(g[0] for g in groups) if groups else None,
            "group_ms": statistics.mean(g[1] for g in groups) * 1000 if groups else None,
        },
        {
            "name": "log growth per heartbeat",
            "key": "playback_log_growth",
            "ledger": float(growth.get("log", 0)),
            "reference": None,
            "unit": f"bytes of ledger_events for {beats} heartbeats (target 0); "
            f"the store: {growth.get('store', 0):.0f} B per heartbeat",
            "ratio": None,
            "target": None,
        },
    ]
    results.append(bench_compact(url, 20_000 if quick else 1_000_000))
    return results


def _cpu(cpu: dict[bool, list[dict[str, float | None]]]) -> dict[str, float | None]:
    """The median CPU milliseconds per operation of each side, client and server."""
    out: dict[str, float | None] = {}
    for ledger_side, prefix in ((True, "ledger"), (False, "raw")):
        for part in ("client_cpu_ms", "server_cpu_ms"):
            values = [v for m in cpu[ledger_side] if (v := m[part]) is not None]
            out[f"{prefix}_{part}"] = statistics.median(values) if values else None
    return out


def bench_compact(url: str, count: int) -> dict[str, Any]:
    """Compaction of ``count`` heartbeats over 10 days and 10,000 (user, content) pairs,
    written straight into the store (its records as the writer leaves them)."""
    with workload.scratch_schema(url) as settings:
        schema = settings.schema
        with psycopg.connect(url, autocommit=True) as conn:
            days = _days(10)
            partitions.create(conn, schema, days)
            started = time.perf_counter()
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (identity, occurred_at, user_id, content_id, "
                    "organization_id, position_seconds, duration_seconds, completed) "
                    "SELECT md5(i::text), %s::timestamptz + (i %% 10) * interval '1 day' "
                    "+ (i / 10) * interval '1 ms', 'u' || (i %% 10000), "
                    "gen_random_uuid(), gen_random_uuid(), i %% 3600, 3600, i %% 3600 >= 3420 "
                    "FROM generate_series(1, %s) i"
                ).format(sql.Identifier(schema, partitions.PARENT)),
                (partitions.bounds(days[0])[0], count),
            )
            loaded = time.perf_counter() - started
        peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        done = api.playback_compact(settings, partitions.bounds(days[-1])[1])
        seconds = time.perf_counter() - started
        peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"  compact: {done.records:,} heartbeats, {done.partitions} partitions, "
        f"{done.pairs:,} rows in {seconds:.1f} s (loading them took {loaded:.1f} s)",
        file=sys.stderr,
    )
    return {
        "name": f"playback compact of {count:,} heartbeats",
        "key": "playback_compact",
        "ledger": seconds,
        "reference": loaded,
        "unit": "seconds vs seconds of one INSERT ... SELECT of them "
        f"(client peak memory grew {max(0, peak_after - peak_before) // 1024} MB)",
        "ratio": seconds / loaded if loaded else None,
        "target": None,
    }


def _days(n: int) -> list[date]:
    first = date(2026, 1, 1)
    return [first + timedelta(days=k) for k in range(n)]
