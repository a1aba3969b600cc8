"""Issue 16's append benchmarks, each side by side with its raw reference.

* N threads each calling ``ledger.append(app, command)`` on one opened ledger, one
  command per call (purchases, or heartbeats), vs raw single-row INSERT+COMMIT from N
  threads; per-call latency (p50, p99) of the purchase load.
* One writer, one purchase per call, vs the same appends' SQL captured from a real
  run and replayed raw.

Every pair runs both sides back to back in fresh schemas, the order alternating
(``paired``), and reports the median of the pairwise ratios: the load other work puts on a
shared machine hits both sides alike.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

import ledger
from benchmarks import references, workload
from ledger.commands.base import Command

USERS = 200  # with workload.VIDEOS, 10,000 distinct (customer, video) pairs
VIEWERS = 200  # customers who bought video 0, pairs [0, VIEWERS)


def paired(
    measure: Callable[[bool], float], pairs: int, label: str = ""
) -> tuple[float, float, float]:
    """(median with, median without, median of the pairwise ratios) of ``measure(True)``
    against ``measure(False)``: each pair measures both back to back, the order
    alternating, so the drift of a shared machine hits both sides alike."""
    on, off, ratios = [], [], []
    for n in range(pairs):
        got = {side: measure(side) for side in ((True, False) if n % 2 == 0 else (False, True))}
        on.append(got[True])
        off.append(got[False])
        ratios.append(got[True] / got[False])
        if label:
            print(
                f"  {label}: pair {n + 1}/{pairs}: {got[True]:,.0f} vs {got[False]:,.0f}"
                f" ({ratios[-1]:.2f})",
                file=sys.stderr,
                flush=True,
            )
    return statistics.median(on), statistics.median(off), statistics.median(ratios)


def threaded_appends(
    app: Any,
    per_thread: Sequence[Sequence[Command]],
    groups: list[tuple[int, float]] | None = None,
    meter: references.Meter | None = None,
) -> tuple[float, list[float]]:
    """(commands/s, per-call latencies in ms) of one thread per list, each calling
    ``ledger.append(app, command)`` for its commands in turn; every one must be accepted.
    Where the ledger group-commits, each group's (size, seconds) goes to ``groups``."""
    latencies: list[list[float]] = [[] for _ in per_thread]
    refused: list[Any] = []
    observe = getattr(ledger.api, "observe_groups", None)
    if groups is not None and observe is not None:
        observe(app, lambda size, seconds: groups.append((size, seconds)))

    def work(index: int) -> None:
        mine = latencies[index]
        for command in per_thread[index]:
            started = time.perf_counter()
            result = ledger.append(app, command)
            mine.append((time.perf_counter() - started) * 1000)
            if result.status != "accepted":
                refused.append(result)

    seconds = references.in_threads(work, len(per_thread), meter)
    assert not refused, refused[:3]
    done = sum(len(x) for x in latencies)
    return done / seconds, [ms for x in latencies for ms in x]


def event_sizes(url: str) -> dict[str, int]:
    """Mean stored size of the events of one purchase, and of one heartbeat's record."""
    sizes = {}
    for kind in ("purchase", "heartbeat"):
        with workload.scratch_schema(url) as settings:
            with ledger.open_ledger(settings) as app:
                workload.prepare(app, users=4, viewers=1)
                before = _head(settings)
                command = (
                    workload.purchase_commands(1, "pi_size_", 4, first=1)[0]
                    if kind == "purchase"
                    else workload.heartbeat_commands(range(1), 1)[0]
                )
                assert ledger.append(app, command).status == "accepted"
            sizes[kind] = (
                _mean_size(settings, before) if kind == "purchase" else _record_size(settings)
            )
    return sizes


def _record_size(settings: ledger.Settings) -> int:
    """A heartbeat is a record of the playback store since issue 26, not an event."""
    with psycopg.connect(settings.url, autocommit=True) as conn:
        row = conn.execute(
            psycopg.sql.SQL("SELECT avg(pg_column_size(h.*))::int FROM {} h").format(
                psycopg.sql.Identifier(settings.schema, "playback_heartbeats")
            )
        ).fetchone()
    assert row is not None and row[0] is not None
    return int(row[0])


def _head(settings: ledger.Settings) -> int:
    with psycopg.connect(settings.url, autocommit=True) as conn:
        row = conn.execute(
            psycopg.sql.SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(
                psycopg.sql.Identifier(settings.schema, "ledger_events")
            )
        ).fetchone()
    return int(row[0]) if row else 0


def _mean_size(settings: ledger.Settings, after: int) -> int:
    with psycopg.connect(settings.url, autocommit=True) as conn:
        row = conn.execute(
            psycopg.sql.SQL(
                "SELECT avg(24 + octet_length(topic) + octet_length(state))::int FROM {}"
                " WHERE notification_id > %s"
            ).format(psycopg.sql.Identifier(settings.schema, "ledger_events")),
            (after,),
        ).fetchone()
    assert row is not None and row[0] is not None
    return int(row[0])


def bench_threads(
    url: str,
    quick: bool,
    pairs: int,
    threads: int = 8,
    users: int = USERS,
    viewers: int = VIEWERS,
    smoke: bool = False,
) -> list[dict[str, Any]]:
    """N threads of purchases, then of heartbeats, each vs raw INSERT+COMMIT from N threads.
    ``users`` and ``viewers``: the set-up's customers and its buyers of video 0 (fewer in a
    smoke run: each side's set-up appends them, untimed). ``smoke``: half the ``quick``
    counts, ten calls a thread, enough for every figure of the table; not a measurement."""
    sizes = event_sizes(url)
    purchases = 80 if smoke else 160 if quick else 2000
    beats = 160 if smoke else 320 if quick else 4000
    raw_rows = 200 if smoke else 400 if quick else 8000
    latencies: list[float] = []
    groups: dict[str, list[tuple[int, float]]] = {"purchases": [], "heartbeats": []}
    cpu: dict[tuple[str, bool], list[dict[str, float | None]]] = {}

    def metered(kind: str, ledger_side: bool, count: int) -> references.Meter:
        meter = references.Meter(url)
        cpu.setdefault((kind, ledger_side), [])
        pending.append((kind, ledger_side, count, meter))
        return meter

    pending: list[tuple[str, bool, int, references.Meter]] = []

    def raw_side(settings: ledger.Settings, kind: str, size: int) -> float:
        count = raw_rows // threads * threads
        meter = metered(kind, False, count)
        return references.raw_inserts(url, settings.schema, count, size, threads, meter)

    def purchase_side(ledger_side: bool) -> float:
        with workload.scratch_schema(url) as settings:
            if not ledger_side:
                return raw_side(settings, "purchases", sizes["purchase"])
            commands = workload.purchase_commands(purchases, "pi_t_", users, first=viewers)
            with ledger.open_ledger(settings) as app:
                workload.prepare(app, users, viewers)
                rate, ms = threaded_appends(
                    app,
                    [commands[t::threads] for t in range(threads)],
                    groups["purchases"],
                    metered("purchases", True, purchases // threads * threads),
                )
            latencies.extend(ms)
            return rate

    def heartbeat_side(ledger_side: bool) -> float:
        with workload.scratch_schema(url) as settings:
            if not ledger_side:
                return raw_side(settings, "heartbeats", sizes["heartbeat"])
            mine = [range(t, viewers, threads) for t in range(threads)]
            per_thread = [workload.heartbeat_commands(v, beats // threads, 1) for v in mine]
            with ledger.open_ledger(settings) as app:
                workload.prepare(app, users, viewers)
                # each viewer's first heartbeat opens its playback: not the steady state
                threaded_appends(app, [workload.heartbeat_commands(v, len(v)) for v in mine])
                rate, _ = threaded_appends(
                    app,
                    per_thread,
                    groups["heartbeats"],
                    metered("heartbeats", True, beats // threads * threads),
                )
            return rate

    bought = paired(purchase_side, pairs, f"{threads} threads, purchases")
    watched = paired(heartbeat_side, pairs, f"{threads} threads, heartbeats")
    for kind, side, count, meter in pending:
        cpu[(kind, side)].append(meter.per(count))
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return [
        {
            "name": f"{threads} threads, one purchase per call",
            "key": "threads_purchases",
            "ledger": bought[0],
            "reference": bought[1],
            "unit": f"commands/s vs raw INSERT+COMMIT rows/s ({threads} threads, "
            f"{sizes['purchase']} B rows)",
            "ratio": bought[2],
            "target": 0.4,
            **_group_figures(groups["purchases"]),
            **_cpu_figures(cpu, "purchases"),
        },
        {
            "name": f"{threads} threads, one heartbeat per call",
            "key": "threads_heartbeats",
            "ledger": watched[0],
            "reference": watched[1],
            "unit": f"commands/s vs raw INSERT+COMMIT rows/s ({threads} threads, "
            f"{sizes['heartbeat']} B rows)",
            "ratio": watched[2],
            "target": 0.8,
            **_group_figures(groups["heartbeats"]),
            **_cpu_figures(cpu, "heartbeats"),
        },
        {
            "name": f"latency of one call, {threads}-thread purchase load",
            "key": "latency",
            "ledger": p99,
            "reference": None,
            "unit": f"p99 ms (p50 {p50:.2f} ms, {len(latencies)} calls)",
            "ratio": None,
            "target": None,
            "p50_ms": p50,
            "p99_ms": p99,
        },
    ]


def _cpu_figures(
    cpu: dict[tuple[str, bool], list[dict[str, float | None]]], kind: str
) -> dict[str, Any]:
    """Median CPU milliseconds per command (ledger) and per row (raw), client and server."""
    out: dict[str, Any] = {}
    for side, name in ((True, "ledger"), (False, "raw")):
        for part in ("client_cpu_ms", "server_cpu_ms"):
            values = [m[part] for m in cpu.get((kind, side), []) if m[part] is not None]
            out[f"{name}_{part}"] = statistics.median(values) if values else None
    return out


def _group_figures(groups: list[tuple[int, float]]) -> dict[str, Any]:
    """Mean commands per committed group and mean milliseconds per group (none where the
    ledger does not group-commit)."""
    if not groups:
        return {"groups": 0}
    return {
        "groups": len(groups),
        "group_size": statistics.mean(g[0] for g in groups),
        "group_ms": statistics.mean(g[1] for g in groups) * 1000,
    }


def bench_replay(
    url: str, quick: bool, pairs: int, users: int = USERS, viewers: int = VIEWERS
) -> list[dict[str, Any]]:
    """One writer, one purchase per call, vs the SQL those appends sent, replayed raw
    (``users`` and ``viewers``: the set-up's, as in ``bench_threads``).

    A capture run (not timed) records every statement the ledger's connections executed,
    per append; each pair then appends the same commands through the ledger in a fresh
    schema, and replays the captured statements (retargeted to another fresh schema,
    the set-up replayed first, untimed) on one connection.
    """
    count = 100 if quick else 1000
    commands = workload.purchase_commands(count, "pi_r_", users, first=viewers)
    capture = references.Capture()
    with (
        workload.scratch_schema(url) as source,
        ledger.open_ledger(source) as app,
        references.recording(capture),
    ):
        workload.prepare(app, users, viewers)
        capture.mark()
        for command in commands:
            assert ledger.append(app, command).status == "accepted"
            capture.mark()
    setup, appends = capture.groups[0], capture.groups[1:]
    assert len(appends) == count and all(appends), "every append sent its SQL"
    statements = sum(len(g) for g in appends) / count

    def side(ledger_side: bool) -> float:
        with workload.scratch_schema(url) as settings:
            if ledger_side:
                with ledger.open_ledger(settings) as app:
                    workload.prepare(app, users, viewers)
                    return clocked(lambda: [ledger.append(app, c) for c in commands], True)
            moved = [references.retarget(g, source.schema, settings.schema) for g in appends]
            with psycopg.connect(url, autocommit=True) as conn:
                references.replay(conn, references.retarget(setup, source.schema, settings.schema))
                return clocked(lambda: [references.replay(conn, g) for g in moved], False)

    def clocked(run: Callable[[], object], ledger_side: bool) -> float:
        """Appends (or replayed transactions) per second of ``run``, its CPU metered."""
        meter = references.Meter(url)
        meters.append((ledger_side, meter))
        meter.start()
        started = time.perf_counter()
        run()
        seconds = time.perf_counter() - started
        meter.stop()
        return count / seconds

    cpu: dict[tuple[str, bool], list[dict[str, float | None]]] = {
        ("replay", True): [],
        ("replay", False): [],
    }
    meters: list[tuple[bool, references.Meter]] = []

    measured = paired(side, pairs, "1 writer vs replayed SQL")
    for ledger_side, meter in meters:
        cpu[("replay", ledger_side)].append(meter.per(count))
    return [
        {
            "name": "1 writer, one purchase per transaction",
            "key": "replay",
            "ledger": measured[0],
            "reference": measured[1],
            "unit": f"commands/s vs the same SQL replayed raw ({statements:.0f} statements "
            "per append) transactions/s",
            "ratio": measured[2],
            "target": 0.75,
            **_cpu_figures(cpu, "replay"),
        }
    ]
