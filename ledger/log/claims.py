"""A distributed log's keys claimed before the append, each in a transaction of its own.

A key that is one namespace across the ledger (CONTRACT.md, "Idempotency": an idempotency
key, a refund id, a payment intent, a content id) is claimed by a row of
``ledger_key_claims`` (migration 0023), distributed by the key itself, so its shard is on
any worker, most often not the organization's. Written inside the organization's append,
the claim put a second worker into the transaction and Citus ended it in a two-phase commit
(about half of all purchases on the local cluster: docs/scaling.md, "The log on Citus").

So the recorder claims first, one short transaction per key on the claim's one shard
(``INSERT ... ON CONFLICT DO NOTHING``, then who holds it), and only then sends the
organization's append, which touches the organization's worker alone:

* the claim is the organization's (just taken, or left by an earlier attempt of the same
  organization that then failed or crashed before its events committed): the append goes on;
  the events' own primary key (organization, aggregate, version) then keeps one append of
  that organization from taking it twice;
* it is another organization's: the append is refused with ``IntegrityError`` before it
  starts, as the claim's unique violation refused it inside the transaction before, and the
  service decides the command again, now reading the claim's chain: ``duplicate`` or
  ``conflict`` as on one server once that chain's events have committed.

Idempotent and safe to repeat: two single-shard commits instead of one two-phase commit.
What it leaves: a claim whose append never commits (a crash between the two, or the command
rejected when decided again) stays its organization's, which a retry of that organization
reuses; another organization's command with the same key is refused until then
(docs/scaling.md, "What is left").
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError
from psycopg import Connection, Cursor, sql

from ledger.log import statements

_BEGIN = b"BEGIN"
_COMMIT = b"COMMIT"


@lru_cache(maxsize=8)
def take_sql(schema: str) -> sql.Composed:
    """One routed ``INSERT ... VALUES`` (the key's shard alone), a no-op when taken."""
    return sql.SQL(
        "INSERT INTO {} (claim_id, organization_id) VALUES (%s, %s) ON CONFLICT (claim_id) "
        "DO NOTHING"
    ).format(sql.Identifier(schema, "ledger_key_claims"))


@lru_cache(maxsize=8)
def holder_sql(schema: str) -> sql.Composed:
    return sql.SQL("SELECT organization_id FROM {} WHERE claim_id = %s").format(
        sql.Identifier(schema, "ledger_key_claims")
    )


class HeldElsewhere(IntegrityError):
    """A key's claim names another chain: decide the command again. Raised once both
    transactions of the pipeline have committed, so the connection is idle and stays in the
    pool (no ``settle`` needed)."""


def claim_first(conn: Connection[Any], schema: str, wanted: Sequence[tuple[UUID, UUID]]) -> None:
    """Claims each (key's aggregate, chain) in a transaction of its own, all in one round
    trip; raises ``HeldElsewhere`` (an ``IntegrityError``) naming the first key another
    chain holds.

    The connection is the pool's (autocommit): each ``BEGIN`` ... ``COMMIT`` is one
    transaction on one shard. A failure leaves it to the caller's ``settling.settle``."""
    holders: list[Cursor[Any]] = []
    with conn.pipeline():
        for claim_id, chain in wanted:
            taking, holder = conn.cursor(), conn.cursor()
            taking.execute(_BEGIN)
            taking.execute(
                statements.rendered(take_sql(schema), conn), (claim_id, chain), prepare=True
            )
            holder.execute(statements.rendered(holder_sql(schema), conn), (claim_id,), prepare=True)
            taking.execute(_COMMIT)
            holders.append(holder)
    for (claim_id, chain), holder in zip(wanted, holders, strict=True):
        row = holder.fetchone()
        held = None if row is None else _value(row)
        if held != chain:
            raise HeldElsewhere(
                f"ledger: key claim {claim_id} is held by chain {held}, not {chain}: "
                "another organization's append took it first"
            )


def _value(row: Any) -> UUID:
    value = row["organization_id"] if isinstance(row, dict) else row[0]
    return value if isinstance(value, UUID) else UUID(str(value))
