"""Random command histories: the ledger answers and projects exactly as the model says,
replaying a history changes nothing, and a rebuild reproduces every row."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from hypothesis import given
from hypothesis import strategies as st
from psycopg import sql

from ledger import api
from ledger.domain import clock
from ledger.service import Ledger
from ledger.upkeep import shadow, source
from ledger.upkeep.rebuild import rebuild
from ledger.upkeep.verify import verify
from tests.property.model import Model
from tests.support import TABLES, statuses

ORGS = ["aaaaaaaa-0000-4000-8000-000000000001", "aaaaaaaa-0000-4000-8000-000000000002"]
CONTENTS = {
    "cccccccc-0000-4000-8000-000000000001": ORGS[0],
    "cccccccc-0000-4000-8000-000000000002": ORGS[1],
}
USERS = ["u1", "u2", "u3"]
INTENTS = ["pi_1", "pi_2", "pi_3"]
PRICES = [100, 999, 1000]


def _at(minute: int) -> str:
    day, minute = divmod(minute, 24 * 60)
    return f"2026-03-{day + 1:02d}T{minute // 60:02d}:{minute % 60:02d}:00+00:00"


content_ids = st.sampled_from(sorted(CONTENTS))
users = st.sampled_from(USERS)
intents = st.sampled_from(INTENTS)


@st.composite
def purchase_fields(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "stripe_payment_intent_id": draw(intents),
        "customer_id": draw(users),
        "content_id": draw(content_ids),
        "amount_paid_cents": draw(st.sampled_from(PRICES)),
        "currency": draw(st.sampled_from(["usd", "EUR"])),
    }


@st.composite
def completion(draw: st.DrawFn) -> dict[str, Any]:
    fields = draw(purchase_fields())
    amount = fields["amount_paid_cents"]
    platform = draw(st.integers(0, amount))
    organization = draw(st.integers(0, amount - platform))
    return {
        "type": "purchase.complete",
        **fields,
        "platform_fee_cents": platform,
        "organization_fee_cents": organization,
        "creator_payout_cents": amount - platform - organization,
    }


commands = st.one_of(
    st.builds(
        lambda o: {"type": "organization.register", "organization_id": o, "name": "Org"},
        st.sampled_from(ORGS),
    ),
    st.builds(lambda u: {"type": "user.register", "user_id": u}, users),
    st.builds(lambda u: {"type": "user.delete", "user_id": u}, users),
    st.builds(
        lambda c, u: {
            "type": "content.publish",
            "content_id": c,
            "organization_id": CONTENTS[c],
            "creator_id": u,
            "title": "T",
        },
        content_ids,
        users,
    ),
    st.builds(lambda c: {"type": "content.delete", "content_id": c}, content_ids),
    st.builds(lambda f: {"type": "purchase.start", **f}, purchase_fields()),
    completion(),
    st.builds(lambda p: {"type": "purchase.fail", "stripe_payment_intent_id": p}, intents),
    st.builds(
        lambda p, r, a: {
            "type": "purchase.refund",
            "stripe_payment_intent_id": p,
            "refund_id": r,
            "amount_cents": a,
        },
        intents,
        st.sampled_from(["re_1", "re_2", "re_3", "re_4"]),
        st.sampled_from([1, 99, 500, 999, 1000]),
    ),
    st.builds(
        lambda u, c, kind, days: (
            {"type": "access.grant", "user_id": u, "content_id": c, "access_type": kind}
            | ({"expires_at": days} if days else {})
        ),
        users,
        content_ids,
        st.sampled_from(["subscription", "complimentary", "preview"]),
        st.sampled_from([0, 30, 600]),
    ),
    st.builds(
        lambda u, c: {"type": "access.revoke", "user_id": u, "content_id": c}, users, content_ids
    ),
    st.builds(
        lambda u, c, p: {
            "type": "playback.progress",
            "user_id": u,
            "content_id": c,
            "position_seconds": p,
            "duration_seconds": 100,
        },
        users,
        content_ids,
        st.sampled_from([0, 50, 94, 95, 100]),
    ),
)

SETUP = (
    [{"type": "organization.register", "organization_id": o, "name": "Org"} for o in ORGS]
    + [{"type": "user.register", "user_id": u} for u in USERS]
    + [
        {
            "type": "content.publish",
            "content_id": c,
            "organization_id": o,
            "creator_id": "u1",
            "title": "T",
        }
        for c, o in sorted(CONTENTS.items())
    ]
)


@st.composite
def histories(draw: st.DrawFn, shuffled: bool = False) -> list[dict[str, Any]]:
    """Commands with rising business times (``shuffled``: the setup first, then times
    drawn from a few days in any order, ties included); some are earlier ones delivered
    again, and some carry idempotency keys, so duplicates and conflicts really happen."""
    steps = draw(st.lists(st.one_of(commands, st.integers(0, 1000)), min_size=1, max_size=35))
    history: list[dict[str, Any]] = []
    minute = 0
    setup = [dict(c, occurred_at=_at(0)) for c in SETUP] if shuffled else list(SETUP)
    for step in [*setup, *steps] if shuffled or draw(st.booleans()) else steps:
        if isinstance(step, int):
            if history:
                history.append(dict(history[step % len(history)]))  # a redelivery
            continue
        if "occurred_at" in step:
            history.append(step)
            continue
        if shuffled:
            minute = draw(st.sampled_from([7, 60, 61, 300, 1440, 2000, 4000]))
        else:
            minute += 7
        command = dict(step, occurred_at=_at(minute))
        if "expires_at" in command:
            command["expires_at"] = _at(minute + command["expires_at"])
        if draw(st.integers(0, 9)) == 0:
            command["idempotency_key"] = f"k{draw(st.integers(0, 2))}"
        history.append(command)
    return history


def normalise(value: Any) -> Any:
    if isinstance(value, datetime):
        return clock.canonical(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def table_rows(conn: psycopg.Connection[Any], table: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        rows = cursor.execute(
            sql.SQL("SELECT * FROM {} ORDER BY id::text").format(sql.Identifier(table))
        ).fetchall()
    return [{k: normalise(v) for k, v in row.items()} for row in rows]


def all_table_rows(conn: psycopg.Connection[Any]) -> dict[str, list[dict[str, Any]]]:
    """``table_rows`` of every table, the six queries sent in one round trip (a pipeline):
    the properties read the tables after every command."""
    with conn.pipeline():
        cursors = [conn.cursor(row_factory=psycopg.rows.dict_row) for _ in TABLES]
        for cursor, table in zip(cursors, TABLES, strict=True):
            cursor.execute(
                sql.SQL("SELECT * FROM {} ORDER BY id::text").format(sql.Identifier(table))
            )
    found = {
        table: [{k: normalise(v) for k, v in row.items()} for row in cursor.fetchall()]
        for table, cursor in zip(TABLES, cursors, strict=True)
    }
    for cursor in cursors:
        cursor.close()
    return found


def model_rows(model: Model) -> dict[str, list[dict[str, Any]]]:
    def canon(value: Any) -> Any:
        if isinstance(value, str) and len(value) == 25 and value[10] == "T":
            return clock.canonical(datetime.fromisoformat(value))
        return value

    return {
        t: [{k: canon(v) for k, v in row.items()} for row in rows]
        for t, rows in model.tables().items()
    }


def run(app: Ledger, history: list[dict[str, Any]]) -> list[str]:
    return statuses([r for _, r in api.append_lines(app, [json.dumps(c) for c in history])])


@given(history=histories())
def test_answers_and_rows_equal_the_model_and_a_rebuild(
    fresh: Any, history: list[dict[str, Any]]
) -> None:
    settings = fresh()
    model = Model()
    expected_answers = [model.apply(c) for c in history]
    # one connection for every read of the example (autocommit: it holds no lock a
    # rebuild's switch would wait for), not one per read
    with psycopg.connect(
        settings.url, options=f"-c search_path={settings.schema}", autocommit=True
    ) as conn:
        with api.open_ledger(settings) as app:
            assert run(app, history) == expected_answers
            live = all_table_rows(conn)
            assert live == model_rows(model)
            events = conn.execute("SELECT count(*) FROM ledger_events").fetchone()
            # the same history delivered again: what was accepted is not applied twice,
            # and the model still predicts every answer and every row
            replay_answers = run(app, history)
            assert replay_answers == [model.apply(c) for c in history]
            assert not any(
                first == "accepted" and again == "accepted"
                for first, again in zip(expected_answers, replay_answers, strict=True)
            )
            added = conn.execute("SELECT count(*) FROM ledger_events").fetchone()
            live = all_table_rows(conn)
            assert live == model_rows(model)
            if "accepted" not in replay_answers:
                assert added == events
        # the log alone reproduces every row
        assert verify(settings) == []
        rebuild(settings, stream=open("/dev/null", "w"))  # noqa: SIM115
        assert all_table_rows(conn) == live
        # and so does a rebuild whose fold holds almost nothing in memory
        with little_memory():
            rebuild(settings, stream=open("/dev/null", "w"))  # noqa: SIM115
        assert all_table_rows(conn) == live


@contextmanager
def little_memory() -> Iterator[None]:
    """Batches of 3 events, 2 rows held: nearly every row is spilled and read back."""
    budget, batch = shadow.ROW_BUDGET, source.BATCH
    shadow.ROW_BUDGET, source.BATCH = 2, 3
    try:
        yield
    finally:
        shadow.ROW_BUDGET, source.BATCH = budget, batch
