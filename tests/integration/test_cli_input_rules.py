"""The CLI on the inputs issue 14 found crashing or answering wrongly: times outside the
business window, audit ranges outside it, a chart of centuries, hostile text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg

from tests.support import answers, catalogue, cli, complete, event_count, refund, user

Conn = psycopg.Connection[Any]


def lines(*commands: dict[str, Any] | str) -> str:
    return "".join((c if isinstance(c, str) else json.dumps(c)) + "\n" for c in commands)


def test_a_time_outside_the_window_is_a_rejected_line_and_the_run_goes_on(
    cli_env: dict[str, str], conn: Conn
) -> None:
    stdin = lines(
        user("a") | {"occurred_at": "0001-01-01T00:00:00+01:00"},
        user("b") | {"occurred_at": "9999-12-31T23:59:59-01:00"},
        {
            "type": "access.grant",
            "user_id": "b",
            "content_id": "33333333-3333-4333-8333-333333333333",
            "access_type": "preview",
            "occurred_at": "2026-01-01T00:00:00Z",
            "expires_at": "9999-12-31T23:59:59-01:00",
        },
        user("c"),
    )
    done = cli(cli_env, "append", stdin=stdin)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    result = answers(done.stdout)
    assert [(a["line"], a["status"]) for a in result] == [
        (1, "rejected"),
        (2, "rejected"),
        (3, "rejected"),
        (4, "accepted"),
    ]
    assert [a["error"]["field"] for a in result[:3]] == ["occurred_at", "occurred_at", "expires_at"]
    assert all(a["error"]["code"] == "validation_error" for a in result[:3])
    assert event_count(conn) == 1


def test_control_characters_never_reach_the_ledger(cli_env: dict[str, str], conn: Conn) -> None:
    done = cli(cli_env, "append", stdin=lines(user("evil\u001b[2J"), user(" padded"), user("ok")))
    assert [a["status"] for a in answers(done.stdout)] == ["rejected", "rejected", "accepted"]
    assert [a["error"]["field"] for a in answers(done.stdout)[:2]] == ["user_id", "user_id"]
    assert conn.execute("SELECT id FROM users").fetchall() == [("ok",)]


def test_audit_ranges_outside_the_window_are_usage_errors(cli_env: dict[str, str]) -> None:
    for option, value in (
        ("--from", "0001-01-01"),
        ("--to", "9999-12-31T23:59:59-01:00"),
        ("--as-of", "1999-12-31T23:59:59Z"),
    ):
        done = cli(cli_env, "audit", "revenue", option, value)
        assert done.returncode == 2, (option, done.stderr)
        assert done.stdout == ""
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert option in done.stderr and "outside the business window" in done.stderr
    assert cli(cli_env, "audit", "revenue", "--to", "2100-01-01").returncode == 0


def test_a_chart_of_too_many_periods_says_how_to_narrow_it(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    history = [
        *catalogue(),
        complete("pi_1", at="2000-01-03T00:00:00+00:00"),
        complete("pi_2", at="2099-12-30T00:00:00+00:00"),
        refund("pi_2", "re_1", 1, at="2099-12-31T00:00:00+00:00"),
    ]
    assert cli(cli_env, "append", stdin=lines(*history)).returncode == 0
    chart = tmp_path / "century.png"
    for group in ("day", "month"):
        done = cli(cli_env, "audit", "revenue", "--group-by", group, "--chart", str(chart))
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        assert "--from/--to" in done.stderr and "at most 400" in done.stderr
        assert not chart.exists()
    # without a chart, every format answers
    for fmt in ("table", "json", "csv"):
        done = cli(cli_env, "audit", "revenue", "--group-by", "day", "--format", fmt)
        assert done.returncode == 0, done.stderr
        assert "2099-12-31" in done.stdout
    # a narrower range draws
    narrow = cli(
        cli_env,
        "audit",
        "revenue",
        "--group-by",
        "day",
        "--from",
        "2099-12-01",
        "--chart",
        str(chart),
    )
    assert narrow.returncode == 0, narrow.stderr
    assert chart.stat().st_size > 0
