"""Where a group of heartbeats spends its CPU (issue 26, docs/performance.md): 8 threads,
one heartbeat per ``ledger.append``, beside raw single-row INSERT+COMMIT from 8 threads in
the same run; every appending thread under cProfile (the group's leader is one of them).

``python -m benchmarks.playback_profile [--beats N] [--top K]`` prints, for each side, the
CPU milliseconds per item (this process; the server backends of its connections), the
groups (size, milliseconds), the statements and round trips per group (counted at
psycopg's ``execute``), and the client's profile by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import time
from typing import Any

import psycopg

import ledger
from benchmarks import references, workload
from benchmarks.concurrent import USERS, VIEWERS


def profile(url: str, beats: int, threads: int, top: int) -> dict[str, Any]:
    out: dict[str, Any] = {"load": os.getloadavg()[0]}
    with workload.scratch_schema(url) as settings:
        meter = references.Meter(url)
        count = beats // threads * threads
        out["raw_rows_s"] = references.raw_inserts(url, settings.schema, count, 200, threads, meter)
        out["raw"] = meter.per(count)
    with workload.scratch_schema(url) as settings:
        mine = [range(t, VIEWERS, threads) for t in range(threads)]
        per_thread = [workload.heartbeat_commands(v, beats // threads, 1) for v in mine]
        groups: list[tuple[int, float]] = []
        with ledger.open_ledger(settings) as app:
            workload.prepare(app, USERS, VIEWERS)
            for v in mine:  # each viewer's first heartbeat: its row and the day's partition
                for c in workload.heartbeat_commands(v, len(v)):
                    ledger.append(app, c)
            ledger.api.observe_groups(app, lambda size, seconds: groups.append((size, seconds)))
            statements = _count_statements()
            profiles = [cProfile.Profile(time.thread_time) for _ in range(threads)]

            def work(index: int) -> None:
                if top:
                    profiles[index].enable()
                try:
                    for command in per_thread[index]:
                        result = ledger.append(app, command)
                        assert result.status == "accepted", result
                finally:
                    profiles[index].disable()

            meter = references.Meter(url)
            seconds = references.in_threads(work, threads, meter)
            total = sum(len(p) for p in per_thread)
            out["ledger_hb_s"] = total / seconds
            out["ledger"] = meter.per(total)
            out["groups"] = len(groups)
            out["group_size"] = statistics.mean(g[0] for g in groups)
            out["group_ms"] = statistics.mean(g[1] for g in groups) * 1000
            out["statements_per_group"] = statements["n"] / max(1, len(groups))
            out["round_trips_per_group"] = statements["syncs"] / max(1, len(groups))
            stream = io.StringIO()
            if top:
                stats = pstats.Stats(profiles[0], stream=stream)
                for p in profiles[1:]:
                    stats.add(p)
                stats.sort_stats("tottime").print_stats(top)
            out["profile"] = stream.getvalue()
    out["ratio"] = out["ledger_hb_s"] / out["raw_rows_s"]
    return out


def _count_statements() -> dict[str, int]:
    """Counts the statements the ledger's connections execute, and the round trips (a
    pipeline's statements travel together: one round trip per ``sync``)."""
    counts = {"n": 0, "syncs": 0}
    execute = psycopg.Cursor.execute

    def counted(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        counts["n"] += 1
        if self.connection._pipeline is None:
            counts["syncs"] += 1
        return execute(self, query, params, **kwargs)

    psycopg.Cursor.execute = counted  # type: ignore[method-assign]
    original = psycopg.Pipeline.sync

    def synced(self: Any) -> None:
        counts["syncs"] += 1
        original(self)

    psycopg.Pipeline.sync = synced  # type: ignore[method-assign]
    return counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--beats", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    url = os.environ.get("LEDGER_BENCH_DATABASE_URL") or os.environ["LEDGER_TEST_DATABASE_URL"]
    out = profile(url, args.beats, args.threads, args.top)
    text = out.pop("profile")
    for k, v in out.items():
        print(f"{k}: {v}")
    print(text)


if __name__ == "__main__":
    main()
