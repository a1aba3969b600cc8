"""A distributed log's keys claimed before the append, each in a transaction of its own.

A key that is one namespace across the ledger (CONTRACT.md, "Idempotency": an idempotency
key, a refund id, a payment intent, a content id) is claimed by a row of
``ledger_key_claims`` (migration 0023), distributed by the key itself, so its shard is on
any worker, most often not the organization's. Written inside the organization's append,
the claim put a second worker into the transaction and Citus ended it in a two-phase commit
(about half of all purchases on the local cluster: docs/scaling.md, "The log on Citus").

So the recorder claims first, one short transaction per key on the claim's one shard
(``INSERT ... ON CONFLICT`` renewing only its own, then who holds it), and only then sends the
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

**A claim's lease** (``LEDGER_CLAIM_LEASE``, default 60s; docs/scaling.md, "A claim's lease").
A claim whose append never commits (a crash between the two commits, the organization's
worker lost, the command rejected when decided again) would stay its organization's for
ever, and another organization's command with the same key would give up after the
service's attempts where one server accepts it. So a claim is a lease: each claim (or
reuse by its holder, which renews it) stamps ``claimed_at`` (the coordinator's clock, which
Citus evaluates a write's functions on), and

* the holder's append must end before ``claimed_at + lease - margin`` (the margin, a fifth
  of the lease, covers the servers' clocks and the commit's last round trip): the recorder
  calls ``ledger_claim_fence`` (migration 0028) first in the append's transaction, which
  refuses a deadline already past (SQLSTATE 40001: retried, so the holder claims again)
  and otherwise bounds the transaction by ``transaction_timeout`` (PostgreSQL 17+);
* another organization takes a claim over only once its lease has run out (on the claim's
  worker's clock, then on the coordinator's) and the holder's chain holds no event of the
  key (read after the lease
  ran out, so the holder's append has ended, committed or not), by one conditional
  ``UPDATE`` that also requires ``claimed_at`` unchanged (a renewal in between wins).

So nothing accepted is lost (a claim whose holder's chain has the key's events is never
taken) and nothing is applied twice (the old holder's late append is refused by its fence
and, claiming again, finds the claim another's: it is decided again). A live claim is never
taken. On a server without ``transaction_timeout`` no bound holds, and no claim is taken
over: the behaviour before the lease.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError
from psycopg import Connection, Cursor, sql

from ledger.errors import ConfigurationError
from ledger.log import statements

_BEGIN = b"BEGIN"
_COMMIT = b"COMMIT"

LEASE_KEY = "LEDGER_CLAIM_LEASE"
DEFAULT_LEASE = "60s"
"""Twelve times the default ``LEDGER_LOCK_TIMEOUT``: an append that waits its whole lock
timeout and then writes a large batch still ends well inside the lease's 48 s budget, and
another organization waits at most a minute for a key whose append never committed."""
_UNITS = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000}
_MAX_MS = 2**31 - 1  # transaction_timeout's bound


def lease_ms(value: str | None = None) -> int:
    """``LEDGER_CLAIM_LEASE`` in milliseconds: a whole number with its unit (ms, s, min, h),
    at least 100ms (a fifth of it is the fence's margin)."""
    text = (os.environ.get(LEASE_KEY) or DEFAULT_LEASE) if value is None else value
    return _parse(text.strip())


@lru_cache(maxsize=16)
def _parse(text: str) -> int:
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(number) :]
    milliseconds = int(number) * _UNITS[unit] if number.isdigit() and unit in _UNITS else 0
    if not 100 <= milliseconds <= _MAX_MS:
        raise ConfigurationError(
            f"{LEASE_KEY} {text!r} is not a claim's lease: give a whole number of at least "
            "100ms with its unit, ms, s, min or h (e.g. 60s, 500ms), at most 596h"
        )
    return milliseconds


def margin_ms(lease: int) -> int:
    """What the holder's append leaves of its lease: a fifth, for the servers' clocks and
    the commit's last round trip after the coordinator's bound."""
    return lease // 5


@lru_cache(maxsize=8)
def take_sql(schema: str) -> sql.Composed:
    """One routed upsert (the key's shard alone): takes a free key, renews the holder's own
    lease, and leaves another chain's claim as it is. The stamp is the column's default
    (``clock_timestamp()``, which Citus evaluates on the coordinator for a write: it refuses
    a volatile function in ``DO UPDATE SET``); reads compare it with the claim's worker's
    clock, and the fence's margin covers the servers' skew."""
    return sql.SQL(
        "INSERT INTO {} AS c (claim_id, organization_id) VALUES (%s, %s) ON CONFLICT (claim_id) "
        "DO UPDATE SET claimed_at = EXCLUDED.claimed_at "
        "WHERE c.organization_id = EXCLUDED.organization_id"
    ).format(sql.Identifier(schema, "ledger_key_claims"))


@lru_cache(maxsize=8)
def holder_sql(schema: str) -> sql.Composed:
    """Who holds the key, since when, and whether the lease has run
    out, on the claim's worker's clock (and only where a holder's append is bounded:
    ``transaction_timeout``, PostgreSQL 17+)."""
    return sql.SQL(
        "SELECT organization_id, claimed_at, "
        "claimed_at < clock_timestamp() - %s * interval '1 ms' "
        "AND current_setting('transaction_timeout', true) IS NOT NULL AS expired "
        "FROM {} WHERE claim_id = %s"
    ).format(sql.Identifier(schema, "ledger_key_claims"))


@lru_cache(maxsize=8)
def holds_events_sql(schema: str) -> sql.Composed:
    """Whether the holder's chain has an event of the key (routed to its worker)."""
    return sql.SQL(
        "SELECT EXISTS (SELECT 1 FROM {} WHERE organization_id = %s AND originator_id = %s)"
    ).format(sql.Identifier(schema, "ledger_events"))


@lru_cache(maxsize=8)
def take_over_sql(schema: str) -> sql.Composed:
    """The claim moved to another chain, only if unchanged since read and still run out
    (``statement_timestamp()``: Citus refuses a volatile function in an ``UPDATE``, and
    evaluates this one on the coordinator, as the claim's stamp)."""
    return sql.SQL(
        "UPDATE {} SET organization_id = %s, claimed_at = statement_timestamp() "
        "WHERE claim_id = %s AND organization_id = %s AND claimed_at = %s "
        "AND claimed_at < statement_timestamp() - %s * interval '1 ms' "
        "RETURNING claimed_at"
    ).format(sql.Identifier(schema, "ledger_key_claims"))


@lru_cache(maxsize=1)
def run_out_sql() -> sql.Composed:
    return sql.Composed(
        [sql.SQL("SELECT clock_timestamp() - %s * interval '1 ms' > %s AS run_out")]
    )


@lru_cache(maxsize=8)
def fence_sql(schema: str) -> sql.Composed:
    return sql.SQL("SELECT {}(%s)").format(sql.Identifier(schema, "ledger_claim_fence"))


class HeldElsewhere(IntegrityError):
    """A key's claim names another chain: decide the command again. Raised once both
    transactions of the pipeline have committed, so the connection is idle and stays in the
    pool (no ``settle`` needed)."""


def claim_first(
    conn: Connection[Any], schema: str, wanted: Sequence[tuple[UUID, UUID]]
) -> datetime | None:
    """Claims each (key's aggregate, chain) in a transaction of its own, all in one round
    trip, taking over a claim whose lease ran out with no event of the key in its holder's
    chain; returns the deadline the append's transaction must end by (``fence``), or
    raises ``HeldElsewhere`` (an ``IntegrityError``) naming the first key another chain
    holds.

    The connection is the pool's (autocommit): each ``BEGIN`` ... ``COMMIT`` is one
    transaction on one shard. A failure leaves it to the caller's ``settling.settle``."""
    if not wanted:
        return None
    lease = lease_ms()
    budget = lease - margin_ms(lease)
    holders: list[Cursor[Any]] = []
    with conn.pipeline():
        for claim_id, chain in wanted:
            taking, holder = conn.cursor(), conn.cursor()
            taking.execute(_BEGIN)
            taking.execute(
                statements.rendered(take_sql(schema), conn), (claim_id, chain), prepare=True
            )
            holder.execute(
                statements.rendered(holder_sql(schema), conn),
                (lease, claim_id),
                prepare=True,
            )
            taking.execute(_COMMIT)
            holders.append(holder)
    deadlines: list[datetime] = []
    for (claim_id, chain), holder in zip(wanted, holders, strict=True):
        row = holder.fetchone()
        held = None if row is None else _value(row, "organization_id", 0)
        if held == chain:
            deadlines.append(_value(row, "claimed_at", 1) + timedelta(milliseconds=budget))
            continue
        taken = _take_over(conn, schema, claim_id, chain, row, lease) if row else None
        if taken is None:
            raise HeldElsewhere(
                f"ledger: key claim {claim_id} is held by chain {held}, not {chain}: "
                "another organization's append took it first"
            )
        deadlines.append(taken)
    return min(deadlines)


def _take_over(
    conn: Connection[Any], schema: str, claim_id: UUID, chain: UUID, row: Any, lease: int
) -> datetime | None:
    """Takes another chain's claim whose lease ran out, if its holder's chain holds no
    event of the key: read now, after the lease ran out, the holder's append has ended
    (its fence), so what its chain holds is final. The new deadline, or ``None``."""
    if not _value(row, "expired", 2):
        return None  # a live claim is never taken
    since = _value(row, "claimed_at", 1)
    # and run out on the coordinator's clock too, the one that stamped it and that bounds
    # the holder's append (a statement naming no table runs there)
    run_out = conn.execute(
        statements.rendered(run_out_sql(), conn), (lease, since), prepare=True
    ).fetchone()
    if run_out is None or not _value(run_out, "run_out", 0):
        return None
    holder = _value(row, "organization_id", 0)
    found = conn.execute(
        statements.rendered(holds_events_sql(schema), conn), (holder, claim_id), prepare=True
    ).fetchone()
    if found is None or _value(found, "exists", 0):
        return None  # its events committed: the key is the holder's for good
    budget = lease - margin_ms(lease)
    taken = conn.execute(
        statements.rendered(take_over_sql(schema), conn),
        (chain, claim_id, holder, since, lease),
        prepare=True,
    ).fetchone()
    return (
        None if taken is None else _value(taken, "claimed_at", 0) + timedelta(milliseconds=budget)
    )


def fence(
    conn: Connection[Any], cursor: Cursor[Any], schema: str, deadline: datetime | None
) -> None:
    """In the append's pipeline, right after its ``BEGIN``: the transaction refused if its
    claims' deadline has passed, else bounded by it (``ledger_claim_fence``, migration
    0028). Nothing when the append claims no key."""
    if deadline is not None:
        cursor.execute(statements.rendered(fence_sql(schema), conn), (deadline,), prepare=True)


def bounded(error: BaseException) -> bool:
    """Whether an append was ended by its claims' bound (``transaction_timeout``, SQLSTATE
    25P04): nothing committed that the fence allowed past the deadline; retried, it claims
    again (renewing its own claim, or finding it taken and being decided again)."""
    cause = error.__cause__ if error.__cause__ is not None else error
    return getattr(cause, "sqlstate", None) == "25P04" or "transaction timeout" in str(error)


def _value(row: Any, name: str, index: int) -> Any:
    value = row[name] if isinstance(row, dict) else row[index]
    if name == "organization_id":
        return value if isinstance(value, UUID) else UUID(str(value))
    return value
