"""A command decided on facts of ``users`` answers as one decided on the ``User`` aggregate
(issue 28, ``ledger.service.facts``), whatever the people's histories.

On a distributed log a purchase, a grant, a revocation and a publication take the person
they name as a fact of ``users`` and ``ledger_subjects`` (a revocation's row upserted before
its deletion: ``facts.revocation_guard``, which must leave the tables as they were);
everywhere else from the ``User`` aggregate. The facts' reader is one
statement of PostgreSQL that a single server runs too, so here the two deciders run side by
side on PostgreSQL: one ledger as a single server runs it, one told its log is distributed
(its reads and checks stay the whole log's, a single server's: only the facts differ).
Random registrations, deletions, erasures, purchases (started, completed, failed,
refunded), grants, revocations and publications of a few people, and the commands that name
no one (``facts.APART``: refunds, content deletions, organizations' registrations), one
command at a time and in groups: the same answers, word for word, and the same tables."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import api
from ledger.config import Settings
from ledger.database.connections import connect
from ledger.service.application import Ledger
from tests.support import append, dump_all, t

ORG = "aaaaaaaa-0000-4000-8000-00000000000a"
VIDEO = "cccccccc-0000-4000-8000-00000000000a"
# published by the history, if at all (by one of the people, who may be deleted by then)
LATER = ("cccccccc-0000-4000-8000-00000000000b", "cccccccc-0000-4000-8000-00000000000c")
PEOPLE = ("ann", "ben", "cat")
# decided without the platform's chain (facts.ON_FACTS, facts.APART)
ON_FACTS = frozenset(
    {"purchase.start", "purchase.complete", "purchase.fail", "purchase.refund"}
    | {"access.grant", "access.revoke", "content.publish"}
    | {"content.delete", "organization.register"}  # name no one (i28p)
)
OTHER_ORG = "aaaaaaaa-0000-4000-8000-00000000000b"

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
        kinds = ("register", "delete", "erase", "start", "complete", "fail")
        named = ("grant", "revoke", "publish")
        kind = draw(st.sampled_from((*kinds, *named, "refund", "unpublish", "organize")))
        video = draw(st.sampled_from((VIDEO, *LATER)))
        if kind in ("register", "delete", "erase"):
            command: dict[str, Any] = {"type": f"user.{kind}", "user_id": person}
        elif kind in ("grant", "revoke"):
            command = {"type": f"access.{kind}", "user_id": person, "content_id": video}
            if kind == "grant":
                command["access_type"] = draw(st.sampled_from(("subscription", "preview")))
        elif kind == "refund":  # names no one: decided without the platform's chain too
            command = {"type": "purchase.refund", "stripe_payment_intent_id": intent}
            command |= {
                "refund_id": f"re_{number}",
                "amount_cents": draw(st.sampled_from((500, 1000))),
            }
        elif kind == "unpublish":  # names no one; refused while the video has purchases
            command = {"type": "content.delete", "content_id": video}
        elif kind == "organize":  # names no one: a repeat is a duplicate, or a conflict
            organization = draw(st.sampled_from((ORG, OTHER_ORG)))
            command = {"type": "organization.register", "organization_id": organization}
            command["name"] = draw(st.sampled_from(("O", "P")))
        elif kind == "publish":
            command = {"type": "content.publish", "content_id": video, "organization_id": ORG}
            command |= {"creator_id": person, "title": draw(st.sampled_from(("T", "U")))}
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
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(runs=histories())
def test_commands_on_facts_answer_and_write_as_on_the_user_aggregate(
    fresh: Callable[[], Settings], runs: list[list[dict[str, Any]]]
) -> None:
    seen: dict[bool, Any] = {}
    asked: list[int] = []
    for on_facts in (False, True):
        where = fresh()
        ledger = _ledger(where, on_facts, asked)
        try:
            # the same in every example and not what is tested: one transaction
            lines = [json.dumps(c) for c in SETUP]
            setup = [a for _, a in api.append_lines(ledger, lines, batch=len(SETUP))]
            assert [a.status for a in setup] == ["accepted"] * len(SETUP)
            answers = _answers(ledger, runs)
        finally:
            ledger.close()
        with connect(where) as conn:
            seen[on_facts] = (answers, dump_all(conn))
    assert seen[True][0] == seen[False][0]
    assert seen[True][1] == seen[False][1]
    # the facts were read whenever a run of purchases, grants, revocations and publications
    # alone named a person (a run with a registration or a deletion is decided on the
    # aggregates)
    people = ("customer_id", "user_id", "creator_id")
    named = any(
        all(c["type"] in ON_FACTS for c in run) and any(p in c for c in run for p in people)
        for run in runs
    )
    assert bool(asked) or not named
