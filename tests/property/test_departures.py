"""A deletion or erasure in parts, crashed after any number of them, then retried, ends as
one unsplit deletion does, for every history (issue 28, ``ledger.service.departures``).

On the ledger in memory (the same decisions and projections as on PostgreSQL;
``tests/integration/test_deletion_in_parts.py`` kills a real process between parts): a
random history of purchases and grants over three organizations, the first ``done`` parts
of the person's deletion committed (what a crash after them leaves), then the command
retried. The tables equal those of a ledger deciding the same history with the deletion
in one transaction, every organization's part is recorded once, the global fact once, and
the command again is answered as docs/cli.md has it.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from hypothesis import given
from hypothesis import strategies as st

from ledger import api
from ledger.commands.catalogue import LeaveOrganization
from ledger.service import Ledger
from ledger.service.departures import organizations_of
from ledger.service.memory import memory_ledger
from tests.support import statuses, t

ORGS = (
    "aaaaaaaa-0000-4000-8000-00000000000a",
    "aaaaaaaa-0000-4000-8000-00000000000b",
    "aaaaaaaa-0000-4000-8000-00000000000c",
)
VIDEOS = tuple(f"cccccccc-0000-4000-8000-00000000000{n}" for n in "abc")  # one per organization
PEOPLE = ("ann", "ben")

SETUP: list[dict[str, Any]] = [
    *(
        {"type": "organization.register", "organization_id": o, "name": "O", "occurred_at": t(1)}
        for o in ORGS
    ),
    *({"type": "user.register", "user_id": p, "occurred_at": t(1)} for p in (*PEOPLE, "maker")),
    *(
        {
            "type": "content.publish",
            "content_id": video,
            "organization_id": o,
            "creator_id": "maker",
            "title": "T",
            "occurred_at": t(1),
        }
        for video, o in zip(VIDEOS, ORGS, strict=True)
    ),
]


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    commands: list[dict[str, Any]] = []
    for number in range(draw(st.integers(0, 8))):
        person = draw(st.sampled_from(PEOPLE))
        video = draw(st.sampled_from(VIDEOS))
        if draw(st.booleans()):
            commands.append(
                {
                    "type": "purchase.complete",
                    "stripe_payment_intent_id": f"pi_{number}",
                    "customer_id": person,
                    "content_id": video,
                    "amount_paid_cents": 1000,
                    "currency": "usd",
                    "platform_fee_cents": 100,
                    "organization_fee_cents": 100,
                    "creator_payout_cents": 800,
                    "occurred_at": t(2 + number),
                }
            )
        else:
            commands.append(
                {
                    "type": "access.grant",
                    "user_id": person,
                    "content_id": video,
                    "access_type": "complimentary",
                    "occurred_at": t(2 + number),
                }
            )
    return commands


def _append(ledger: Ledger, *commands: dict[str, Any]) -> list[str]:
    return statuses([r for _, r in api.append_lines(ledger, [json.dumps(c) for c in commands])])


def _tables(ledger: Ledger) -> dict[str, Any]:
    rows = ledger.recorder.rows.rows  # type: ignore[attr-defined]
    return {table: sorted(map(repr, found.values())) for table, found in rows.items()}


def _topics(ledger: Ledger) -> list[str]:
    return [n.topic for n in ledger.recorder.select_notifications(1, 10_000)]


@given(
    history=histories(),
    kind=st.sampled_from(["user.delete", "user.erase"]),
    done=st.integers(0, 3),
)
def test_any_crash_between_parts_is_finished_by_the_retry_as_one_deletion(
    history: list[dict[str, Any]], kind: str, done: int
) -> None:
    command = {"type": kind, "user_id": "ann", "occurred_at": t(20)}
    whole = memory_ledger()
    split = memory_ledger(per_organization=True)
    answers = _append(whole, *SETUP, *history)
    assert _append(split, *SETUP, *history) == answers
    # the crash: the first ``done`` parts committed, nothing else
    organizations = organizations_of(split, "ann")
    for organization in organizations[:done]:
        part = LeaveOrganization(user_id="ann", organization_id=UUID(organization))
        assert split.execute(part).status == "accepted"
    assert _append(whole, command) == ["accepted"]
    assert _append(split, command) == ["accepted"]  # the retry
    assert _tables(split) == _tables(whole)
    topics = _topics(split)
    assert topics.count("UserLeftOrganization") == len(organizations)
    assert topics.count("UserDeleted" if kind == "user.delete" else "UserErased") == 1
    again = "duplicate" if kind == "user.delete" else "rejected:not_found"
    assert _append(split, command) == [again] == _append(whole, command)
    assert _topics(split) == topics
