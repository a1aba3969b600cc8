"""The ledger against what the design must do, side by side (``python -m benchmarks``).

Prints every figure, then issue 16's table (benchmark | figure | reference | ratio |
target | met) with the run's date and machine, and writes both as JSON
(benchmarks/results/latest.json by default). Each ratio is measured against its
reference in the same run, on the same server, in alternating pairs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import table
from benchmarks.cli_batch import bench_batch
from benchmarks.concurrent import USERS, VIEWERS, bench_replay, bench_threads
from benchmarks.per_command import bench_append
from benchmarks.playback import bench_playback
from benchmarks.scale import bench_access_check, bench_rebuild
from benchmarks.serve import bench_serve
from benchmarks.stream_cost import bench_stream

SMOKE_CUSTOMERS = 40  # --smoke's set-up of the threads and replay suites (200 otherwise)
SUITES = (
    "threads",
    "replay",
    "batch",
    "rebuild",
    "access",
    "append",
    "stream",
    "serve",
    "playback",
)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("LEDGER_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="--quick with the batch suite's file, the access table, the threads suite's "
        "calls and the threads and replay suites' set-up at their smallest meaningful sizes "
        "(400 lines in four batches, 2,000 grants, 80 purchases and 160 heartbeats from 8 "
        "threads, 40 customers): the test suite's check that every row is produced, not a "
        "measurement",
    )
    parser.add_argument(
        "--only",
        choices=SUITES,
        action="append",
        help="run this suite only (repeatable); default: all",
    )
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "latest.json"
    )
    parser.add_argument(
        "--sizes",
        default=None,
        help="rebuild/audit log sizes (default 10000,100000,1000000; --quick 5000)",
    )
    parser.add_argument(
        "--runner-limit",
        type=int,
        default=20_000,
        help="compare with the library's ProjectionRunner on logs up to this size "
        "(it commits once per event, so it is slow on large logs)",
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=None,
        help="alternating (ledger, reference) pairs per ratio (default 3; --quick 1)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=100, help="N of `ledger append --batch N` (default 100)"
    )
    parser.add_argument("--threads", type=int, default=8, help="threads of the thread harness")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    args.quick = args.quick or args.smoke
    url = args.database_url
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else ([5000] if args.quick else [10_000, 100_000, 1_000_000])
    )
    pairs = args.pairs or (1 if args.quick else 3)
    chosen = set(args.only or SUITES)
    # the threads and replay suites' set-up: customers, and buyers of video 0
    customers = (SMOKE_CUSTOMERS, SMOKE_CUSTOMERS) if args.smoke else (USERS, VIEWERS)
    suites: list[tuple[str, Callable[[], list[dict[str, Any]]]]] = [
        (
            "threads",
            lambda: bench_threads(
                url, args.quick, pairs, args.threads, *customers, smoke=args.smoke
            ),
        ),
        ("replay", lambda: bench_replay(url, args.quick, pairs, *customers)),
        (
            "batch",
            lambda: bench_batch(
                url, args.quick, max(1, pairs - 1), args.batch_size, smoke=args.smoke
            ),
        ),
        ("rebuild", lambda: bench_rebuild(url, sizes, args.runner_limit, max(1, pairs - 1))),
        (
            "access",
            lambda: bench_access_check(
                url, 2_000 if args.smoke else 20_000 if args.quick else 1_000_000
            ),
        ),
        ("append", lambda: bench_append(url, args.quick)),
        ("stream", lambda: bench_stream(url, args.quick)),
        ("serve", lambda: bench_serve(url, args.quick)),
        ("playback", lambda: bench_playback(url, args.quick, pairs, args.threads)),
    ]
    run = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), **machine(url)}
    results: list[dict[str, Any]] = []
    for name, suite in suites:
        if name in chosen:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            results.extend(suite())
    run["load_after"] = os.getloadavg()[0]
    rows = table.issue16(results)
    print(table.figures(results))
    print()
    print(table.markdown(rows, run))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"run": run, "machine": run, "table": rows, "results": results}, indent=2)
    )
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


def machine(url: str) -> dict[str, Any]:
    """What the run ran on: cores, CPU, versions, and the load when it started (the
    machine may be shared)."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return {
        "cores": os.cpu_count(),
        "cpu": model or platform.processor(),
        "system": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "psycopg": psycopg.__version__,
        "postgres": str(row[0]) if row else "?",
        "load_before": os.getloadavg()[0],
    }
