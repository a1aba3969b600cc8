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
* ``organization``: the statement trigger takes no lock, and an append takes only the
  locks of its chains (their rows of ``ledger_chain_heads``): appends of different
  organizations never wait for each other. Positions stay in commit order within each
  chain; ``notification_id`` is then an id, no longer an order across chains.

Since migration 0018 the order is the state of ``ledger_log_order``, which the statement
trigger reads: no row is ``global`` (a log as migrated, and the safe default), its one row
says ``organization``; written only by the log's owner; every trigger of the log stays enabled, so
a disabled one is tampering, never an order (``ledger.audit.guards``). Before 0018 the
``organization`` order was that trigger disabled: ``order`` still reads such a schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

import psycopg
from psycopg import sql

PLATFORM = UUID(int=0)
"""The chain of what no organization owns: users' registrations, deletions, erasures."""

CLAIMED_TOPICS = frozenset({"CommandKeyClaimed", "PurchaseOpened", "ContentPublished"})
"""The first events of the aggregates named by a key that is one namespace across the ledger
(an idempotency key, a refund id, a payment intent, a content id: their ids derive from the
key alone, not from an organization)."""

LEGACY_TOPICS = frozenset({"OrganizationRegistered", "AccessOpened", "PlaybackOpened"})
"""The first events of an organization's aggregates that a log written before the chains
(migration 0014) holds in the platform's chain. On a distributed log the primary key leads
with the chain, so a new first event of such an aggregate in its organization's chain would
not meet the old one: ``ledger db distribute`` claims them (``distribution.distribute_log``,
with ``LEGACY_MARK``), and the appends of such a log claim these topics too."""
LEGACY_MARK = PLATFORM
"""The claim id that says a distributed log holds ``LEGACY_TOPICS`` in the platform's chain
(the nil uuid: never an aggregate's id, which derive by uuid5)."""

Order = Literal["global", "organization"]
ORDERS: tuple[Order, ...] = ("global", "organization")
_GLOBAL_LOCK = "ledger_events_insert_lock"  # migration 0008's statement trigger (before 0018)


@dataclass
class Route:
    """Where a distributed log reads a decision's aggregates (``LedgerRecorder.events_after``)
    and checks them again at append: in ``chains`` (the command's organization and the
    platform's), and, for the aggregates named by a global key (``claimable``: a payment
    intent's purchase, a content, an idempotency key's or refund id's claim), in the chain
    their claim names (``ledger_key_claims``), kept in ``found``. Only the claimable ones are
    looked up among the claims, so a decision touches the workers of its organization, of
    the platform's chain and of its keys' claims, no other."""

    chains: frozenset[UUID]
    claimable: frozenset[UUID]
    found: set[UUID] = field(default_factory=set)

    def reads(self) -> list[UUID]:
        """Every chain the decision read: where the append's check reads again."""
        return sorted(self.chains | self.found)


def order(conn: psycopg.Connection[Any], schema: str) -> Order:
    """The log's order: its row of ``ledger_log_order`` (``global`` without one, as the
    trigger reads it); before migration 0018, whether the global lock trigger is disabled."""
    table = sql.Identifier(schema, "ledger_log_order")
    found = conn.execute("SELECT to_regclass(%s)", (table.as_string(conn),)).fetchone()
    if found is not None and (next(iter(found.values())) if isinstance(found, dict) else found[0]):
        kept = conn.execute(sql.SQL("SELECT log_order FROM {}").format(table)).fetchone()
        value = None if kept is None else (kept["log_order"] if isinstance(kept, dict) else kept[0])
        return "organization" if value == "organization" else "global"
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
    """Switches the log's order, in the caller's transaction (as the log's owner: the
    writer may only read the order).

    The log's EXCLUSIVE lock is taken first, so the switch waits for the appends under way
    (their inserts hold ROW EXCLUSIVE) and every append after its commit reads the new
    order; the row is written, never the triggers, which stay ``ENABLE ALWAYS``."""
    if wanted not in ORDERS:
        raise ValueError(f"the log's order is one of {', '.join(ORDERS)}, not {wanted!r}")
    conn.execute(
        sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.Identifier(schema, "ledger_events"))
    )
    table = sql.Identifier(schema, "ledger_log_order")
    if wanted == "global":  # no row: the order of every log as migrated
        conn.execute(sql.SQL("DELETE FROM {}").format(table))
        return
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (log_order) VALUES (%s) ON CONFLICT (single_row) DO NOTHING"
        ).format(table),
        (wanted,),
    )
