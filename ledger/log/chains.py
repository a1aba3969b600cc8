"""The log's chains: one per organization, and the platform's (migration 0014).

Every event belongs to one chain: its organization's, or the platform's (``PLATFORM``, the
nil uuid) for what no organization owns. Within its chain an event has a gapless position
in commit order and its hash chains it to the event before it in the same chain.

Which lock orders the appends is the log's own state, never a client's setting, so two
processes can never disagree about it (docs/stream.md, "Orders"):

* ``global`` (the default, every log as migrated): each insert takes the log's EXCLUSIVE
  lock (the statement trigger of migration 0008 and the recorder's ``LOCK TABLE``), so
  ``notification_id`` is in commit order across the whole log, as the eventsourcing
  library's notification log and its recorder suite need, and as the readers of
  ``ledger events --after N`` rely on. Each chain's lock is taken under it.
* ``organization``: the statement trigger is disabled, and an append takes only the
  locks of its chains (their rows of ``ledger_chain_heads``): appends of different
  organizations never wait for each other. Positions stay in commit order within each
  chain; ``notification_id`` is then an id, no longer an order across chains.
"""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

import psycopg
from psycopg import sql

PLATFORM = UUID(int=0)
"""The chain of what no organization owns: users' registrations, deletions, erasures."""

Order = Literal["global", "organization"]
ORDERS: tuple[Order, ...] = ("global", "organization")
_GLOBAL_LOCK = "ledger_events_insert_lock"  # migration 0008's statement trigger


def order(conn: psycopg.Connection[Any], schema: str) -> Order:
    """The log's order: ``global`` unless its global lock trigger is disabled."""
    row = conn.execute(
        "SELECT t.tgenabled = 'D' AS disabled FROM pg_trigger t"
        " JOIN pg_class c ON c.oid = t.tgrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = 'ledger_events' AND t.tgname = %s",
        (schema, _GLOBAL_LOCK),
    ).fetchone()
    disabled = row is not None and (row["disabled"] if isinstance(row, dict) else row[0])
    return "organization" if disabled else "global"


def set_order(conn: psycopg.Connection[Any], schema: str, wanted: Order) -> None:
    """Switches the log's order, in the caller's transaction (as the log's owner).

    ``ALTER TABLE`` takes the log's ACCESS EXCLUSIVE lock, so the switch waits for the
    appends under way and every append after it sees the new order."""
    if wanted not in ORDERS:
        raise ValueError(f"the log's order is one of {', '.join(ORDERS)}, not {wanted!r}")
    state = sql.SQL("ENABLE ALWAYS") if wanted == "global" else sql.SQL("DISABLE")
    conn.execute(
        sql.SQL("ALTER TABLE {} {} TRIGGER {}").format(
            sql.Identifier(schema, "ledger_events"), state, sql.Identifier(_GLOBAL_LOCK)
        )
    )
