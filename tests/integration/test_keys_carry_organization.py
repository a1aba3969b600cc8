"""Keys that carry the organization (migration 0013, issue 28).

The money tables' unique keys include ``organization_id`` (Citus can enforce no other on a
table distributed by it), and nothing they refused before is taken now: within an
organization the keys refuse what they refused, and across organizations a payment intent
stays unique through the log, whose purchase aggregate is named by the intent.
"""

from __future__ import annotations

from typing import Any

import psycopg

from ledger.service import Ledger
from tests.support import (
    CONTENT,
    CONTENT_2,
    ORG_2,
    append,
    catalogue,
    complete,
    grant,
    org,
    publish,
    refund,
    statuses,
)

Conn = psycopg.Connection[Any]


def test_a_payment_intent_of_one_organization_is_refused_in_another(
    ledger_app: Ledger, conn: Conn
) -> None:
    setup = append(ledger_app, *catalogue(), org(ORG_2, "Contoso"), publish(CONTENT_2, ORG_2))
    assert statuses(setup) == ["accepted"] * 7
    first = append(ledger_app, complete("pi_shared"))
    again = append(ledger_app, complete("pi_shared", content_id=CONTENT_2))
    assert statuses(first) == ["accepted"]
    assert statuses(again) == ["rejected:conflict"]
    rows = conn.execute(
        "SELECT stripe_payment_intent_id, content_id::text FROM purchases"
    ).fetchall()
    assert rows == [("pi_shared", CONTENT)]


def test_upserts_and_a_refund_find_their_rows_by_the_keys_with_the_organization(
    ledger_app: Ledger, conn: Conn
) -> None:
    done = append(
        ledger_app,
        *catalogue(),
        complete("pi_1"),
        refund("pi_1", "re_1", 500),
        grant("bob"),
        grant("bob", access_type="preview"),
    )
    assert statuses(done) == ["accepted"] * 9
    purchases = conn.execute(
        "SELECT stripe_payment_intent_id, status, refunded_amount_cents FROM purchases"
    ).fetchall()
    assert purchases == [("pi_1", "completed", 500)]
    access = conn.execute(
        "SELECT user_id, access_type FROM content_access ORDER BY user_id"
    ).fetchall()
    assert access == [("alice", "purchased"), ("bob", "preview")]
