"""A purchase decided on facts of ``users`` answers as one decided on the ``User`` aggregate
(issue 28, ``ledger.service.facts``), whatever the people's histories.

On a distributed log a purchase takes its customer as a fact of ``users`` and
``ledger_subjects``; everywhere else from the ``User`` aggregate. The facts' reader is one
statement of PostgreSQL that a single server runs too, so here the two deciders run side by
side on PostgreSQL: one ledger as a single server runs it, one told its log is distributed
(its reads and checks stay the whole log's, a single server's: only the facts differ).
Random registrations, deletions, erasures and purchases (started, completed, failed) of a
few people, one command at a time and in groups: the same answers, word for word, and the
same tables."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.config import Settings
from ledger.database.connections import connect
from ledger.service.application import Ledger
from tests.support import append, dump_all, t

ORG = "aaaaaaaa-0000-4000-8000-00000000000a"
VIDEO = "cccccccc-0000-4000-8000-00000000000a"
PEOPLE = ("ann", "ben", "cat")

SETUP: list[dict[str, Any]] = [
    {"type": "organization.register", "organization_id": ORG, "name": "O", "occurred_at": t(1)},
    {"type": "user.register", "user_id": "creator", "occurred_at": t(1)},
    # two of the three registered before the history (cat only if the history does)
    {"type": "user.register", "user_id": "ann", "occurred_at": t(1)},
    {"type": "user.register", "user_id": "ben", "occurred_at": t(1)},
    {
        "type": "content.publish",
        "content_id": VIDEO,
        "organization_id": ORG,
        "creator_id": "creator",
        "title": "T",
        "occurred_at": t(1),
    },
]


@st.composite
def histories(draw: st.DrawFn) -> list[list[dict[str, Any]]]:
    """Runs of commands: each run appended together (a group), the runs one after another."""
    runs: list[list[dict[str, Any]]] = []
    for number in range(draw(st.integers(1, 10))):
        person = draw(st.sampled_from(PEOPLE))
        at = t(2 + number)
        intent = f"pi_{draw(st.integers(0, 3))}"
        kind = draw(st.sampled_from(("register", "delete", "erase", "start", "complete", "fail")))
        if kind in ("register", "delete", "erase"):
            command: dict[str, Any] = {"type": f"user.{kind}", "user_id": person}
        elif kind == "fail":
            command = {"type": "purchase.fail", "stripe_payment_intent_id": intent}
            if draw(st.booleans()):
                command |= {"customer_id": person, "content_id": VIDEO}
                command |= {"amount_paid_cents": 1000, "currency": "usd"}
        else:
            command = {"type": f"purchase.{kind}", "stripe_payment_intent_id": intent}
            command |= {"customer_id": person, "content_id": VIDEO}
            command |= {"amount_paid_cents": 1000, "currency": "usd"}
            if kind == "complete":
                command |= {"platform_fee_cents": 100, "organization_fee_cents": 200}
                command |= {"creator_payout_cents": 700}
        command["occurred_at"] = at
        if runs and draw(st.booleans()):
            runs[-1].append(command)
        else:
            runs.append([command])
    return runs


def _ledger(where: Settings, on_facts: bool, asked: list[int]) -> Ledger:
    """A ledger of a layout split by organization (deletions in parts, routes), its people
    taken as facts or not; ``asked`` counts the facts' reads."""
    ledger = Ledger(where, per_organization=True)
    if on_facts:
        recorder: Any = ledger.recorder
        read = recorder.people_of
        recorder.is_distributed = lambda: True
        recorder.people_of = lambda values: asked.append(len(values)) or read(values)
    return ledger


def _answers(ledger: Ledger, runs: list[list[dict[str, Any]]]) -> list[tuple[Any, ...]]:
    found: list[tuple[Any, ...]] = []
    for run in runs:
        for answer in append(ledger, *run):
            error = answer.error
            found.append((answer.status, error and (error.code, error.field, error.message)))
    return found


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(runs=histories())
def test_purchases_on_facts_answer_and_write_as_on_the_user_aggregate(
    fresh: Callable[[], Settings], runs: list[list[dict[str, Any]]]
) -> None:
    seen: dict[bool, Any] = {}
    asked: list[int] = []
    for on_facts in (False, True):
        where = fresh()
        ledger = _ledger(where, on_facts, asked)
        try:
            setup = append(ledger, *SETUP)
            assert [a.status for a in setup] == ["accepted"] * len(SETUP)
            answers = _answers(ledger, runs)
        finally:
            ledger.close()
        with connect(where) as conn:
            seen[on_facts] = (answers, dump_all(conn))
    assert seen[True][0] == seen[False][0]
    assert seen[True][1] == seen[False][1]
    # the facts were read whenever a run of purchases alone named a customer (a run with a
    # registration or a deletion is decided on the aggregates: the platform's chain is its)
    named = any(
        all(c["type"].startswith("purchase.") for c in run) and any("customer_id" in c for c in run)
        for run in runs
    )
    assert bool(asked) or not named
