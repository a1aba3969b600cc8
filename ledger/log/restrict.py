"""The one read of a projected table that a decision makes: the RESTRICT rule of
``content.delete`` (a content with purchases is not deleted).

Kept out of the recorder (``LedgerRecorder.has_purchase_rows`` calls it) so that the
recorder stays a module of its own size. The read names the content's organization as well
as the content (``statements.has_purchase_rows_sql``): the same rows, and on Citus one shard.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import Connection

from ledger.log import statements


def has_purchase_rows(
    conn: Connection[Any],
    schema: str,
    content_id: str,
    organization_id: str,
    excluding: Sequence[str] = (),
) -> bool:
    """Whether a purchases row of the content exists in its organization, of a customer
    other than those ``excluding`` (users deleted earlier in the same batch)."""
    query = statements.has_purchase_rows_sql(schema)
    row = conn.execute(query, (organization_id, content_id, list(excluding))).fetchone()
    return bool(row and (row["exists"] if isinstance(row, dict) else row[0]))
