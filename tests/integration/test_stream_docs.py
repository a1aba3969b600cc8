"""docs/stream.md runs: its ```python blocks (``py`` blocks are fragments, not run), in
order, against a ledger with purchases and refunds of two creators over two months; the
example consumer's table must agree with ``ledger audit revenue``, once and again."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ledger.config import Settings
from ledger.service import Ledger
from tests.support import (
    CONTENT_2,
    ORG_2,
    answers,
    append,
    catalogue,
    cli,
    complete,
    org,
    publish,
    refund,
    t,
    user,
)

Conn = psycopg.Connection[Any]
DOC = Path(__file__).resolve().parents[2] / "docs" / "stream.md"


def blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", DOC.read_text(encoding="utf-8"), re.M | re.S)


def run_the_doc(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("LEDGER_DATABASE_URL", settings.url)
    monkeypatch.setenv("LEDGER_SCHEMA", settings.schema)
    namespace: dict[str, Any] = {"__name__": "stream_doc"}
    for block in blocks():
        exec(compile(block, str(DOC), "exec"), namespace)
    return namespace


def payouts(conn: Conn) -> dict[tuple[str, str], int]:
    """The example's table, summed over months per (creator, currency)."""
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for creator, _, currency, cents in conn.execute("SELECT * FROM creator_monthly_payouts"):
        totals[(creator, currency)] += cents
    return dict(totals)


def audited(cli_env: dict[str, str]) -> dict[tuple[str, str], int]:
    done = cli(cli_env, "audit", "revenue", "--group-by", "creator", "--format", "json")
    assert done.returncode == 0, done.stderr
    rows = answers(done.stdout)[0]["rows"]
    return {(r["group"], r["currency"]): r["creator_payout_cents"] for r in rows}


def by_subject(named: dict[str, str], audit: dict[Any, int]) -> dict[Any, int]:
    """The audit's rows by creator id, keyed as the log names creators: by subject."""
    return {(named[creator], currency): v for (creator, currency), v in audit.items()}


def test_the_documented_consumers_run_and_agree_with_the_audit(
    ledger_app: Ledger,
    conn: Conn,
    cli_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert len(blocks()) == 3, "reading, the consumer in the ledger's database, the warehouse"
    append(
        ledger_app,
        *catalogue(),
        org(ORG_2, "Other"),
        user("maker"),
        publish(CONTENT_2, ORG_2, creator="maker", title="Theirs"),
        complete("pi_1", at=t(2)),
        complete("pi_2", customer="bob", at=t(3), amount=1000, fees=(100, 300)),
        complete("pi_3", content_id=CONTENT_2, at=t(40), currency="eur"),
        refund("pi_1", "re_1", 999, at=t(33)),
    )
    namespace = run_the_doc(ledger_app.settings, monkeypatch)
    # the log names creators by their subjects (docs/privacy.md): so does a consumer of it
    named = dict(conn.execute("SELECT user_id, subject FROM ledger_subjects").fetchall())
    assert payouts(conn) == by_subject(named, audited(cli_env))
    january = conn.execute(
        "SELECT payout_cents FROM creator_monthly_payouts"
        " WHERE creator_id = %s AND month = '2026-01-01' AND currency = 'usd'",
        (named["creator"],),
    ).fetchone()
    assert january == ((1999 - 199 - 800) + (1000 - 100 - 300),)
    printed = capsys.readouterr().out
    assert "monthly-payouts: handled 4 events" in printed
    assert printed.count("\n") == 1 + 3, "three purchases printed, then the consumer's line"
    warehouse = namespace["warehouse"]
    sales = warehouse.execute("SELECT payment FROM sales ORDER BY position").fetchall()
    assert sales == [("pi_1",), ("pi_2",), ("pi_3",)]
    head = conn.execute("SELECT max(notification_id) FROM ledger_events").fetchone()
    assert warehouse.execute("SELECT position FROM checkpoint").fetchone() == head

    append(ledger_app, complete("pi_4", customer="bob", at=t(41)))
    append(ledger_app, refund("pi_3", "re_3", 1999, at=t(42)))
    run_the_doc(ledger_app.settings, monkeypatch)
    assert payouts(conn) == by_subject(named, audited(cli_env)), "the new events only, each once"
    assert "handled 2 events" in capsys.readouterr().out
