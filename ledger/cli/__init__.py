"""The ``ledger`` command: a thin shell over the Python API.

Exit statuses: 0 success, 1 a rejected line or a failed check, 2 a usage,
configuration or connection error (and then nothing was written).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import psycopg
from eventsourcing.persistence import PersistenceError

from ledger.cli import append, audit, db, demo, events, projections
from ledger.config import ConfigurationError
from ledger.migrations import MigrationError

EXIT_OK, EXIT_REJECTED, EXIT_ERROR = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"ledger: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_ERROR)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--database-url",
        help="libpq URL (default: LEDGER_DATABASE_URL, else the embedded server under LEDGER_HOME)",
    )
    common.add_argument("--schema", help=argparse.SUPPRESS)
    parser = _Parser(prog="ledger", description="An event-sourced purchase and access ledger.")
    parser.add_argument("--database-url", help=argparse.SUPPRESS, dest="global_database_url")
    groups = parser.add_subparsers(dest="group", required=True, parser_class=_Parser)
    for module in (db, append, projections, audit, demo, events):
        module.register(groups, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "global_database_url", None) and not getattr(args, "database_url", None):
        args.database_url = args.global_database_url
    try:
        status: int = args.func(args)
    except (ConfigurationError, MigrationError) as error:
        print(f"ledger: {error}", file=sys.stderr)
        return EXIT_ERROR
    except (psycopg.Error, PersistenceError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"ledger: database error: {first}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("ledger: interrupted", file=sys.stderr)
        return EXIT_ERROR
    return status


def run() -> None:
    sys.exit(main())
