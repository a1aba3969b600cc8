"""The reader's tenant: which organization's rows a transaction may see.

The setting is transaction-local (``set_config(..., true)``): it ends with the
transaction, so a pooled connection handed to the next borrower carries no tenant.

This is defence in depth for a trusted caller (the platform's own pool), not a boundary:
the reader sets the organization itself, so code that can run SQL as the reader can read
any organization. A login bound with ``ledger db roles --organization UUID --login NAME``
is the boundary (``ledger.roles.bind_login``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import psycopg


@contextmanager
def tenant(
    conn: psycopg.Connection[Any], organization_id: UUID | str
) -> Iterator[psycopg.Connection[Any]]:
    """A transaction in which row-level security shows ``organization_id``'s rows only."""
    with conn.transaction():
        conn.execute(
            "SELECT set_config('ledger.organization_id', %s, true)",
            (str(UUID(str(organization_id))),),
        )
        yield conn
