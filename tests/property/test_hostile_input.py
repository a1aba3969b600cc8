"""Hostile input: any garbage in any field is rejected cleanly and writes nothing;
SQL metacharacters in accepted text are stored verbatim."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from hypothesis import given
from hypothesis import strategies as st

from ledger import api
from ledger.service import Ledger
from tests.support import CONTENT, append, catalogue, complete

Conn = psycopg.Connection[Any]

BASES: list[dict[str, Any]] = [
    {
        "type": "organization.register",
        "organization_id": "55555555-5555-4555-8555-555555555555",
        "name": "N",
    },
    {"type": "user.register", "user_id": "new_user"},
    {
        "type": "content.publish",
        "content_id": "66666666-6666-4666-8666-666666666666",
        "organization_id": "11111111-1111-4111-8111-111111111111",
        "creator_id": "creator",
        "title": "T",
    },
    complete("pi_hostile"),
    {
        "type": "purchase.refund",
        "stripe_payment_intent_id": "pi_base",
        "refund_id": "re_h",
        "amount_cents": 1,
    },
    {"type": "access.grant", "user_id": "bob", "content_id": CONTENT, "access_type": "preview"},
    {
        "type": "playback.progress",
        "user_id": "alice",
        "content_id": CONTENT,
        "position_seconds": 1,
        "duration_seconds": 10,
    },
]

hostile = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=-1)
    | st.integers(min_value=2**31, max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=3)
    | st.just("\u0000")
    | st.just("x" * 100_000),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=5,
)


def counts(conn: Conn) -> tuple[Any, ...]:
    return tuple(
        conn.execute(
            "SELECT (SELECT count(*) FROM ledger_events), (SELECT count(*) FROM purchases), (SELECT count(*) FROM users)"
        ).fetchone()
        or ()
    )


@given(base=st.sampled_from(BASES), data=st.data())
def test_garbage_in_any_field_is_rejected_and_writes_nothing(
    ledger_app: Ledger, conn: Conn, base: dict[str, Any], data: st.DataObject
) -> None:
    if counts(conn)[0] == 0:
        append(ledger_app, *catalogue(), complete("pi_base"))
    field = data.draw(st.sampled_from(sorted(set(base) - {"type"})))
    value = data.draw(hostile)
    if (
        isinstance(value, str)
        and value
        and "\u0000" not in value
        and len(value) <= 255
        and field
        in (
            "name",
            "user_id",
            "title",
            "creator_id",
            "stripe_payment_intent_id",
            "refund_id",
            "currency",
        )
    ):
        value = 12345  # a short clean string could be valid: keep the value hostile
    before = counts(conn)
    line = json.dumps(base | {field: value})
    [(_, result)] = list(api.append_lines(ledger_app, [line]))
    assert result.status == "rejected"
    assert (
        result.error is not None
        and result.error.code == "validation_error"
        and result.error.field is not None
    )
    assert counts(conn) == before


@given(
    text=st.sampled_from(
        [
            "'; DROP TABLE purchases; --",
            'quote " and \\ backslash',
            "$$ dollar $$",
            "%s %(x)s {}",
            # right-to-left text, but no format character: an id may not hold one (Cf)
            "Ωmega 🎬 \u05d0\u05d1",
        ]
    )
)
def test_sql_metacharacters_are_stored_verbatim(ledger_app: Ledger, conn: Conn, text: str) -> None:
    if counts(conn)[0] == 0:
        append(ledger_app, *catalogue())
    user = f"user {text}"
    intent = f"pi {text}"
    results = append(
        ledger_app,
        {"type": "user.register", "user_id": user},
        complete(intent, customer=user),
        {
            "type": "purchase.refund",
            "stripe_payment_intent_id": intent,
            "refund_id": f"re {text}",
            "amount_cents": 1,
            "reason": text,
        },
    )
    assert {r.status for r in results} <= {"accepted", "duplicate"}
    assert conn.execute(
        "SELECT customer_id, stripe_payment_intent_id FROM purchases WHERE customer_id = %s",
        (user,),
    ).fetchone() == (user, intent)
    # one purchase for the intent (a repeated text is a duplicate), refunded once, verbatim
    assert conn.execute(
        "SELECT count(*), sum(refunded_amount_cents) FROM purchases"
        " WHERE stripe_payment_intent_id = %s",
        (intent,),
    ).fetchone() == (1, 1)
