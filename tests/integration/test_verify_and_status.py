"""verify finds every difference between the live tables and the log; status tells where each stands."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from ledger.config import Settings
from ledger.service import Ledger
from ledger.upkeep.verify import verify
from tests.citus_support import PlacingFromHere
from tests.support import cli, load_history

Conn = psycopg.Connection[Any]


def load(app: Ledger) -> None:
    load_history(app, 40)


def test_verify_is_clean_on_an_honest_ledger(
    ledger_app: Ledger, cli_env: dict[str, str], placing_from_here: PlacingFromHere
) -> None:
    load(ledger_app)
    placing_from_here()  # verify's scratch schema and tables
    done = cli(cli_env, "projections", "verify")
    assert done.returncode == 0 and "equal" in done.stdout


def test_verify_lists_an_altered_a_missing_and_an_extra_row(
    ledger_app: Ledger,
    settings: Settings,
    conn: Conn,
    cli_env: dict[str, str],
    placing_from_here: PlacingFromHere,
) -> None:
    load(ledger_app)
    altered = conn.execute(
        "SELECT stripe_payment_intent_id, organization_id::text FROM purchases"
        " WHERE status = 'completed' ORDER BY 1 LIMIT 1"
    ).fetchone()
    assert altered is not None
    conn.execute(
        "UPDATE purchases SET amount_paid_cents = amount_paid_cents + 1, platform_fee_cents = platform_fee_cents + 1 WHERE stripe_payment_intent_id = %s",
        altered[:1],
    )
    missing = conn.execute(
        "DELETE FROM video_playback WHERE id = (SELECT min(id::text)::uuid FROM video_playback) RETURNING user_id, content_id::text, organization_id::text"
    ).fetchone()
    conn.execute("INSERT INTO users (id) VALUES ('intruder')")
    placing_from_here()
    differences = verify(settings)
    described = sorted(d.describe() for d in differences)
    assert len(differences) == 4
    assert any(
        d.table == "purchases"
        and d.column == "amount_paid_cents"
        and d.key == {"organization_id": altered[1], "stripe_payment_intent_id": altered[0]}
        for d in differences
    )
    assert any(d.table == "purchases" and d.column == "platform_fee_cents" for d in differences)
    assert any(
        d.table == "video_playback"
        and d.column is None
        and d.live is None
        and missing is not None
        and d.key
        == {"organization_id": missing[2], "user_id": missing[0], "content_id": missing[1]}
        for d in differences
    )
    assert any("users (id=intruder): extra row" in line for line in described)
    done = cli(cli_env, "projections", "verify")
    assert done.returncode == 1
    assert "4 difference(s)" in done.stdout and "amount_paid_cents live=" in done.stdout


def test_status_reports_position_and_lag(
    ledger_app: Ledger, cli_env: dict[str, str], conn: Conn, placing_from_here: PlacingFromHere
) -> None:
    load(ledger_app)
    head = conn.execute("SELECT max(notification_id) FROM ledger_events").fetchone()
    placing_from_here()  # a rebuild of users, then a table dropped
    assert cli(cli_env, "projections", "rebuild", "--only", "users").returncode == 0
    conn.execute("DROP TABLE video_playback")
    done = cli(cli_env, "projections", "status", "--format", "json")
    assert done.returncode == 0
    states = {s["name"]: s for s in json.loads(done.stdout)["projections"]}
    assert states["purchases"]["position"] == head[0] and states["purchases"]["lag"] == 0  # type: ignore[index]
    assert states["users"]["rebuilt_position"] == head[0]  # type: ignore[index]
    assert states["video_playback"]["exists"] is False and states["video_playback"]["lag"] is None
    text = cli(cli_env, "projections", "status")
    assert text.returncode == 0 and "video_playback" in text.stdout
