"""Reads of the projected tables: the read side's queries, in one place.

``can_play`` answers "may this user play this content now?" with one indexed lookup,
``lookup`` the player's whole answer (the HTTP service's);
``tenant`` scopes a reader's transaction to one organization's rows. (The one read of
a table that a decision makes, ``has_purchase_rows``, belongs to the write side's store:
``ledger.log.recorder``.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from ledger.domain.clock import canonical

_CAN_PLAY = (
    "SELECT EXISTS (SELECT 1 FROM content_access WHERE user_id = %s AND content_id = %s"
    " AND (expires_at IS NULL OR expires_at > coalesce(%s::timestamptz, now())))"
)


def can_play(
    conn: psycopg.Connection[Any], user_id: str, content_id: str, at: datetime | None = None
) -> bool:
    """The (user_id, content_id) access row exists and has not expired at ``at``
    (default: the database's now). ``conn``'s search_path must name the ledger's schema
    (``ledger.database.connections.connect`` does)."""
    row = conn.execute(_CAN_PLAY, (user_id, content_id, at), prepare=True).fetchone()
    return bool(row and row[0])


_LOOKUP = (
    "SELECT access_type, expires_at, (expires_at IS NULL OR expires_at > now())"
    " FROM content_access WHERE user_id = %s AND content_id = %s"
)


def lookup(conn: psycopg.Connection[Any], user_id: str, content_id: str) -> dict[str, Any]:
    """The player's answer, ``{"allowed", "access_type", "expires_at"}``, at the database's
    now; the kind and end of an access that has expired are given with ``allowed`` false."""
    row = conn.execute(_LOOKUP, (user_id, content_id), prepare=True).fetchone()
    if row is None:
        return {"allowed": False, "access_type": None, "expires_at": None}
    access_type, expires_at, current = row
    return {
        "allowed": bool(current),
        "access_type": access_type,
        "expires_at": None if expires_at is None else canonical(expires_at),
    }


@contextmanager
def tenant(
    conn: psycopg.Connection[Any], organization_id: UUID | str
) -> Iterator[psycopg.Connection[Any]]:
    """A transaction in which row-level security shows ``organization_id``'s rows only.

    The setting is transaction-local (``SET LOCAL``: ``set_tenant``): it ends with the
    transaction, so a pooled connection handed to the next borrower carries no tenant.
    This is defence in depth for a trusted caller (the platform's own pool), not a
    boundary: the reader sets the organization itself, so code that can run SQL as the
    reader can read any organization. A login bound with ``ledger db roles
    --organization UUID --login NAME`` is the boundary (``ledger.database.roles.bind_login``).
    """
    with conn.transaction():
        set_tenant(conn, organization_id)
        yield conn


def set_tenant(conn: psycopg.Connection[Any], organization_id: UUID | str) -> None:
    """Sets the transaction's organization (``SET LOCAL``), on every node it reads from.

    On a Citus coordinator the row security of a distributed table is evaluated on the
    workers, whose sessions know nothing of the coordinator's settings (``set_config``
    stays there): ``citus.propagate_set_commands = 'local'`` has Citus send the
    transaction's ``SET LOCAL`` commands to each worker connection it uses. On a single
    server that setting is a placeholder of no effect, and ``SET LOCAL`` is
    ``set_config(..., true)``. One round trip either way: the value is a UUID, checked
    here, sent as a quoted literal (``SET`` takes no bound parameters)."""
    value = str(UUID(str(organization_id)))
    conn.execute(
        sql.SQL(
            "SET LOCAL citus.propagate_set_commands = 'local'; "
            "SET LOCAL ledger.organization_id = {}"
        ).format(sql.Literal(value))
    )
