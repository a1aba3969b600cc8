"""Provenance on every event: stamped by each entry point, the same on every event of a
command, outside its fingerprint, and filtered on by ``ledger events`` and ``audit``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg

import ledger
from ledger import api
from ledger.commands.parsing import parse_command
from ledger.service import Ledger
from tests.support import answers, append, catalogue, cli, complete, grant, refund

Conn = psycopg.Connection[Any]


def provenance(conn: Conn, after: int = 0) -> list[tuple[str, Any, Any, Any]]:
    """(topic, source, correlation_id, idempotency_key) of each stored event, in order."""
    rows = conn.execute(
        "SELECT topic, convert_from(state, 'UTF8')::jsonb FROM ledger_events"
        " WHERE notification_id > %s ORDER BY notification_id",
        (after,),
    ).fetchall()
    return [
        (topic, state["source"], state["correlation_id"], state["idempotency_key"])
        for topic, state in rows
    ]


def head(conn: Conn) -> int:
    row = conn.execute("SELECT coalesce(max(notification_id), 0) FROM ledger_events").fetchone()
    assert row is not None
    return int(row[0])


def test_ledger_append_stamps_cli_with_the_file_and_line(
    conn: Conn, cli_env: dict[str, str], tmp_path: Path
) -> None:
    orders = tmp_path / "orders.jsonl"
    lines = [*catalogue(), complete("pi_1", idempotency_key="checkout-1")]
    orders.write_text(
        "\n".join(json.dumps(c) for c in lines[:3])
        + "\n\n"
        + "\n".join(json.dumps(c) for c in lines[3:])
        + "\n"
    )
    done = cli(cli_env, "append", str(orders))
    assert done.returncode == 0, done.stderr
    stamps = provenance(conn)
    assert {source for _, source, _, _ in stamps} == {"cli"}
    # the blank line 4 counts: the fourth command is on line 5
    assert [c for t, _, c, _ in stamps if t == "UserRegistered"] == [
        f"{orders}:2",
        f"{orders}:3",
        f"{orders}:5",
    ]
    completion = [s for s in stamps if s[2] == f"{orders}:7"]
    # every event of the keyed command carries its line and its key, its key claim too
    assert {t for t, _, _, _ in completion} >= {
        "PurchaseOpened",
        "PurchaseCompleted",
        "AccessGranted",
        "CommandKeyClaimed",
    }
    assert {k for _, _, _, k in completion} == {"checkout-1"}
    assert {k for _, _, c, k in stamps if c != f"{orders}:7"} == {None}


def test_stdin_is_named_dash_and_atomic_input_is_stamped_per_line(
    conn: Conn, cli_env: dict[str, str]
) -> None:
    done = cli(cli_env, "append", stdin="\n".join(json.dumps(c) for c in catalogue()))
    assert done.returncode == 0, done.stderr
    assert [c for _, _, c, _ in provenance(conn)][:2] == ["-:1", "-:2"]
    before = head(conn)
    more = [grant("alice"), grant("bob")]
    done = cli(cli_env, "append", "--atomic", "-", stdin="\n".join(json.dumps(c) for c in more))
    assert [a["status"] for a in answers(done.stdout)] == ["accepted", "accepted"]
    assert {(s, c) for _, s, c, _ in provenance(conn, before)} == {("cli", "-:1"), ("cli", "-:2")}


def test_each_source_stamps_its_events_and_a_redelivery_is_still_a_duplicate(
    ledger_app: Ledger, conn: Conn
) -> None:
    append(ledger_app, *catalogue())
    assert {s for _, s, _, _ in provenance(conn)} == {"api"}  # the Python API, no id
    before = head(conn)
    line = json.dumps(complete("pi_1"))
    paid = ledger.append(ledger_app, parse_command(line).stamped("stripe", "evt_1"))
    assert paid.status == "accepted"
    assert {(s, c) for _, s, c, _ in provenance(conn, before)} == {("stripe", "evt_1")}
    # the same purchase again, over HTTP and from a file: duplicates, nothing recorded
    again = ledger.append(ledger_app, parse_command(line).stamped("http", "req-9"))
    filed = list(api.append_lines(ledger_app, [line], source="cli", name="late.jsonl"))
    assert [again.status, filed[0][1].status] == ["duplicate", "duplicate"]
    assert {(s, c) for _, s, c, _ in provenance(conn, before)} == {("stripe", "evt_1")}


def test_events_filter_on_source_correlation_id_and_key(
    ledger_app: Ledger, cli_env: dict[str, str]
) -> None:
    append(ledger_app, *catalogue())
    ledger.append(ledger_app, parse_command(json.dumps(complete("pi_1"))).stamped("stripe", "e1"))
    keyed = refund("pi_1", "re_1", 500, idempotency_key="refund-key")
    ledger.append(ledger_app, parse_command(json.dumps(keyed)).stamped("http", "req-1"))

    def data(*args: str) -> list[dict[str, Any]]:
        done = cli(cli_env, "events", *args)
        assert done.returncode == 0, done.stderr
        return [a["data"] for a in answers(done.stdout)]

    everything = data()
    for flag, field in (
        ("--source", "source"),
        ("--correlation-id", "correlation_id"),
        ("--idempotency-key", "idempotency_key"),
    ):
        for value in {d[field] for d in everything if d[field] is not None}:
            chosen = data(flag, value)
            assert chosen == [d for d in everything if d[field] == value], (flag, value)
    assert {d["source"] for d in data("--source", "stripe")} == {"stripe"}
    assert data("--source", "http", "--topic", "PurchaseRefunded")[0]["refund_id"] == "re_1"
    assert data("--idempotency-key", "nope") == []
    python = ledger.read_events(
        ledger_app.settings, provenance=ledger.ProvenanceFilter(correlation_id="req-1")
    )
    assert [r.data for r in python] == data("--correlation-id", "req-1")
    done = cli(cli_env, "events", "--source", "ftp")
    assert done.returncode == 2 and "--source" in done.stderr


def test_audit_revenue_counts_one_source(ledger_app: Ledger, cli_env: dict[str, str]) -> None:
    append(ledger_app, *catalogue(), complete("pi_cli", amount=1000, fees=(100, 100)))
    webhook = [complete("pi_s", amount=3000, fees=(300, 300)), refund("pi_cli", "re_1", 400)]
    for command in webhook:
        ledger.append(ledger_app, parse_command(json.dumps(command)).stamped("stripe", "evt"))

    def totals(*args: str) -> dict[str, Any]:
        done = cli(cli_env, "audit", "revenue", "--format", "json", *args)
        assert done.returncode == 0, done.stderr
        rows = json.loads(done.stdout)["totals"]
        return rows[0] if rows else {}

    stripe, api_only, every = totals("--source", "stripe"), totals("--source", "api"), totals()
    assert (stripe["purchases"], stripe["gross_cents"], stripe["refunds"]) == (1, 3000, 1)
    assert stripe["refunded_cents"] == 400  # the refund of a purchase another source recorded
    assert (api_only["purchases"], api_only["gross_cents"], api_only["refunds"]) == (1, 1000, 0)
    assert stripe["net_cents"] + api_only["net_cents"] == every["net_cents"]
    assert totals("--source", "http") == {} and totals("--source", "unknown") == {}
