"""``ledger serve``'s heartbeats from 32 HTTP clients, two source trees side by side in one
run (docs/performance.md, "The CPU a heartbeat costs its caller and the service").

Each round measures ``benchmarks/serve.py``'s reference (8 processes, one line a
transaction) and then the service of each tree in turn (the order alternating from round to
round), each on a fresh schema, after a warm-up of a tenth of the run, with the same load
generator: rate, ratio to that round's reference, p50/p99, and the service's and
PostgreSQL's CPU a heartbeat. A tree is a directory holding ``ledger/`` (``git archive main |
tar -x -C DIR`` for main's): the service runs with it first on ``PYTHONPATH``.

``python -m benchmarks.serve_trees [--count N] [--rounds R] TREE...`` (the database:
``LEDGER_BENCH_DATABASE_URL`` or ``LEDGER_TEST_DATABASE_URL``), one JSON line a run.
"""

from __future__ import annotations

import argparse
import os

import orjson

from benchmarks import serve
from benchmarks.workload import drop

USERS = 400
CLIENTS = 32


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve_trees")
    parser.add_argument("--count", type=int, default=8000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("trees", nargs="+")
    args = parser.parse_args()
    url = os.environ.get("LEDGER_BENCH_DATABASE_URL") or os.environ["LEDGER_TEST_DATABASE_URL"]
    trees = [os.path.abspath(tree) for tree in args.trees]
    generator = serve.LoadGenerator()
    writers = serve.Writers()
    try:
        for round_ in range(args.rounds):
            settings = serve.prepared(url, USERS)
            try:
                lines = serve.heartbeat_lines(args.count, "ref-", USERS)
                reference = serve.per_line_processes(settings, lines, writers)
            finally:
                drop(settings)
            _print({"round": round_, "reference_cmd_s": reference})
            for tree in trees if round_ % 2 == 0 else trees[::-1]:
                settings = serve.prepared(url, USERS)
                service = serve.Service(settings, tree)
                try:
                    warm = serve.heartbeat_lines(args.count // 10, "warm-", USERS)
                    serve.over_http(service, warm, CLIENTS, generator)
                    lines = serve.heartbeat_lines(args.count, f"c{CLIENTS}-", USERS)
                    measured = serve.over_http(service, lines, CLIENTS, generator)
                finally:
                    service.stop()
                    drop(settings)
                ratio = measured["rate"] / reference
                _print({"round": round_, "tree": tree, **measured, "ratio": ratio})
    finally:
        generator.close()
        writers.close()


def _print(row: dict[str, object]) -> None:
    row["load"] = os.getloadavg()[0]
    rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}
    print(orjson.dumps(rounded).decode(), flush=True)


if __name__ == "__main__":
    main()
