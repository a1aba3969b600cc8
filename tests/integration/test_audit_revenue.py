"""ledger audit revenue through the CLI: the contract's shape, the rules, filters, as-of, chart."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ledger.service import Ledger
from tests.support import (
    CONTENT,
    CONTENT_2,
    ORG,
    ORG_2,
    append,
    catalogue,
    cli,
    complete,
    org,
    publish,
    refund,
    start,
    statuses,
    t,
    user,
)


def report(cli_env: dict[str, str], *args: str) -> dict[str, Any]:
    done = cli(cli_env, "audit", "revenue", "--format", "json", *args)
    assert done.returncode == 0, done.stderr
    parsed: dict[str, Any] = json.loads(done.stdout)
    return parsed


@pytest.fixture
def sales(ledger_app: Ledger) -> Ledger:
    results = append(
        ledger_app,
        *catalogue(),
        complete("pi_1", amount=1000, fees=(333, 333), at=t(5)),
        complete("pi_2", amount=2000, fees=(200, 600), currency="EUR", at=t(40)),
        refund("pi_1", "re_1", 1, at=t(6)),
        refund("pi_1", "re_2", 1, at=t(35)),
        refund("pi_1", "re_3", 998, at=t(36)),
    )
    assert "rejected" not in str(statuses(results))
    return ledger_app


def test_revenue_json_follows_the_contract(sales: Ledger, cli_env: dict[str, str]) -> None:
    document = report(cli_env, "--group-by", "month")
    assert document["totals"] == [
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
    by_month = {(r["period"], r["currency"]): r for r in document["rows"]}
    assert list(by_month) == [("2026-01", "usd"), ("2026-02", "eur"), ("2026-02", "usd")]
    january = by_month[("2026-01", "usd")]
    # refunds totalling 1 of 1000 split (333, 333, 334): the platform returns
    # ceil(333/1000) = 1, the creator floor(334/1000) = 0, the organization the rest, 0
    assert (
        january["purchases"],
        january["refunded_cents"],
        january["platform_fee_cents"],
        january["organization_fee_cents"],
        january["creator_payout_cents"],
    ) == (1, 1, 332, 333, 334)
    february = by_month[("2026-02", "usd")]
    # refunds of 1 and 998 bring R to 1000: the platform returns 333 - 1, the
    # organization 333 - 0, the creator 334 - 0
    assert (
        february["purchases"],
        february["refunds"],
        february["refunded_cents"],
        february["net_cents"],
        february["platform_fee_cents"],
        february["organization_fee_cents"],
        february["creator_payout_cents"],
    ) == (0, 2, 999, -999, -332, -333, -334)
    # without --group-by the rows are the totals
    assert report(cli_env)["rows"] == document["totals"]


def test_group_by_day_content_creator_and_organization(
    ledger_app: Ledger, cli_env: dict[str, str]
) -> None:
    results = append(
        ledger_app,
        *catalogue(),
        org(ORG_2, "Other"),
        user("creator_2"),
        publish(CONTENT_2, ORG_2, creator="creator_2"),
        complete("pi_a", at=t(3, 23, 59)),
        complete("pi_b", content_id=CONTENT_2, amount=500, fees=(50, 50), at=t(4, 0, 0)),
        refund("pi_b", "re_b", 100, at=t(4, 0, 1)),
    )
    assert "rejected" not in str(statuses(results))
    days = report(cli_env, "--group-by", "day")["rows"]
    assert [(r["period"], r["gross_cents"], r["refunded_cents"]) for r in days] == [
        ("2026-01-03", 1999, 0),
        ("2026-01-04", 500, 100),
    ]
    for group_by, expected in (
        ("content", {CONTENT: 1999, CONTENT_2: 400}),
        ("creator", {"creator": 1999, "creator_2": 400}),
        ("organization", {ORG: 1999, ORG_2: 400}),
    ):
        rows = report(cli_env, "--group-by", group_by)["rows"]
        assert {r["group"]: r["net_cents"] for r in rows} == expected
        assert all(r["period"] is None for r in rows)
    only = report(cli_env, "--organization", ORG_2, "--group-by", "day")
    assert [r["period"] for r in only["rows"]] == ["2026-01-04"]
    assert only["totals"][0]["net_cents"] == 400


def test_what_counts_and_what_does_not(ledger_app: Ledger, cli_env: dict[str, str]) -> None:
    """Pending and failed purchases are no revenue; a failed attempt that later succeeds
    counts once, when it completed; a redelivered completion counts once; a rejected
    refund counts nothing; a deleted customer's purchases and refunds still count."""
    results = append(
        ledger_app,
        *catalogue(),
        start("pi_pending", at=t(2)),
        start("pi_retry", at=t(2)),
        {"type": "purchase.fail", "stripe_payment_intent_id": "pi_retry", "occurred_at": t(3)},
        complete("pi_retry", at=t(33)),
        complete("pi_twice", customer="bob", amount=700, fees=(70, 70), at=t(4)),
        complete("pi_twice", customer="bob", amount=700, fees=(70, 70), at=t(4)),
        refund("pi_twice", "re_too_much", 701, at=t(5)),
        {"type": "user.delete", "user_id": "bob", "occurred_at": t(6)},
        refund("pi_twice", "re_after_delete", 70, at=t(7)),
    )
    assert statuses(results)[-5:] == [
        "accepted",
        "duplicate",
        "rejected:invalid_state",
        "accepted",
        "accepted",
    ]
    document = report(cli_env, "--group-by", "month")
    assert [(r["period"], r["purchases"], r["gross_cents"], r["refunded_cents"]) for r in document["rows"]] == [
        ("2026-01", 1, 700, 70),
        ("2026-02", 1, 1999, 0),
    ]  # fmt: skip
    assert document["totals"][0]["net_cents"] == 700 + 1999 - 70


def test_filters_csv_and_table(sales: Ledger, cli_env: dict[str, str]) -> None:
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
    assert rows[0]["period"] == "" and rows[0]["group"] == ORG
    # --from is inclusive and --to exclusive: pi_1 completed at 2026-01-05T12:00:00Z
    assert (
        report(cli_env, "--from", "2026-01-05T12:00:00Z", "--to", "2026-01-06")["totals"][0][
            "gross_cents"
        ]
        == 1000
    )
    assert report(cli_env, "--from", "2026-01-01", "--to", "2026-01-05T12:00:00Z")["totals"] == []
    table = cli(cli_env, "audit", "revenue", "--organization", ORG)
    assert table.returncode == 0
    totals = [line.split() for line in table.stdout.splitlines() if line.startswith("total")]
    assert [(t[1], t[3]) for t in totals] == [("eur", "2000"), ("usd", "1000")]
    none = report(cli_env, "--organization", "99999999-1111-4111-8111-111111111111")
    assert none == {"rows": [], "totals": []}


def test_as_of_answers_as_the_ledger_knew_it(ledger_app: Ledger, cli_env: dict[str, str]) -> None:
    """Two batches; a moment between them, taken on this machine's clock as a user would."""
    append(
        ledger_app, *catalogue(), complete("pi_1", at=t(40)), refund("pi_1", "re_1", 99, at=t(41))
    )
    time.sleep(0.01)
    between = datetime.now(UTC).isoformat()
    time.sleep(0.01)
    # the second batch completes a purchase *earlier* in business time, and refunds more
    append(
        ledger_app,
        complete("pi_0", amount=500, fees=(0, 0), at=t(2)),
        refund("pi_1", "re_2", 100, at=t(42)),
    )
    now = report(cli_env, "--group-by", "month")
    then = report(cli_env, "--group-by", "month", "--as-of", between)
    assert [(r["period"], r["gross_cents"], r["refunded_cents"]) for r in now["rows"]] == [
        ("2026-01", 500, 0),
        ("2026-02", 1999, 199),
    ]
    assert [(r["period"], r["gross_cents"], r["refunded_cents"]) for r in then["rows"]] == [
        ("2026-02", 1999, 99),
    ]
    assert report(cli_env, "--as-of", "2000-01-01") == {"rows": [], "totals": []}  # fmt: skip


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--from", "yesterday"], "--from"),
        (["--to", "2026-01-01T00:00:00"], "--to"),
        (["--as-of", "2026-01-01T00:00"], "--as-of"),
        (["--from", "2026-02-01", "--to", "2026-01-01"], "--to"),
        (["--organization", "nope"], "--organization"),
        (["--group-by", "year"], "--group-by"),
        (["--format", "xml"], "--format"),
        (["--chart", "revenue.svg"], "--chart"),
    ],
)
def test_bad_options_exit_two_naming_the_option(
    cli_env: dict[str, str], args: list[str], named: str
) -> None:
    done = cli(cli_env, "audit", "revenue", *args)
    assert done.returncode == 2 and named in done.stderr and not done.stdout


def test_chart(sales: Ledger, cli_env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "revenue.png"
    done = cli(cli_env, "audit", "revenue", "--group-by", "content", "--chart", str(path))
    assert done.returncode == 0, done.stderr
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
    assert "total" in done.stdout  # the report is printed too
