"""ledger audit: the revenue command's outputs, and verify catching tampering."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from ledger import api, demo
from ledger.service import Ledger
from tests.support import append, catalogue, cli, complete, refund, t

Conn = psycopg.Connection[Any]


@pytest.fixture
def sales(ledger_app: Ledger) -> Ledger:
    append(
        ledger_app,
        *catalogue(),
        complete("pi_1", amount=1000, fees=(333, 333), at=t(5)),
        complete("pi_2", amount=2000, fees=(200, 600), currency="EUR", at=t(40)),
        refund("pi_1", "re_1", 1, at=t(6)),
        refund("pi_1", "re_2", 1, at=t(35)),
        refund("pi_1", "re_3", 998, at=t(36)),
    )
    return ledger_app


def test_revenue_json_follows_the_contract(sales: Ledger, cli_env: dict[str, str]) -> None:
    done = cli(cli_env, "audit", "revenue", "--format", "json", "--group-by", "month")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["totals"] == [
        {
            "period": None,
            "group": None,
            "currency": "eur",
            "purchases": 1,
            "gross_cents": 2000,
            "refunds": 0,
            "refunded_cents": 0,
            "net_cents": 2000,
            "platform_fee_cents": 200,
            "organization_fee_cents": 600,
            "creator_payout_cents": 1200,
        },
        # pi_1 fully refunded in three parts: every party returns exactly its share
        {
            "period": None,
            "group": None,
            "currency": "usd",
            "purchases": 1,
            "gross_cents": 1000,
            "refunds": 3,
            "refunded_cents": 1000,
            "net_cents": 0,
            "platform_fee_cents": 0,
            "organization_fee_cents": 0,
            "creator_payout_cents": 0,
        },
    ]
    by_month = {(r["period"], r["currency"]): r for r in report["rows"]}
    assert set(by_month) == {("2026-01", "usd"), ("2026-02", "usd"), ("2026-02", "eur")}
    january = by_month[("2026-01", "usd")]
    # after refunds totalling 1 of 1000 split (333, 333, 334): floor(333/1000) = 0 each, creator 1
    assert (
        january["refunded_cents"],
        january["platform_fee_cents"],
        january["organization_fee_cents"],
        january["creator_payout_cents"],
    ) == (1, 333, 333, 333)
    february = by_month[("2026-02", "usd")]
    assert (
        february["purchases"],
        february["refunds"],
        february["refunded_cents"],
        february["net_cents"],
    ) == (0, 2, 999, -999)


def test_revenue_filters_csv_and_table(sales: Ledger, cli_env: dict[str, str]) -> None:
    done = cli(
        cli_env,
        "audit",
        "revenue",
        "--format",
        "csv",
        "--from",
        "2026-02-01",
        "--to",
        "2026-03-01T00:00:00Z",
        "--group-by",
        "organization",
    )
    assert done.returncode == 0
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [(r["currency"], r["gross_cents"], r["refunded_cents"]) for r in rows] == [
        ("eur", "2000", "0"),
        ("usd", "0", "999"),
    ]
    assert list(rows[0]) == [
        "period",
        "group",
        "currency",
        "purchases",
        "gross_cents",
        "refunds",
        "refunded_cents",
        "net_cents",
        "platform_fee_cents",
        "organization_fee_cents",
        "creator_payout_cents",
    ]
    table = cli(
        cli_env, "audit", "revenue", "--organization", "11111111-1111-4111-8111-111111111111"
    )
    assert table.returncode == 0 and "total" in table.stdout and "usd" in table.stdout
    none = cli(
        cli_env,
        "audit",
        "revenue",
        "--organization",
        "99999999-1111-4111-8111-111111111111",
        "--format",
        "json",
    )
    assert json.loads(none.stdout) == {"rows": [], "totals": []}


@pytest.mark.parametrize(
    "args",
    [
        ["--from", "yesterday"],
        ["--to", "2026-01-01T00:00:00"],
        ["--organization", "nope"],
        ["--group-by", "year"],
    ],
)
def test_revenue_bad_options_exit_two(cli_env: dict[str, str], args: list[str]) -> None:
    done = cli(cli_env, "audit", "revenue", *args)
    assert done.returncode == 2 and done.stderr


def test_chart(sales: Ledger, cli_env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "revenue.png"
    done = cli(cli_env, "audit", "revenue", "--chart", str(path))
    assert done.returncode == 0, done.stderr
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def verify(cli_env: dict[str, str], *args: str) -> tuple[int, str]:
    done = cli(cli_env, "audit", "verify", *args)
    return done.returncode, done.stdout


def tamper(conn: Conn, *statements: str) -> None:
    """What a superuser can do behind the ledger's back: triggers off, rewrite, triggers on."""
    with conn.transaction():
        conn.execute("ALTER TABLE ledger_events DISABLE TRIGGER ALL")
        for statement in statements:
            conn.execute(statement)
        conn.execute("ALTER TABLE ledger_events ENABLE TRIGGER ALL")


@pytest.fixture
def history(ledger_app: Ledger) -> Ledger:
    list(api.append_lines(ledger_app, [orjson.dumps(c) for c in demo.history(purchases=20)]))
    return ledger_app


def test_verify_passes_on_an_intact_log(history: Ledger, cli_env: dict[str, str]) -> None:
    status, out = verify(cli_env)
    assert status == 0 and "ok   log" in out and "ok   projections" in out


@pytest.mark.parametrize(
    ("statements", "position"),
    [
        (
            [
                "UPDATE ledger_events SET state = convert_to(convert_from(state, 'UTF8') || ' ', 'UTF8') WHERE notification_id = 40"
            ],
            40,
        ),
        (["DELETE FROM ledger_events WHERE notification_id = 30"], 31),
        (
            [
                "UPDATE ledger_events SET notification_id = notification_id + 1000000 WHERE notification_id > 24",
                "INSERT INTO ledger_events (originator_id, originator_version, topic, state, notification_id, recorded_at, hash) SELECT gen_random_uuid(), 1, topic, state, 25, recorded_at, hash FROM ledger_events WHERE notification_id = 24",
            ],
            25,
        ),
        (
            [
                "UPDATE ledger_events SET notification_id = -notification_id WHERE notification_id IN (20, 21)",
                "UPDATE ledger_events SET notification_id = 21 WHERE notification_id = -20",
                "UPDATE ledger_events SET notification_id = 20 WHERE notification_id = -21",
            ],
            20,
        ),
    ],
    ids=["edited", "deleted", "inserted", "reordered"],
)
def test_verify_names_the_first_bad_position(
    history: Ledger, cli_env: dict[str, str], conn: Conn, statements: list[str], position: int
) -> None:
    tamper(conn, *statements)
    status, out = verify(cli_env)
    assert status == 1
    assert f"breaks at position {position}:" in out


def test_an_anchor_catches_a_rewritten_chain(
    history: Ledger, cli_env: dict[str, str], conn: Conn
) -> None:
    _, out = verify(cli_env)
    head = out.split("head ", 1)[1].split()[0]
    assert verify(cli_env, "--expect-head", head)[0] == 0
    # a superuser rewrites the last event and recomputes its hash so the chain is consistent
    tamper(
        conn,
        "UPDATE ledger_events SET topic = topic WHERE false",
        "DELETE FROM ledger_events WHERE notification_id = (SELECT max(notification_id) FROM ledger_events)",
    )
    status, out = verify(cli_env, "--expect-head", head)
    assert status == 1 and "anchored position" in out


def test_reconciliation_catches_an_altered_purchases_row(
    history: Ledger, cli_env: dict[str, str], conn: Conn
) -> None:
    conn.execute(
        "UPDATE purchases SET refunded_amount_cents = 1 WHERE id = (SELECT id FROM purchases WHERE status = 'completed' AND refunded_amount_cents = 0 LIMIT 1)"
    )
    status, out = verify(cli_env)
    assert status == 1 and "FAIL projections" in out and "refunded_cents" in out
