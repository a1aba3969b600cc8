"""What the pseudonymous log costs appends (issue 27, docs/privacy.md), side by side in
one run: ``python -m benchmarks.privacy [--database-url URL] [--count N] [--rounds R]``.

Each round appends the same purchases twice, on fresh schemas, in alternating order: once
as the ledger runs (each command's people swapped for their subjects, the rows' subjects
turned back into ids), once with that swap switched off (the service decides on the ids
as given, as before issue 27). Both as one durable transaction per command and in groups
of 100 (``Ledger.execute_group``, the service's path). The ratio is the pseudonymous
rate over the plain one: the target is at least 0.90 (appends at most 10 % slower).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from benchmarks.workload import purchase_lines, scratch_schema, setup_lines
from ledger import api
from ledger.commands.base import Command
from ledger.privacy.subjects import Subjects
from ledger.service import pseudonyms
from ledger.service.unit_of_work import UnitOfWork

USERS = 200


@contextmanager
def plain() -> Iterator[None]:
    """The service without subjects: the ids pass through as given."""
    saved = pseudonyms.pseudonymous, pseudonyms.warm

    def through(uow: UnitOfWork, subjects: Any, command: Command) -> tuple[Command, dict[str, str]]:
        return command, {}

    def skip(uow: UnitOfWork, subjects: Subjects, commands: Sequence[Command]) -> None:
        return None

    pseudonyms.pseudonymous = through
    pseudonyms.warm = skip
    try:
        yield
    finally:
        pseudonyms.pseudonymous, pseudonyms.warm = saved


def rate(url: str, count: int, grouped: bool) -> float:
    with scratch_schema(url) as settings, api.open_ledger(settings) as app:
        list(api.append_lines(app, setup_lines(USERS)))
        lines = purchase_lines(count, "pi_", USERS)
        list(api.append_lines(app, purchase_lines(50, "warm_", USERS, first=count)))
        started = time.perf_counter()
        if grouped:
            groups = [lines[i : i + 100] for i in range(0, len(lines), 100)]
            results = [r for g in api.append_line_groups(app, groups) for _, r in g]
        else:
            results = [r for _, r in api.append_lines(app, lines)]
        elapsed = time.perf_counter() - started
    assert all(r.status == "accepted" for r in results), {r.status for r in results}
    return count / elapsed


def measure(url: str, count: int, rounds: int) -> dict[str, dict[str, float]]:
    figures: dict[str, dict[str, list[float]]] = {}
    for grouped in (False, True):
        name = "grouped" if grouped else "per_command"
        runs: dict[str, list[float]] = {"pseudonymous": [], "plain": []}
        for number in range(rounds):
            order = ("pseudonymous", "plain") if number % 2 == 0 else ("plain", "pseudonymous")
            for kind in order:
                if kind == "plain":
                    with plain():
                        runs[kind].append(rate(url, count, grouped))
                else:
                    runs[kind].append(rate(url, count, grouped))
        figures[name] = runs
    return {
        name: {
            "pseudonymous_per_s": statistics.median(runs["pseudonymous"]),
            "plain_per_s": statistics.median(runs["plain"]),
            "ratio": statistics.median(runs["pseudonymous"]) / statistics.median(runs["plain"]),
        }
        for name, runs in figures.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.privacy")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("LEDGER_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    for name, figure in measure(args.database_url, args.count, args.rounds).items():
        print(
            f"{name}: pseudonymous {figure['pseudonymous_per_s']:.0f}/s, "
            f"plain {figure['plain_per_s']:.0f}/s, ratio {figure['ratio']:.3f} (target >= 0.90)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
