"""``ledger audit verify``: every check, in the order a problem is best explained.

1. log: the hash chain, recomputed from the stored events (``chain``);
2. guards: the append-only and chaining triggers are in place (``guards``);
3. anchors: heads recorded earlier still hold (``anchors``);
4. projections: the purchases table reconciles with the log (``reconcile``).

Every check runs even after one fails, so one run says everything it can; the first
failing check is the first problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from ledger.audit.anchors import Anchor, check
from ledger.audit.chain import sequence_position, verify_chain
from ledger.audit.guards import check_guards
from ledger.audit.reconcile import reconcile


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
    head: Anchor

    @property
    def ok(self) -> bool:
        return all(c.ok is not False for c in self.checks)

    @property
    def first_problem(self) -> Check | None:
        return next((c for c in self.checks if c.ok is False), None)


def verify(
    conn: psycopg.Connection[Any], schema: str, anchors: Sequence[Anchor] = ()
) -> Verification:
    checks: list[Check] = []
    walked = verify_chain(conn, schema, {a.position for a in anchors})
    head = Anchor(walked.head_position, walked.head_hash.hex())
    if walked.first_break is not None:
        checks.append(Check("log", False, walked.first_break.describe()))
    else:
        checks.append(
            Check(
                "log",
                True,
                f"{walked.events} events, each chained to the one before; head {head}",
            )
        )
    issued = sequence_position(conn, schema)
    if issued is not None and issued > walked.head_position:
        checks.append(
            Check(
                "log",
                None,
                f"positions were handed out up to {issued} but the log ends at "
                f"{walked.head_position}: appends that rolled back, or events removed from the "
                "end (only an anchor can tell)",
            )
        )
    guard_problem = check_guards(conn, schema)
    checks.append(
        Check("guards", False, guard_problem)
        if guard_problem
        else Check(
            "guards",
            True,
            "the append-only and hash-chain triggers fire ALWAYS and run the migrated functions",
        )
    )
    if anchors:
        anchor_problem = check(list(anchors), walked.watched, walked.head_position)
        latest = max(a.position for a in anchors)
        checks.append(
            Check("anchors", False, anchor_problem)
            if anchor_problem
            else Check(
                "anchors",
                True,
                f"{len(anchors)} anchor{'s' * (len(anchors) != 1)} hold; history up to "
                f"position {latest} is as it was anchored",
            )
        )
    else:
        checks.append(
            Check(
                "anchors",
                None,
                "none given: a chain recomputed by a superuser, or events cut off the end, "
                "would go unnoticed; keep the head (--record-head FILE) where the database "
                "cannot reach and pass it back (--anchors FILE)",
            )
        )
    reconciled = reconcile(conn, schema)
    checks.append(
        Check("projections", False, reconciled.problem)
        if reconciled.problem
        else Check(
            "projections",
            True,
            f"the purchases table reconciles with the log ({reconciled.purchases} purchases, "
            f"{reconciled.organizations} organizations, {reconciled.currencies} currencies: "
            "counts by status, gross, refunded, fees)",
        )
    )
    return Verification(checks, head)
