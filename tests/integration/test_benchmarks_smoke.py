"""``python -m benchmarks`` at tiny sizes produces every row of issue 16's table.

Nothing here is timed: speed is measured by the benchmarks themselves, side by side
with their references; this test only checks that the entry point runs through and
reports a number for each row.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from benchmarks.cli_batch import batch_available
from benchmarks.serve import bench_serve

ROOT = Path(__file__).resolve().parents[2]
ROWS = (
    "threads_purchases",
    "threads_heartbeats",
    "batch",
    "replay",
    "rebuild",
    "latency",
    "scale",
    "memory",
    "access",
    "audit",
)


def test_benchmarks_produce_every_row_of_the_table(database_url: str, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    suites = [a for s in ("threads", "replay", "batch", "rebuild", "access") for a in ("--only", s)]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--smoke",
            "--pairs",
            "1",
            "--sizes",
            "2000",
            "--runner-limit",
            "0",
            "--database-url",
            database_url,
            "--json",
            str(out),
            *suites,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    rows = {row["key"]: row for row in report["table"]}
    assert tuple(rows) == ROWS
    batch = batch_available()
    for key, row in rows.items():
        value = row["value"]
        if key == "batch" and not batch:
            assert value is None and row["figure"] == "not available"
            continue
        assert isinstance(value, int | float) and math.isfinite(value) and value > 0, row
        assert row["met"] in ("yes", "**no**", "-"), row
    for key in ("threads_purchases", "threads_heartbeats", "replay", "rebuild"):
        assert rows[key]["ratio"] > 0 and rows[key]["met"] != "-", rows[key]
    assert report["run"]["cores"] >= 1 and report["run"]["date"]
    # the table is printed too, with the run's date and machine
    assert "| benchmark | figure | reference | ratio | target | met |" in done.stdout
    assert report["run"]["date"] in done.stdout


def test_the_serve_benchmark_reports_rates_latencies_and_where_the_cpu_went(
    database_url: str,
) -> None:
    """The serve suite at a tiny size: every run answered (it asserts that itself), and
    each figure the table and docs/performance.md quote is there and plausible. As many
    customers as commands a run (the benchmark's 400 registered and granted in each of six
    schemas otherwise): each viewer's heartbeat still comes once a run, as at 400. 80
    commands a run: ten per writer process and per client of the 8, and the 32 clients
    still all busy at once (a command or three each); a smoke, not a measurement."""
    rows = {r["name"]: r for r in bench_serve(database_url, quick=True, count=80, users=80)}
    for kind in ("heartbeats", "purchases"):
        assert rows[f"serve: {kind}, 8 procs x 1 line/txn"]["ledger"] > 0
        for clients in (8, 32):
            run = f"serve: {kind}, {clients}"
            assert rows[f"{run} HTTP clients"]["ratio"] > 0
            assert 0 < rows[f"{run} clients p50"]["ledger"] <= rows[f"{run} clients p99"]["ledger"]
            assert rows[f"{run} clients service CPU per command"]["ledger"] > 0
            assert rows[f"{run} clients PostgreSQL CPU per command"]["ledger"] > 0
            assert rows[f"{run} clients mean group commit"]["ledger"] >= 1
    assert rows["serve: purchases, 32 HTTP clients"]["target"] == 3.0
    assert rows["serve: heartbeats, 32 HTTP clients"]["target"] == 5.0
    assert rows["serve: heartbeats, 32 clients p99"]["target"] == 50.0
