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
            "--quick",
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
