"""A keyed heartbeat's key on the distributed store, claimed before its group's transaction
(issue 28, docs/scaling.md "The playback store on Citus").

``playback_keys`` is distributed by the key itself (a key is one namespace for every
organization: CONTRACT.md, "Idempotency"), so its shard is on any worker, most often not the
organization's. Written inside the group's transaction it put a second worker into it, and
Citus ended it in a two-phase commit. So the keys are claimed first, each in a transaction of
its own on its shard, as the log's keys are (``ledger.log.claims``), and the group's
transaction touches its organizations' workers alone.

A claim whose group then never commits (a race lost, a crash between the two commits) holds
the heartbeat's own fingerprint: read again, its heartbeat is not recorded, so it is not a
duplicate (``recorded``), and the next attempt records it. What it leaves: another command
with the same key and a different payload is a ``conflict`` while that claim stands, where
one server, which wrote no key, would accept it (a key reused for another payload is the
client's error either way; docs/scaling.md, "What is left" 5). A single server never runs
this: its statement (``playback_record``) writes the key in the group's transaction.

A claim holds the moment of the heartbeat that took it (migration 0034). A heartbeat's
fingerprint is its payload's, without its time, and one without ``occurred_at`` is dated
when it is identified, so each delivery of its key had its own identity: a claim read as
one whose group never committed recorded every redelivery, and two first deliveries at
once were both recorded. Each delivery of a key held with its fingerprint now takes that
moment (``adopt``): one identity, which ``seen`` and the heartbeats' unique key decide as
they decide a heartbeat sent with its time; a claim taken meanwhile at another moment is
a race lost (``claim``). A single server writes none. Claims of before (0034 gave each
its recorded heartbeat's moment) whose heartbeat is not there hold none: one compacted has
its owner's row (migration 0016), read as used (``held``, ``recorded``: ``duplicate``); one
whose group never committed is given the moment of the next delivery recorded (``claim``).

A claim whose group lost its race to the person's erasure (or the content's deletion) is
given back (``release``) once the heartbeat is decided again and found ``not_found``: left,
it outlived the erasure, its key and the digest of a payload naming the person in the
store, which no heartbeat names, so no later erasure would find it (docs/privacy.md,
"Races"; ``tests/integration/test_erasure_races.py``).

A claim holds its person (``user_id``, migration 0035: the store names people by id), so
an erasure finds and deletes it by them (``ledger.privacy.store``), a claim left by a
process killed between its claim and its write included, which nothing else names
(``tests/integration/test_playback_key_owner.py``). Claims of before hold none, and a
single server writes none: its keys are written with their heartbeats, which name them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import psycopg
from psycopg import sql

from ledger.domain.errors import NotFound
from ledger.playback.decide import Decided, Heartbeat


class Claim(NamedTuple):
    """A key's claim in the store."""

    fingerprint: str
    moment: datetime | None  # None: a claim of before migration 0034
    compacted: bool = False  # a claim of before whose heartbeat was compacted (0016's owner)


Held = dict[str, Claim]
"""Each key's claim in the store."""


def recorded(claim: Claim | None, heartbeat: Heartbeat, row: dict[str, Any]) -> str | None:
    """The key's stored fingerprint as ``decide`` is to read it. A key is claimed before its
    group's transaction (``claim``), so a key of this very heartbeat (the same
    fingerprint, and the heartbeat at the claim's moment: ``adopt``) whose heartbeat is
    not recorded, and was not compacted away (it is not before its pair's horizon, and a
    claim of before without a moment has no compacted owner), is a claim whose group never
    committed: not a duplicate, and the heartbeat is recorded now."""
    if claim is None:
        return None
    used = claim.fingerprint
    if used != heartbeat.fingerprint or row["organization_id"] is None or claim.compacted:
        return used
    horizon = row["horizon"]
    if row["seen"] or (horizon is not None and heartbeat.occurred_at < horizon):
        return used
    return None


def held(conn: psycopg.Connection[Any], schema: str, heartbeats: list[Heartbeat]) -> Held:
    """The claims of the heartbeats' keys, in one statement (Citus reads their shards).
    A claim of before migration 0034 (no moment) is looked for among the compacted keys'
    owners (migration 0016) too, in a second: its heartbeat recorded once, then folded
    away, it has no record to find and no moment to take, yet it is no claim whose group
    never committed. Claims with a moment (all since 0034) need no second statement: a
    delivery at a compacted claim's moment is before its pair's horizon."""
    keyed = [h.key for h in heartbeats if h.key is not None]
    if not keyed:
        return {}
    query = sql.SQL(
        "SELECT idempotency_key, fingerprint, occurred_at FROM {} WHERE idempotency_key = ANY(%s)"
    ).format(sql.Identifier(schema, "playback_keys"))
    claims = {
        r["idempotency_key"]: Claim(r["fingerprint"], r["occurred_at"])
        for r in conn.execute(query, (keyed,))
    }
    timeless = [key for key, c in claims.items() if c.moment is None]
    if timeless:
        owned = sql.SQL("SELECT idempotency_key FROM {} WHERE idempotency_key = ANY(%s)").format(
            sql.Identifier(schema, "playback_compacted_keys")
        )
        for r in conn.execute(owned, (timeless,)):
            claims[r["idempotency_key"]] = claims[r["idempotency_key"]]._replace(compacted=True)
    return claims


def adopt(heartbeats: list[Heartbeat], claims: Held) -> None:
    """Each keyed heartbeat whose key is held with its fingerprint and a moment, replaced
    in the list by itself at that moment: every delivery of a key is then the heartbeat
    that claimed it, one identity, so ``seen`` finds it once committed (``duplicate``), an
    orphan claim is recorded at its moment, and two deliveries in flight collide on the
    heartbeats' unique key. A heartbeat sent with its time takes the claim's too: the key
    names one heartbeat, and one server answers the same payload at another time
    ``duplicate`` by its key alone."""
    for n, h in enumerate(heartbeats):
        if h.key is None or h.key not in claims:
            continue
        fingerprint, moment, _ = claims[h.key]
        if fingerprint == h.fingerprint and moment is not None and moment != h.occurred_at:
            heartbeats[n] = h.moved(moment)


def claim(conn: psycopg.Connection[Any], schema: str, accepted: list[Heartbeat]) -> None:
    """The accepted heartbeats' keys claimed before the group's transaction, each in a
    transaction of its own on its key's shard, all in one round trip (as the log's keys:
    ``ledger.log.claims``), so the group's transaction touches its organizations' workers
    alone, and a group of one organization commits on its worker in one phase. Each claim
    holds its heartbeat's moment (``adopt``) and its person (migration 0035), by whom an
    erasure finds it even if no heartbeat ever names the key.

    The connection is in autocommit. A key found with another fingerprint was claimed
    meanwhile by a different command, and one found with this fingerprint at another
    moment by another delivery of this one (its facts were read before that claim): either
    is raised as the unique violation the key's insert in the group's transaction raised
    before, and the store decides the group again (then a ``conflict``, or the heartbeat at
    that claim's moment). A key claimed with this heartbeat whose group then never commits
    is harmless: the next attempt finds it unrecorded (``recorded``).

    A claim of before migration 0034 found with this fingerprint and no moment (its group
    never committed, and its heartbeat was not compacted: ``recorded``) is given this
    heartbeat's moment, in a second round trip: deleted and taken again in one transaction
    on its shard (the writer may not UPDATE a key: ``ledger db roles``), so every later
    delivery takes that moment (``duplicate``); of two deliveries at once, the one whose
    delete waited finds the other's claim, at another moment, and decides again."""
    keyed = {h.key: h for h in accepted if h.key is not None}
    if not keyed:
        return
    table = sql.Identifier(schema, "playback_keys")
    taken = _take(conn, table, keyed, timeless=False)
    old = {k: h for k, h, row in taken if row is not None and _theirs(row, h, None)}
    if old:
        taken = [t for t in taken if t[0] not in old] + _take(conn, table, old, timeless=True)
    for key, h, row in taken:
        if row is None or row["fingerprint"] != h.fingerprint:
            raise psycopg.errors.UniqueViolation(
                f"idempotency_key {key!r} was claimed meanwhile by a different heartbeat"
            )
        if row["occurred_at"] != h.occurred_at:
            raise psycopg.errors.UniqueViolation(
                f"idempotency_key {key!r} was claimed meanwhile by another delivery"
            )


def _theirs(row: dict[str, Any], h: Heartbeat, moment: datetime | None) -> bool:
    return bool(row["fingerprint"] == h.fingerprint and row["occurred_at"] == moment)


def _take(
    conn: psycopg.Connection[Any],
    table: sql.Identifier,
    keyed: dict[str, Heartbeat],
    timeless: bool,
) -> list[tuple[str, Heartbeat, dict[str, Any] | None]]:
    """Each key claimed in a transaction of its own, in one pipeline, and its claim read
    back in it; with ``timeless``, its claim of before (its fingerprint, no moment) deleted
    first."""
    take = sql.SQL(
        "INSERT INTO {} (idempotency_key, fingerprint, occurred_at, user_id)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING"
    ).format(table)
    drop = sql.SQL(
        "DELETE FROM {} WHERE idempotency_key = %s AND fingerprint = %s AND occurred_at IS NULL"
    ).format(table)
    holder = sql.SQL("SELECT fingerprint, occurred_at FROM {} WHERE idempotency_key = %s").format(
        table
    )
    reads: list[tuple[str, Heartbeat, psycopg.Cursor[Any]]] = []
    with conn.pipeline():
        for key, h in keyed.items():
            taking, reading = conn.cursor(), conn.cursor()
            taking.execute(b"BEGIN")
            if timeless:
                taking.execute(drop, (key, h.fingerprint))
            taking.execute(take, (key, h.fingerprint, h.occurred_at, h.user_id), prepare=True)
            reading.execute(holder, (key,), prepare=True)
            taking.execute(b"COMMIT")
            reads.append((key, h, reading))
    return [(key, h, reading.fetchone()) for key, h, reading in reads]


def release(
    conn: psycopg.Connection[Any],
    schema: str,
    heartbeats: list[Heartbeat],
    rows: list[dict[str, Any]],
    decided: Decided,
) -> None:
    """Gives back the claims of the group's heartbeats answered ``not_found`` whose key
    holds their own fingerprint, unrecorded (``recorded`` found it a claim whose group never
    committed): an earlier attempt claimed it, then its write met the foreign key of a
    ``users`` or ``content`` row deleted meanwhile (an erasure, a deletion). Nothing else
    can commit that heartbeat now: its write needs those rows. Each key with its
    fingerprint, so a claim by another payload stays; the connection is in autocommit."""
    table = sql.Identifier(schema, "playback_keys")
    give = sql.SQL("DELETE FROM {} WHERE idempotency_key = %s AND fingerprint = %s").format(table)
    for h, row, result in zip(heartbeats, rows, decided.results, strict=True):
        if (
            h.key is not None
            and row["key_claimed"] == h.fingerprint
            and row["key_fingerprint"] is None
            and result is not None
            and isinstance(result.error, NotFound)
        ):
            conn.execute(give, (h.key, h.fingerprint))
