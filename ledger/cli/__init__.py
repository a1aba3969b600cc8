"""The ``ledger`` command: a thin shell over the Python API.

Exit statuses: 0 success, 1 a rejected line or a failed check, 2 a usage, configuration,
connection or unexpected error, 128+N when stopped by signal N (130 SIGINT, 143 SIGTERM), 141
when the reader of standard output went away. Every error is one line on stderr; ``--debug`` or
``LEDGER_DEBUG=1`` adds the traceback of an unexpected one. The reference is docs/cli.md.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections.abc import Sequence

from ledger.cli import append, audit, db, demo, events, playback, projections, serve, users
from ledger.cli.errors import (
    EXIT_BROKEN_PIPE,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_REJECTED,
    debug_requested,
    report,
    silence_stdout,
)
from ledger.cli.signals import GUARD, Interrupted

DISTRIBUTION = "purchase-ledger"

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_REJECTED", "build_parser", "main", "run"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"ledger: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_ERROR)


def version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--database-url",
        help="libpq URL (default: LEDGER_DATABASE_URL, else the embedded server under LEDGER_HOME)",
    )
    common.add_argument("--schema", help=argparse.SUPPRESS)
    common.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of an unexpected error (also LEDGER_DEBUG=1)",
    )
    parser = _Parser(prog="ledger", description="An event-sourced purchase and access ledger.")
    parser.add_argument(
        "--version", action="version", version=f"ledger {version()} ({DISTRIBUTION})"
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        dest="global_debug",
        help="show the traceback of an unexpected error (also LEDGER_DEBUG=1)",
    )
    parser.add_argument("--database-url", help=argparse.SUPPRESS, dest="global_database_url")
    groups = parser.add_subparsers(dest="group", required=True, parser_class=_Parser)
    for module in (db, append, projections, audit, demo, events, playback, users, serve):
        module.register(groups, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(arguments)
    GUARD.install()
    try:
        args = build_parser().parse_args(arguments)
        args.debug = debug
        if getattr(args, "global_database_url", None) and not getattr(args, "database_url", None):
            args.database_url = args.global_database_url
        status: int = args.func(args)
        sys.stdout.flush()
        return status
    except Interrupted as interrupted:
        print(f"ledger: interrupted by {interrupted.name}", file=sys.stderr)
        return interrupted.exit_status
    except KeyboardInterrupt:
        print("ledger: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        silence_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as error:
        return report(error, debug)


def run() -> None:
    try:
        status = main()
    except SystemExit as exit:  # argparse: --help, --version, a usage error
        if exit.code is None or isinstance(exit.code, int):
            status = exit.code or EXIT_OK
        else:
            print(exit.code, file=sys.stderr)
            status = EXIT_ERROR
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
        status = EXIT_BROKEN_PIPE
    sys.exit(status)
