"""``ledger audit verify``: every check, in the order a problem is best explained.

1. log: the hash chain, recomputed from the stored events (``chain``);
2. events: every stored event decodes into its class (``ledger.log.shapes``),
   checked on the same pass over the log;
3. guards: the append-only, shape and chaining triggers are in place (``guards``);
4. anchors: heads recorded earlier still hold (``anchors``);
5. projections: the purchases table reconciles with the log (``reconcile``).

Every check runs even after one fails, and a check that cannot run (a table missing, a
database error) fails with its own one-line reason, so one run says everything it can;
the first failing check is the first problem.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg

from ledger.audit.anchors import Anchor, check
from ledger.audit.chain import (
    GENESIS,
    ChainWalk,
    last_notification,
    sequence_position,
    unchained,
    verify_chains,
)
from ledger.audit.guards import check_guards
from ledger.audit.reconcile import reconcile
from ledger.database import distribution, migrations
from ledger.log import shapes
from ledger.log.chains import PLATFORM
from ledger.privacy.store import clear_identities


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: nothing to check (a note)
    message: str

    def line(self) -> str:
        label = "note" if self.ok is None else ("ok" if self.ok else "FAIL")
        return f"{label:<4} {self.name}: {self.message}"


@dataclass(frozen=True)
class Verification:
    checks: list[Check]
    heads: list[Anchor]  # every chain's, the platform's first

    @property
    def head(self) -> Anchor:
        """The platform chain's head (the whole log's before per-organization chains)."""
        return next((h for h in self.heads if not h.chain), Anchor(0, GENESIS.hex()))

    @property
    def ok(self) -> bool:
        return all(c.ok is not False for c in self.checks)

    @property
    def first_problem(self) -> Check | None:
        return next((c for c in self.checks if c.ok is False), None)


def _decodes(topic: bytes, state: bytes) -> str | None:
    return shapes.problem(topic.decode("utf-8", "replace"), state)


def _failed(name: str, error: psycopg.Error) -> Check:
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    return Check(name, False, f"could not be checked: {first}")


def _guarded(name: str, run: Callable[[], Check]) -> Check:
    """Runs one check; a database error fails it alone, in one line."""
    try:
        return run()
    except psycopg.Error as error:
        return _failed(name, error)


def verify(
    conn: psycopg.Connection[Any],
    schema: str,
    anchors: Sequence[Anchor] = (),
    empty_sources: Sequence[str] = (),
) -> Verification:
    """Runs every check. ``empty_sources`` names anchor files that held no anchor: the
    anchors check fails for them (an emptied file must not pass as "no anchors")."""
    migrations.require_log(conn, schema)
    checks: list[Check] = []
    walks: dict[UUID, ChainWalk] | None = None
    watch: dict[UUID, set[int]] = {}
    for anchor in anchors:
        watch.setdefault(_chain_id(anchor.chain), set()).add(anchor.position)
    try:
        walks = verify_chains(conn, schema, watch, inspect=_decodes)
    except psycopg.Error as error:
        checks.append(_failed("log", error))
    heads = [
        Anchor(w.head_position, w.head_hash.hex(), _chain_name(c)) for c, w in (walks or {}).items()
    ]
    if walks is not None:
        checks.extend(_log_checks(conn, schema, walks))
        outside = _unchained(conn, schema, walks)
        if outside is not None:
            checks.append(outside)
    checks.append(_guarded("guards", lambda: _guards(conn, schema)))
    checks.append(_anchors(anchors, walks, empty_sources))
    checks.append(_guarded("projections", lambda: _projections(conn, schema)))
    checks.append(_guarded("identities", lambda: _identities(conn, schema)))
    return Verification(checks, heads)


def _chain_id(name: str) -> UUID:
    return UUID(name) if name else PLATFORM


def _chain_name(chain: UUID) -> str:
    return "" if chain == PLATFORM else str(chain)


def _label(chain: UUID) -> str:
    return "the platform's chain" if chain == PLATFORM else f"the chain of organization {chain}"


def _identities(conn: psycopg.Connection[Any], schema: str) -> Check:
    """A note, never a failure: events written before subjects name people in the clear,
    and the log cannot change (docs/privacy.md, "Older events")."""
    try:
        with conn.transaction():  # a savepoint: a state that is not JSON fails this alone
            count = clear_identities(conn, schema)
    except psycopg.Error:
        return Check("identities", None, "not counted: an event's state is not JSON")
    if count == 0:
        return Check("identities", None, "no event names a person in the clear")
    return Check(
        "identities",
        None,
        f"{count} events name a person by their id in the clear (written before subjects; "
        'erasure cannot remove them: docs/privacy.md, "Older events")',
    )


def _log_checks(
    conn: psycopg.Connection[Any], schema: str, walks: dict[UUID, ChainWalk]
) -> list[Check]:
    """One line per chain (the platform's first), then the sequence note and the decode
    check over every chain."""
    checks: list[Check] = []
    if not walks:
        checks.append(Check("log", True, f"0 events; head 0:{GENESIS.hex()}"))
    for chain, walked in walks.items():
        head = Anchor(walked.head_position, walked.head_hash.hex(), _chain_name(chain))
        if walked.first_break is not None:
            checks.append(Check("log", False, f"{_label(chain)}: {walked.first_break.describe()}"))
        else:
            checks.append(
                Check(
                    "log",
                    True,
                    f"{_label(chain)}: {walked.events} events, each chained to the one before; "
                    f"head {head}",
                )
            )
    total = sum(w.events for w in walks.values())
    issued = sequence_position(conn, schema)
    last = last_notification(conn, schema)
    if issued is not None and issued > last:
        checks.append(
            Check(
                "log",
                None,
                f"notification ids were handed out up to {issued} but the log's last is {last}: "
                "appends that rolled back, or events removed from the end (only an anchor can "
                "tell)",
            )
        )
    bad = next(((c, w.first_undecodable) for c, w in walks.items() if w.first_undecodable), None)
    if bad is not None:
        chain, (position, topic, problem) = bad
        checks.append(
            Check(
                "events",
                False,
                f"the event at position {position} of {_label(chain)} ({topic}) does not "
                f"decode: {problem}; rebuilds and audits stop at it",
            )
        )
    else:
        checks.append(Check("events", True, f"all {total} events decode into their classes"))
    return checks


def _unchained(
    conn: psycopg.Connection[Any], schema: str, walks: dict[UUID, ChainWalk]
) -> Check | None:
    """On Citus the chains walked are the rows of ``ledger_chain_heads`` (``chain.chains``):
    an event of a chain without one would go unwalked, so such events are counted (a
    failure if any). On one server the chains are found in the log itself: no check."""
    try:
        if not distribution.log_is_distributed(conn, schema):
            return None
        outside = unchained(conn, schema, walks)
    except psycopg.Error as error:
        return _failed("log", error)
    if not outside:
        return None
    return Check(
        "log",
        False,
        f"{outside} events lie outside every chain of ledger_chain_heads (a chain's row is "
        "made by its first append): they were inserted behind the ledger's back",
    )


def _guards(conn: psycopg.Connection[Any], schema: str) -> Check:
    problem = check_guards(conn, schema)
    if problem:
        return Check("guards", False, problem)
    return Check(
        "guards",
        True,
        "the append-only, shape and hash-chain triggers fire ALWAYS and run the migrated functions",
    )


def _anchors(
    anchors: Sequence[Anchor],
    walks: dict[UUID, ChainWalk] | None,
    empty_sources: Sequence[str],
) -> Check:
    if empty_sources:
        return Check(
            "anchors",
            False,
            f"{', '.join(empty_sources)} holds no anchor (empty, or comments only): an anchors "
            "file never loses its heads, so it was truncated or is the wrong file",
        )
    if not anchors:
        return Check(
            "anchors",
            None,
            "none given: a chain recomputed by a superuser, or events cut off the end, "
            "would go unnoticed; keep the head (--record-head FILE) where the database "
            "cannot reach and pass it back (--anchors FILE)",
        )
    if walks is None:
        return Check("anchors", False, "could not be checked: the log could not be read")
    for name in sorted({a.chain for a in anchors}):
        chain = _chain_id(name)
        walked = walks.get(chain, ChainWalk())
        problem = check(
            [a for a in anchors if a.chain == name], walked.watched, walked.head_position
        )
        if problem:
            return Check("anchors", False, f"{_label(chain)}: {problem}" if name else problem)
    latest = max(a.position for a in anchors)
    return Check(
        "anchors",
        True,
        f"{len(anchors)} anchor{'s' * (len(anchors) != 1)} hold; history up to "
        f"position {latest} is as it was anchored",
    )


def _projections(conn: psycopg.Connection[Any], schema: str) -> Check:
    from projections import freshness

    if not migrations.has_table(conn, schema, "purchases"):
        return Check(
            "projections",
            False,
            "the purchases table is missing: `ledger db upgrade` creates and fills it "
            "(after a rollback), `ledger projections rebuild` restores a dropped one",
        )
    stale = freshness.stale(conn, schema)
    if "purchases" in stale:
        return Check(
            "projections",
            False,
            f"the purchases table is marked stale ({stale['purchases']}): "
            "run `ledger db upgrade` to fill it",
        )
    reconciled = reconcile(conn, schema)
    if reconciled.problem:
        return Check("projections", False, reconciled.problem)
    return Check(
        "projections",
        True,
        f"the purchases table reconciles with the log ({reconciled.purchases} purchases, "
        f"{reconciled.organizations} organizations, {reconciled.currencies} currencies: "
        "counts by status, gross, refunded, fees)",
    )
