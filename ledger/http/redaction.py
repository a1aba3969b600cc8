"""What the service writes to its log of an error: where it happened, never the rows' data.

A person erased must leave no copy (docs/privacy.md, "Every copy counts"), and the service's
log is a copy nobody rewrites. PostgreSQL's messages quote data: a unique violation's
DETAIL names the key's values (``Key (user_id)=(alice) already exists``), a failing row's
DETAIL all of its columns, a data exception's primary message the value it refused, and the
error's LINE the statement. So a database error is written by its class, its SQLSTATE, its
primary message where that never quotes data, and the names PostgreSQL gives (schema,
table, column, constraint): enough for an operator to find the fault, nothing of a row.
The eventsourcing library wraps a database error in one of its own with the same message,
so that message is withheld too. Every other exception is the service's own code and keeps
its message; the traceback's frames name code, not data.
"""

from __future__ import annotations

import traceback

import psycopg
from eventsourcing.persistence import PersistenceError

WITHHELD = "(message withheld: it may quote data)"
# SQLSTATE classes whose primary message may quote a value: data exceptions (22: the value
# refused) and the log's own triggers (P0: the topic or state refused)
QUOTING_CLASSES = ("22", "P0")


def database_error(error: psycopg.Error) -> str:
    """One line for a database error: its class, SQLSTATE, message where safe, and names."""
    diag = error.diag
    state = diag.sqlstate or "?"
    primary = diag.message_primary
    if primary is None or state.startswith(QUOTING_CLASSES):
        primary = WITHHELD
    names = [
        f"{kind} {name}"
        for kind, name in (
            ("schema", diag.schema_name),
            ("table", diag.table_name),
            ("column", diag.column_name),
            ("constraint", diag.constraint_name),
        )
        if name
    ]
    where = f" [{', '.join(names)}]" if names else ""
    return f"{_name(error)}: SQLSTATE {state}: {primary}{where}"


def described(error: BaseException) -> str:
    """The error and its causes as a traceback prints them, each message made safe."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    parts = []
    for earlier in reversed(chain):
        frames = "".join(traceback.format_tb(earlier.__traceback__))
        parts.append(f"Traceback (most recent call last):\n{frames}{summary(earlier)}")
    return "\nwhich led to:\n\n".join(parts)


def summary(error: BaseException) -> str:
    """One line for any error: a database error made safe (above), else its own message."""
    if isinstance(error, psycopg.Error):
        return database_error(error)
    if isinstance(error, PersistenceError):
        return f"{_name(error)}: {WITHHELD}"
    return "".join(traceback.format_exception_only(type(error), error)).rstrip("\n")


def _name(error: BaseException) -> str:
    kind = type(error)
    return f"{kind.__module__}.{kind.__qualname__}"
