"""``ledger db stop`` and the server part of ``ledger db status``.

Without a database URL every command starts the embedded PostgreSQL under ``LEDGER_HOME`` and
leaves it running for the next one; ``db stop`` stops it, and ``db status`` says whether it runs
without starting it.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from ledger.database import embedded


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    stop = commands.add_parser(
        "stop",
        parents=[common],
        help="stop the embedded server under LEDGER_HOME (nothing to do with a database URL)",
    )
    stop.set_defaults(func=run_stop)


def given_url(args: argparse.Namespace) -> str | None:
    return args.database_url or os.environ.get("LEDGER_DATABASE_URL") or None


def run_stop(args: argparse.Namespace) -> int:
    if given_url(args):
        print(
            "a database URL is given (--database-url or LEDGER_DATABASE_URL): the ledger runs "
            "no server of its own for it; nothing stopped"
        )
        return 0
    home = embedded.home()
    pid = embedded.stop()
    if pid is None:
        print(f"no embedded server runs under {home}: nothing stopped")
    else:
        print(f"stopped the embedded server (PID {pid}) under {home}")
    return 0


def embedded_status() -> bool:
    """Prints the embedded server's state; whether it runs (so its migrations can be listed)."""
    state = embedded.status()
    for line in state.lines():
        print(line)
    if not state.running:
        print("migrations: not read while the server is stopped (any other command starts it)")
    return state.running
