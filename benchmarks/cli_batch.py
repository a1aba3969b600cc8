"""``ledger append --batch N`` of a playback-heavy file, run as the real CLI in a
subprocess, vs raw single-row INSERT+COMMIT from one thread.

The file is 80 % heartbeats (viewers who bought video 0) and 20 % purchases (each of
another customer and video), interleaved as a platform's feed would be. Set-up (the
organization, videos, customers and the viewers' purchases) is appended beforehand and
not timed; the CLI's own start-up (interpreter, imports, opening the ledger) is, as a
user running it would see it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

import ledger
from benchmarks import references, workload
from benchmarks.concurrent import paired


def batch_available() -> bool:
    """Whether this ledger's ``append`` takes ``--batch`` (group commit in the CLI)."""
    shown = subprocess.run(
        [sys.executable, "-m", "ledger", "append", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    return "--batch" in shown.stdout


def feed(lines: int, users: int, viewers: int) -> list[bytes]:
    """Every fifth line a purchase (pairs from ``viewers`` on), the rest heartbeats,
    round robin over the viewers."""
    out: list[bytes] = []
    bought = beats = 0
    for n in range(lines):
        if n % 5 == 4:
            out.append(orjson.dumps(workload.purchase(viewers + bought, "pi_b_", users)))
            bought += 1
        else:
            out.append(orjson.dumps(workload.heartbeat(beats % viewers, beats // viewers)))
            beats += 1
    assert viewers + bought <= users * workload.VIDEOS
    return out


def run_cli(settings: ledger.Settings, path: Path, batch: int, lines: int) -> float:
    """Lines per second of ``ledger append --batch N FILE``, start-up included; every line
    must be answered ``accepted``."""
    env = dict(os.environ, LEDGER_DATABASE_URL=settings.url, LEDGER_SCHEMA=settings.schema)
    with tempfile.TemporaryFile() as answers:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "ledger", "append", "--batch", str(batch), str(path)],
            env=env,
            stdout=answers,
            stderr=subprocess.PIPE,
            check=False,
        )
        seconds = time.perf_counter() - started
        answers.seek(0)
        accepted = answers.read().count(b'"accepted"')
    if done.returncode != 0 or accepted != lines:
        raise RuntimeError(
            f"ledger append --batch {batch} exited {done.returncode}, {accepted} of {lines} "
            f"lines accepted: {done.stderr.decode(errors='replace').strip()[-500:]}"
        )
    return lines / seconds


def bench_batch(
    url: str, quick: bool, pairs: int, batch: int, smoke: bool = False
) -> list[dict[str, Any]]:
    """``smoke``: the smallest file that still makes several batches and every kind of
    line (the test suite's run: every figure produced, none meant as a measurement)."""
    lines = 400 if smoke else 2000 if quick else 100_000
    users, viewers = (20, 20) if smoke else (100, 100) if quick else (1000, 1000)
    raw_rows = 100 if smoke else 300 if quick else 3000
    name = f"`ledger append --batch {batch}`, {lines:,} lines (80 % heartbeats)"
    row: dict[str, Any] = {
        "name": name,
        "key": "batch",
        "unit": "lines/s (CLI subprocess, start-up included) vs raw INSERT+COMMIT rows/s "
        "(1 thread)",
        "target": 1.0,
    }
    if not batch_available():
        return [{**row, "ledger": None, "reference": None, "ratio": None, "note": "not available"}]
    sizes = {}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "feed.jsonl"
        path.write_bytes(b"\n".join(feed(lines, users, viewers)) + b"\n")

        def side(ledger_side: bool) -> float:
            with workload.scratch_schema(url) as settings:
                if not ledger_side:
                    size = sizes.setdefault("row", _event_size(url))
                    return references.raw_inserts(url, settings.schema, raw_rows, size, 1)
                with ledger.open_ledger(settings) as app:
                    workload.prepare(app, users, viewers)
                return run_cli(settings, path, batch, lines)

        measured = paired(side, pairs, f"append --batch {batch}")
    return [{**row, "ledger": measured[0], "reference": measured[1], "ratio": measured[2]}]


def _event_size(url: str) -> int:
    from benchmarks.concurrent import event_sizes

    sizes = event_sizes(url)
    # the file's events: four per purchase, one per heartbeat, four heartbeats a purchase
    return (4 * sizes["purchase"] + 4 * sizes["heartbeat"]) // 8
