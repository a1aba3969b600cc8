"""Where one playback lane's cycle goes in wall time (issue 26, docs/performance.md, "One
lane's cycle"): 8 threads, one heartbeat per ``ledger.append``, every group traced with
``time.perf_counter_ns`` from its first caller's enqueue to its callers' next enqueue;
beside it, 8 raw threads' INSERT and COMMIT timed apart.

``python -m benchmarks.playback_cycle [--beats N] [--split]`` prints, per group (medians,
microseconds): the first caller's enqueue to the lead's take (the gather), the take to the
statement's start (the group's JSON, a pooled connection), the statement (one round trip in
autocommit: the decision, the writes and the commit; ``--split`` sends the COMMIT apart to
time it, one more round trip), the statement's end to the callers woken, and the callers'
way back (woken to their next enqueue: the first, the mean, the last); and how many callers
queued while the group was in the server (what a second group in flight could take). The wrappers are
set on the classes for this process only: it is a probe, not the product's path.
"""

from __future__ import annotations

import argparse
import bisect
import os
import statistics
import threading
import time
import types
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import psycopg

import ledger
from benchmarks import references, workload
from benchmarks.concurrent import USERS, VIEWERS
from ledger import config
from ledger.commands.results import Result
from ledger.config import Settings
from ledger.playback import store as playback_store
from ledger.playback.statements import rendered
from ledger.service import group_commit
from ledger.service.lanes import Lanes

Trace = dict[str, Any]


_current = threading.local()


def _install(split: bool, attempt: bool = True) -> tuple[list[Trace], list[tuple[int, int]]]:
    """Wraps the committer and the store; returns the groups' traces and every
    (thread, enqueue ns)."""
    groups: list[Trace] = []
    enqueues: list[tuple[int, int]] = []
    current = _current
    made = group_commit._Call

    def call(*args: Any, **kwargs: Any) -> Any:
        c = made(*args, **kwargs)
        now = time.perf_counter_ns()
        setattr(c, "t_enqueue", now)  # noqa: B010
        setattr(c, "thread", threading.get_ident())  # noqa: B010 (the caller's own thread)
        enqueues.append((threading.get_ident(), now))
        return c

    group_commit._Call = call  # type: ignore[misc,assignment]
    take = group_commit.GroupCommitter._take

    def traced_take(self: Any) -> Any:
        group = take(self)
        trace: Trace = {
            "take": time.perf_counter_ns(),
            "first": min(getattr(c, "t_enqueue") for c in group),  # noqa: B009
            "size": len(group),
            "callers": [c for c in group if c.first],
        }
        current.trace = trace
        groups.append(trace)
        return group

    group_commit.GroupCommitter._take = traced_take  # type: ignore[method-assign]
    answer = group_commit.GroupCommitter._answer

    def traced_answer(self: Any, group: Any) -> None:
        trace = getattr(current, "trace", None)
        if trace is not None:
            trace["answer"] = time.perf_counter_ns()
        answer(self, group)
        if trace is not None:
            trace["answered"] = time.perf_counter_ns()
            trace["threads"] = [c.thread for c in trace.pop("callers")]

    group_commit.GroupCommitter._answer = traced_answer  # type: ignore[method-assign]
    if not attempt:
        pass
    elif not split:
        attempt_ = playback_store.PlaybackStore._attempt

        def traced_attempt(self: Any, heartbeats: Any, lookups: Any) -> Any:
            trace = getattr(current, "trace", None)
            execute = psycopg.Connection.execute

            def timed(conn: Any, *args: Any, **kwargs: Any) -> Any:
                if trace is not None:
                    trace["statement"] = time.perf_counter_ns()
                cursor = execute(conn, *args, **kwargs)
                if trace is not None:
                    trace["statement_end"] = trace["commit_end"] = time.perf_counter_ns()
                return cursor

            psycopg.Connection.execute = timed  # type: ignore[method-assign,assignment]
            try:
                return attempt_(self, heartbeats, lookups)
            finally:
                psycopg.Connection.execute = execute  # type: ignore[method-assign]

        playback_store.PlaybackStore._attempt = traced_attempt  # type: ignore[method-assign]
    else:

        def split_attempt(self: Any, heartbeats: Any, lookups: Any) -> Any:
            trace = getattr(current, "trace", None) or {}
            statements = rendered(self._schema)
            group = self._group.encode(heartbeats, lookups)
            with self._pool.connection() as conn:
                trace["statement"] = time.perf_counter_ns()
                rows = conn.execute(
                    statements["record"],
                    (group, playback_store.stream_lock(self._schema)),
                    prepare=True,
                ).fetchall()
                trace["statement_end"] = time.perf_counter_ns()
                conn.commit()
                trace["commit_end"] = time.perf_counter_ns()
            missing = self._missing(heartbeats, rows, lookups)
            if missing is not None:
                raise missing
            return [self._answer(h, r, lookups) for h, r in zip(heartbeats, rows, strict=True)]

        playback_store.PlaybackStore._attempt = split_attempt  # type: ignore[method-assign]
    return groups, enqueues


def _breakdown(groups: list[Trace], enqueues: list[tuple[int, int]]) -> dict[str, float]:
    """The medians (µs) of each stretch of a group's cycle."""
    by_thread: dict[int, list[int]] = {}
    for thread, at in enqueues:
        by_thread.setdefault(thread, []).append(at)
    for times in by_thread.values():
        times.sort()
    parts: dict[str, list[float]] = {
        k: []
        for k in (
            "gather",
            "to_statement",
            "statement",
            "commit",
            "to_answer",
            "answer",
            "back_first",
            "back_mean",
            "back_last",
            "cycle",
            "queued_in_flight",
        )
    }
    every = sorted(at for _, at in enqueues)
    full = [g for g in groups if "answered" in g and "statement" in g]
    for n, g in enumerate(full[10:-10], start=10):
        parts["gather"].append((g["take"] - g["first"]) / 1000)
        parts["to_statement"].append((g["statement"] - g["take"]) / 1000)
        parts["statement"].append((g["statement_end"] - g["statement"]) / 1000)
        parts["commit"].append((g["commit_end"] - g["statement_end"]) / 1000)
        parts["to_answer"].append((g["answer"] - g["commit_end"]) / 1000)
        parts["answer"].append((g["answered"] - g["answer"]) / 1000)
        back = []
        for thread in g["threads"]:
            later = [t for t in by_thread.get(thread, []) if t > g["answer"]]
            if later:
                back.append((later[0] - g["answer"]) / 1000)
        if back:
            parts["back_first"].append(min(back))
            parts["back_mean"].append(statistics.mean(back))
            parts["back_last"].append(max(back))
        parts["cycle"].append((full[n + 1]["take"] - g["take"]) / 1000)
        # callers queued while the group was in the server: what a second group could take
        parts["queued_in_flight"].append(
            bisect.bisect_right(every, g["commit_end"]) - bisect.bisect_left(every, g["statement"])
        )
    out = {k: statistics.median(v) for k, v in parts.items() if v}
    # the mean and the slowest tenth as well: under load (and with groups in flight at once)
    # the cycle's tail, not its median, is what the rate loses
    for k in ("cycle", "statement", "gather"):
        if parts[k]:
            out[f"{k}_mean"] = statistics.mean(parts[k])
            out[f"{k}_p90"] = statistics.quantiles(parts[k], n=10)[-1]
    out["group_size"] = statistics.mean(g["size"] for g in full)
    return out


def raw_split(url: str, schema: str, count: int, threads: int) -> dict[str, float]:
    """8 raw threads, each row's INSERT and its COMMIT timed apart (median µs), and the
    rows/s of that run."""
    statement = references.row_table(url, schema, "raw_rows")
    connections = [psycopg.connect(url) for _ in range(threads)]
    inserts: list[float] = []
    commits: list[float] = []
    try:
        text = statement.as_bytes(connections[0])
        per_thread = count // threads

        def work(index: int) -> None:
            conn = connections[index]
            for _ in range(per_thread):
                a = time.perf_counter_ns()
                conn.execute(text, ("x" * 200,), prepare=True)
                b = time.perf_counter_ns()
                conn.commit()
                c = time.perf_counter_ns()
                inserts.append((b - a) / 1000)
                commits.append((c - b) / 1000)

        seconds = references.in_threads(work, threads)
    finally:
        for conn in connections:
            conn.close()
    return {
        "raw_rows_s": per_thread * threads / seconds,
        "raw_insert_us": statistics.median(inserts),
        "raw_commit_us": statistics.median(commits),
    }


def cycle(url: str, beats: int, threads: int, split: bool) -> dict[str, float]:
    out: dict[str, float] = {"load": os.getloadavg()[0]}
    with workload.scratch_schema(url) as settings:
        count = beats // threads * threads
        out["raw_autocommit_rows_s"] = references.raw_inserts(
            url, settings.schema, count, 200, threads
        )
    with workload.scratch_schema(url) as settings:
        out.update(raw_split(url, settings.schema, beats, threads))
    with workload.scratch_schema(url) as scratch:
        # the workload's settings are explicit: the lanes from the environment, as serving
        lanes = config.count(
            "LEDGER_PLAYBACK_LANES", os.environ.get("LEDGER_PLAYBACK_LANES") or "1"
        )
        settings = replace(scratch, playback_lanes=lanes)
        mine = [range(t, VIEWERS, threads) for t in range(threads)]
        per_thread = [workload.heartbeat_commands(v, beats // threads, 1) for v in mine]
        with ledger.open_ledger(settings) as app:
            workload.prepare(app, USERS, VIEWERS)
            for v in mine:  # each viewer's first heartbeat: its row and the day's partition
                for c in workload.heartbeat_commands(v, len(v)):
                    ledger.append(app, c)
            groups, enqueues = _install(split)

            def work(index: int) -> None:
                for command in per_thread[index]:
                    result = ledger.append(app, command)
                    assert result.status == "accepted", result

            seconds = references.in_threads(work, threads)
            out["ledger_hb_s"] = sum(len(p) for p in per_thread) / seconds
            out.update(_breakdown(groups, enqueues))
    out["ratio"] = out["ledger_hb_s"] / out["raw_autocommit_rows_s"]
    return out


def stand_in(beats: int, threads: int, server_ms: float) -> dict[str, float]:
    """The same lane and callers with no database: the group's statement a sleep of
    ``server_ms`` (the server's part, fixed), so what is left of the cycle is the client's
    (the gather, the leader's share, the wake-ups, the callers' way back) and the process's
    CPU a heartbeat is the client's path alone."""
    out: dict[str, float] = {"load": os.getloadavg()[0]}
    ok = Result("accepted", position=1)

    def server(items: Sequence[Any]) -> list[Result]:
        trace = getattr(_current, "trace", None)
        if trace is not None:
            trace["statement"] = time.perf_counter_ns()
        time.sleep(server_ms / 1000)
        if trace is not None:
            trace["statement_end"] = trace["commit_end"] = time.perf_counter_ns()
        return [ok] * len(items)

    settings = Settings("postgresql://localhost/ledger")
    app = types.SimpleNamespace(groups=Lanes(server, server, settings))
    per_thread = [
        workload.heartbeat_commands(range(t, VIEWERS, threads), beats // threads, 1)
        for t in range(threads)
    ]
    groups, enqueues = _install(split=True, attempt=False)

    def work(index: int) -> None:
        for command in per_thread[index]:
            assert ledger.append(app, command) is ok  # type: ignore[arg-type]

    cpu = time.process_time()
    seconds = references.in_threads(work, threads)
    cpu = time.process_time() - cpu
    total = sum(len(p) for p in per_thread)
    out["hb_s"] = total / seconds
    out["client_cpu_us_a_heartbeat"] = cpu / total * 1e6
    out.update(_breakdown(groups, enqueues))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--beats", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--split", action="store_true")
    parser.add_argument("--stand-in", type=float, default=None, metavar="MS")
    args = parser.parse_args()
    if args.stand_in is not None:
        for k, v in stand_in(args.beats, args.threads, args.stand_in).items():
            print(f"{k}: {v:,.1f}")
        return
    url = os.environ.get("LEDGER_BENCH_DATABASE_URL") or os.environ["LEDGER_TEST_DATABASE_URL"]
    for k, v in cycle(url, args.beats, args.threads, args.split).items():
        print(f"{k}: {v:,.1f}")


if __name__ == "__main__":
    main()
