"""Every error becomes one line on stderr and an exit status; never a traceback.

``--debug`` (or ``LEDGER_DEBUG=1``) adds the traceback of an unexpected error.
"""

from __future__ import annotations

import os
import sys
import traceback

import psycopg
from eventsourcing.persistence import PersistenceError

from ledger.database.migrations import MigrationError
from ledger.errors import ConfigurationError

EXIT_OK, EXIT_REJECTED, EXIT_ERROR = 0, 1, 2
EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a tool stopped by SIGPIPE


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("LEDGER_DEBUG", "") not in ("", "0")


def report(error: Exception, debug: bool) -> int:
    """Prints ``error`` as one line (and its traceback when debugging); returns the exit status."""
    if isinstance(error, (ConfigurationError, MigrationError)):
        debug = False  # our own message says it all
        message = str(error)
    elif isinstance(error, (psycopg.Error, PersistenceError)):
        message = f"database error: {first_line(error)}"
    else:
        message = (
            f"unexpected error: {type(error).__name__}: {first_line(error)} "
            f"(--debug or LEDGER_DEBUG=1 shows the traceback)"
        )
    if debug:
        traceback.print_exception(error, file=sys.stderr)
    print(f"ledger: {message}", file=sys.stderr)
    return EXIT_ERROR


def silence_stdout() -> None:
    """After the reader of stdout went away: nothing more may reach it, not even a final flush."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
