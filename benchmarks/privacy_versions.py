"""The pseudonymous log against the ledger as it was before subjects, side by side in one
run (issue 27, docs/performance.md): ``python -m benchmarks.privacy_versions --before DIR
[--database-url URL] [--count N] [--rounds R]``.

``DIR`` is a checkout of the commit before subjects landed (``git worktree add --detach
DIR 6597b29^``). Each round runs the same workload once with this checkout's code and once
with ``DIR``'s, each in a process of its own (``PYTHONPATH`` names the checkout), in
alternating order, on fresh schemas of the same database: appends of the same purchases,
one durable transaction per command and in groups of 100, then the access check
(``can_play``) on the rows they made. Each side reports its rate, its CPU seconds per
command (the client's: the server's work is the same statements, counted equal) and the
check's p99. The ratios are this checkout's rate over the one before (target at least
0.90) and its p99 over the one before (target: unchanged, about 1).

A third side, this checkout with the subjects switched off (``benchmarks.privacy``'s
switch), tells the subjects' own cost from whatever else changed between the two commits:
each ratio is printed against both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent

# runs in the checkout under test: only what both versions have (benchmarks.workload,
# ledger.api, ledger.reading.tables.can_play)
DRIVER = """
import json, sys, time
import psycopg
from psycopg import sql
from benchmarks.workload import purchase_lines, scratch_schema, setup_lines
from ledger import api
from ledger.reading.tables import can_play
import contextlib
url, count, grouped = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
users = 200
if sys.argv[4] == "plain":  # this checkout with the subjects switched off
    from benchmarks.privacy import plain as switch
else:
    switch = contextlib.nullcontext
with scratch_schema(url) as settings, switch():
    with api.open_ledger(settings) as app:
        list(api.append_lines(app, setup_lines(users)))
        lines = purchase_lines(count, "pi_", users)
        list(api.append_lines(app, purchase_lines(50, "warm_", users, first=count)))
        cpu, wall = time.process_time(), time.perf_counter()
        if grouped:
            groups = [lines[i : i + 100] for i in range(0, len(lines), 100)]
            results = [r for g in api.append_line_groups(app, groups) for _, r in g]
        else:
            results = [r for _, r in api.append_lines(app, lines)]
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert all(r.status == "accepted" for r in results), {r.status for r in results}
    with psycopg.connect(settings.url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(settings.schema)))
        pairs = conn.execute("SELECT user_id, content_id::text FROM content_access").fetchall()
        samples = []
        for n in range(2000):
            user, content = pairs[(n * 7919) % len(pairs)]
            started = time.perf_counter()
            assert can_play(conn, user, content)
            samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
print(json.dumps({"rate": count / wall, "cpu_ms": cpu * 1000 / count,
                  "p99_ms": samples[int(len(samples) * 0.99)]}))
"""


SIDES = ("now", "plain", "before")
"""This checkout; this checkout with subjects switched off (``benchmarks.privacy.plain``);
the checkout before subjects."""


def side(checkout: Path, url: str, count: int, grouped: bool, kind: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, url, str(count), "1" if grouped else "0", kind],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{checkout}: {done.stderr[-2000:]}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def measure(before: Path, url: str, count: int, rounds: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for grouped in (False, True):
        runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in SIDES}
        for number in range(rounds):
            order = SIDES[number % 3 :] + SIDES[: number % 3]  # each side first in turn
            for kind in order:
                checkout = before if kind == "before" else HERE
                runs[kind].append(side(checkout, url, count, grouped, kind))

        def median(kind: str, key: str, runs: dict[str, Any] = runs) -> float:
            return float(statistics.median(r[key] for r in runs[kind]))

        out["grouped" if grouped else "per_command"] = {
            **{f"{k}_{key}": median(k, key) for k in SIDES for key in runs["now"][0]},
            "rate_ratio": median("now", "rate") / median("before", "rate"),
            "cpu_ratio": median("now", "cpu_ms") / median("before", "cpu_ms"),
            "p99_ratio": median("now", "p99_ms") / median("before", "p99_ms"),
            "plain_rate_ratio": median("now", "rate") / median("plain", "rate"),
            "plain_cpu_ratio": median("now", "cpu_ms") / median("plain", "cpu_ms"),
            "plain_p99_ratio": median("now", "p99_ms") / median("plain", "p99_ms"),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.privacy_versions")
    parser.add_argument("--before", type=Path, required=True, metavar="DIR")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("LEDGER_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    for name, f in measure(args.before, args.database_url, args.count, args.rounds).items():
        for other in ("before", "plain"):
            prefix = "" if other == "before" else "plain_"
            print(
                f"{name}, now over {other}: rate {f['now_rate']:.0f}/s vs "
                f"{f[other + '_rate']:.0f}/s, ratio {f[prefix + 'rate_ratio']:.3f} "
                f"(target >= 0.90); CPU per command {f['now_cpu_ms']:.3f} ms vs "
                f"{f[other + '_cpu_ms']:.3f} ms, ratio {f[prefix + 'cpu_ratio']:.3f}; access "
                f"check p99 {f['now_p99_ms']:.3f} ms vs {f[other + '_p99_ms']:.3f} ms, ratio "
                f"{f[prefix + 'p99_ratio']:.3f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
