"""End to end through the CLI: a purchase becomes rows, a redelivery changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg

ORG = "11111111-1111-1111-1111-111111111111"
CONTENT = "22222222-2222-2222-2222-222222222222"

HISTORY = [
    {"type": "organization.register", "organization_id": ORG, "name": "Org"},
    {"type": "user.register", "user_id": "creator"},
    {"type": "user.register", "user_id": "alice"},
    {
        "type": "content.publish",
        "content_id": CONTENT,
        "organization_id": ORG,
        "creator_id": "creator",
        "title": "A video",
    },
    {
        "type": "purchase.complete",
        "stripe_payment_intent_id": "pi_1",
        "customer_id": "alice",
        "content_id": CONTENT,
        "amount_paid_cents": 1999,
        "currency": "USD",
        "platform_fee_cents": 199,
        "organization_fee_cents": 800,
        "creator_payout_cents": 1000,
        "occurred_at": "2026-01-02T10:00:00+01:00",
    },
]


def run_append(env: dict[str, str], lines: list[str]) -> tuple[int, list[dict[str, object]]]:
    done = subprocess.run(
        [sys.executable, "-m", "ledger", "append", "-"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


def test_purchase_is_projected_and_redelivery_is_duplicate(
    cli_env: dict[str, str], conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    lines = [json.dumps(c) for c in HISTORY]
    status, results = run_append(cli_env, [*lines, lines[-1], "not json"])
    assert status == 1
    assert [r["status"] for r in results] == ["accepted"] * 5 + ["duplicate", "rejected"]
    assert results[-1]["error"]["code"] == "validation_error"  # type: ignore[index]
    row = conn.execute(
        "SELECT status, currency, amount_paid_cents, created_at::text FROM purchases"
    ).fetchall()
    assert row == [("completed", "usd", 1999, "2026-01-02 09:00:00+00")]
    access = conn.execute("SELECT access_type, expires_at FROM content_access").fetchall()
    assert access == [("purchased", None)]
