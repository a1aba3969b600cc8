"""The CHECK constraints and delete rules, tried with real rows."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.database import distribution

Conn = psycopg.Connection[Any]
ORG = "11111111-1111-4111-8111-111111111111"
CONTENT = "33333333-3333-4333-8333-333333333333"
MAX_INT = 2_147_483_647
# a row refused: a constraint's violation, or on the distributed layout a row without its
# organization, which Citus refuses before any constraint (its distribution column is NULL)
REFUSED = (psycopg.errors.IntegrityError, psycopg.errors.NullValueNotAllowed)


@pytest.fixture
def seeded(conn: Conn) -> Conn:
    conn.execute("INSERT INTO organizations (id, name) VALUES (%s, 'Org')", (ORG,))
    conn.execute("INSERT INTO users (id) VALUES ('alice'), ('creator')")
    conn.execute(
        "INSERT INTO content (id, organization_id, creator_id, title) VALUES (%s, %s, 'creator', 'T')",
        (CONTENT, ORG),
    )
    return conn


def purchase(conn: Conn, **overrides: Any) -> None:
    row: dict[str, Any] = {
        "customer_id": "alice",
        "content_id": CONTENT,
        "organization_id": ORG,
        "stripe_payment_intent_id": "pi_1",
        "status": "completed",
        "amount_paid_cents": 1000,
        "currency": "usd",
        "platform_fee_cents": 100,
        "organization_fee_cents": 300,
        "creator_payout_cents": 600,
        "refunded_amount_cents": 0,
    } | overrides
    columns = ", ".join(row)
    marks = ", ".join(["%s"] * len(row))
    with conn.transaction():
        conn.execute(f"INSERT INTO purchases ({columns}) VALUES ({marks})", list(row.values()))


def rejects(conn: Conn, **overrides: Any) -> bool:
    try:
        purchase(conn, **overrides)
    except REFUSED:
        return True
    conn.execute("DELETE FROM purchases")
    return False


def test_a_valid_purchase_is_accepted(seeded: Conn) -> None:
    assert not rejects(seeded)
    assert not rejects(
        seeded,
        status="pending",
        platform_fee_cents=None,
        organization_fee_cents=None,
        creator_payout_cents=None,
    )
    assert not rejects(seeded, status="refunded", refunded_amount_cents=1000)


@pytest.mark.parametrize(
    "overrides",
    [
        {"status": "settled"},  # M1
        {"currency": "US"},
        {"currency": "USD"},  # stored lower case
        {"amount_paid_cents": 0},
        {"platform_fee_cents": -1, "creator_payout_cents": 701},
        {"platform_fee_cents": None},  # all or none
        {"creator_payout_cents": 599},  # sum
        {"refunded_amount_cents": 1001},
        {"refunded_amount_cents": -1},
        {"status": "refunded", "refunded_amount_cents": 999},
        {"status": "completed", "refunded_amount_cents": 1000},
        {
            "status": "pending",
            "refunded_amount_cents": 10,
            "platform_fee_cents": None,
            "organization_fee_cents": None,
            "creator_payout_cents": None,
        },
        {
            "status": "completed",
            "platform_fee_cents": None,
            "organization_fee_cents": None,
            "creator_payout_cents": None,
        },
        {"stripe_payment_intent_id": None},  # L3 NOT NULL
        {"organization_id": None},  # H1
        {"currency": None},  # M4 NOT NULL
    ],
)
def test_bad_purchases_are_refused(seeded: Conn, overrides: dict[str, Any]) -> None:
    assert rejects(seeded, **overrides)


def test_fee_sum_is_checked_in_bigint(seeded: Conn) -> None:
    # each fee fits an integer, their int4 sum would overflow: the check must still decide
    assert rejects(
        seeded,
        amount_paid_cents=MAX_INT,
        platform_fee_cents=MAX_INT,
        organization_fee_cents=MAX_INT,
        creator_payout_cents=MAX_INT,
    )
    assert not rejects(
        seeded,
        amount_paid_cents=MAX_INT,
        platform_fee_cents=MAX_INT - 2,
        organization_fee_cents=1,
        creator_payout_cents=1,
    )


@given(
    amount=st.integers(1, MAX_INT),
    fees=st.tuples(st.integers(-5, MAX_INT), st.integers(-5, MAX_INT), st.integers(-5, MAX_INT)),
)
def test_any_fee_triple_is_accepted_iff_non_negative_and_summing_to_the_amount(
    seeded: Conn, amount: int, fees: tuple[int, int, int]
) -> None:
    good = min(fees) >= 0 and sum(fees) == amount
    refused = rejects(
        seeded,
        amount_paid_cents=amount,
        platform_fee_cents=fees[0],
        organization_fee_cents=fees[1],
        creator_payout_cents=fees[2],
    )
    assert refused is not good


def test_unique_payment_intent(seeded: Conn) -> None:
    purchase(seeded)
    with pytest.raises(psycopg.errors.UniqueViolation):
        purchase(seeded, creator_payout_cents=600)


def access(conn: Conn, **overrides: Any) -> None:
    row = {
        "user_id": "alice",
        "content_id": CONTENT,
        "organization_id": ORG,
        "access_type": "subscription",
    } | overrides
    columns = ", ".join(row)
    marks = ", ".join(["%s"] * len(row))
    with conn.transaction():
        conn.execute(f"INSERT INTO content_access ({columns}) VALUES ({marks})", list(row.values()))


@pytest.mark.parametrize(
    ("overrides", "ok"),
    [
        ({}, True),
        ({"access_type": "purchased"}, True),
        ({"access_type": "rental"}, False),  # M1
        ({"granted_at": "2026-01-02T00:00:00Z", "expires_at": "2026-01-01T00:00:00Z"}, False),
        ({"granted_at": "2026-01-01T00:00:00Z", "expires_at": "2026-01-02T00:00:00Z"}, True),  # L4
        ({"access_type": "purchased", "expires_at": "2099-01-01T00:00:00Z"}, False),
        ({"organization_id": None}, False),  # H1
    ],
)
def test_access_rows(seeded: Conn, overrides: dict[str, Any], ok: bool) -> None:
    try:
        access(seeded, **overrides)
        accepted = True
    except REFUSED:
        accepted = False
    assert accepted is ok


def test_one_access_row_per_user_and_content(seeded: Conn) -> None:
    access(seeded)
    with pytest.raises(psycopg.errors.UniqueViolation):
        access(seeded, access_type="preview")


@pytest.mark.parametrize(
    ("position", "duration", "ok"),
    [(0, 1, True), (10, 10, True), (11, 10, False), (-1, 10, False), (0, 0, False)],
)
def test_playback_rows(seeded: Conn, position: int, duration: int, ok: bool) -> None:
    try:
        with seeded.transaction():
            seeded.execute(
                "INSERT INTO video_playback (user_id, content_id, organization_id, position_seconds, duration_seconds) VALUES ('alice', %s, %s, %s, %s)",
                (CONTENT, ORG, position, duration),
            )
        accepted = True
    except psycopg.errors.IntegrityError:
        accepted = False
    assert accepted is ok


def test_delete_rules(seeded: Conn) -> None:
    purchase(seeded)
    access(seeded)
    seeded.execute(
        "INSERT INTO video_playback (user_id, content_id, organization_id, duration_seconds) VALUES ('alice', %s, %s, 10)",
        (CONTENT, ORG),
    )
    # RESTRICT: PostgreSQL 15 reports a foreign key violation, 18 a restrict violation
    with pytest.raises(psycopg.errors.IntegrityError), seeded.transaction():
        seeded.execute("DELETE FROM content WHERE id = %s", (CONTENT,))  # RESTRICT by purchases
    with pytest.raises(psycopg.errors.IntegrityError), seeded.transaction():
        seeded.execute("DELETE FROM organizations")  # RESTRICT by purchases (H1)
    seeded.execute("DELETE FROM users WHERE id = 'alice'")  # CASCADE
    assert seeded.execute(
        "SELECT (SELECT count(*) FROM purchases) + (SELECT count(*) FROM content_access) + (SELECT count(*) FROM video_playback)"
    ).fetchone() == (0,)
    seeded.execute("DELETE FROM users WHERE id = 'creator'")  # SET NULL
    assert seeded.execute("SELECT creator_id FROM content").fetchone() == (None,)
    seeded.execute("INSERT INTO users (id) VALUES ('bob')")
    access(seeded, user_id="bob")
    seeded.execute("DELETE FROM organizations")  # CASCADE through content and content_access
    assert seeded.execute(
        "SELECT (SELECT count(*) FROM content) + (SELECT count(*) FROM content_access)"
    ).fetchone() == (0,)


def test_content_keys_carry_the_organization_and_keep_the_reviewed_rules(seeded: Conn) -> None:
    """Migration 0015: purchases and access rows reference content by (organization_id,
    content_id): a row naming content of another organization is refused, as one naming no
    content; deleting content cascades to its access rows and, through content ids kept
    unique on one server, to its playback rows (the reviewed rules), and is refused while a
    purchase names it."""
    other = "22222222-2222-4222-8222-222222222222"
    seeded.execute("INSERT INTO organizations (id, name) VALUES (%s, 'Other')", (other,))
    for write in (purchase, access):
        with pytest.raises(psycopg.errors.ForeignKeyViolation), seeded.transaction():
            write(seeded, organization_id=other)  # the content is ORG's
    schema = seeded.execute("SELECT current_schema()").fetchone()
    if schema is None or not distribution.is_distributed(seeded, str(schema[0])):
        # on one server a content id is one content, whatever the organization; distributed,
        # content's unique key is (organization_id, id), as its distribution needs
        with pytest.raises(psycopg.errors.UniqueViolation), seeded.transaction():
            seeded.execute(
                "INSERT INTO content (id, organization_id, title) VALUES (%s, %s, 'T')",
                (CONTENT, other),
            )
    access(seeded)
    seeded.execute(
        "INSERT INTO video_playback (user_id, content_id, organization_id, duration_seconds) VALUES ('alice', %s, %s, 10)",
        (CONTENT, ORG),
    )
    seeded.execute("DELETE FROM content WHERE id = %s", (CONTENT,))  # CASCADE
    assert seeded.execute(
        "SELECT (SELECT count(*) FROM content_access) + (SELECT count(*) FROM video_playback)"
    ).fetchone() == (0,)
