"""``ledger append`` as the checkout flow runs it: JSON Lines in, one answer per line."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import psycopg

from tests.support import answers, catalogue, cli, complete, event_count, refund

Conn = psycopg.Connection[Any]


def lines(*commands: dict[str, Any]) -> str:
    return "".join(json.dumps(c) + "\n" for c in commands)


def test_exit_zero_when_every_line_is_accepted(cli_env: dict[str, str]) -> None:
    done = cli(cli_env, "append", "-", stdin=lines(*catalogue()))
    assert done.returncode == 0, done.stderr
    assert [a["line"] for a in answers(done.stdout)] == [1, 2, 3, 4, 5]
    assert all(
        a["status"] == "accepted" and isinstance(a["position"], int) for a in answers(done.stdout)
    )


def test_malformed_lines_are_rejected_lines_not_crashes(
    cli_env: dict[str, str], conn: Conn
) -> None:
    stdin = (
        lines(*catalogue())
        + "{oops\n\n[1, 2]\n"
        + json.dumps(complete("pi_1") | {"amount_paid_cents": "1999"})
        + "\n"
    )
    done = cli(cli_env, "append", stdin=stdin)
    assert done.returncode == 1
    result = answers(done.stdout)
    assert [a["line"] for a in result] == [1, 2, 3, 4, 5, 6, 8, 9]  # the blank line 7 is skipped
    assert [a["status"] for a in result[5:]] == ["rejected"] * 3
    assert result[-1]["error"] == {
        "code": "validation_error",
        "message": "amount_paid_cents: Input should be a valid integer",
        "field": "amount_paid_cents",
    }
    assert event_count(conn) == 5


def test_duplicate_and_rejected_answers_as_in_the_contract(cli_env: dict[str, str]) -> None:
    cli(cli_env, "append", stdin=lines(*catalogue(), complete("pi_1")))
    done = cli(cli_env, "append", stdin=lines(complete("pi_1"), refund("pi_1", "re_1", 5000)))
    assert done.returncode == 1
    assert answers(done.stdout) == [
        {"line": 1, "status": "duplicate"},
        {
            "line": 2,
            "status": "rejected",
            "error": {
                "code": "invalid_state",
                "message": "refund of 5000 exceeds the 1999 still refundable",
                "field": "amount_cents",
            },
        },
    ]


def test_a_file_argument(cli_env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "commands.jsonl"
    path.write_text(lines(*catalogue()))
    done = cli(cli_env, "append", str(path))
    assert done.returncode == 0 and len(answers(done.stdout)) == 5
    missing = cli(cli_env, "append", str(tmp_path / "missing.jsonl"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_atomic_is_all_or_nothing(cli_env: dict[str, str], conn: Conn) -> None:
    bad = refund("pi_1", "re_1", 10**6)
    done = cli(cli_env, "append", "--atomic", stdin=lines(*catalogue(), complete("pi_1"), bad))
    assert done.returncode == 1
    assert [a["status"] for a in answers(done.stdout)] == ["rolled_back"] * 6 + ["rejected"]
    assert event_count(conn) == 0
    done = cli(
        cli_env, "append", "--atomic", stdin=lines(*catalogue(), complete("pi_1"), complete("pi_1"))
    )
    assert done.returncode == 0
    assert [a["status"] for a in answers(done.stdout)] == ["accepted"] * 6 + ["duplicate"]
    assert conn.execute("SELECT count(*) FROM purchases").fetchone() == (1,)


def test_connection_errors_exit_two_with_one_line(cli_env: dict[str, str]) -> None:
    env = dict(cli_env, LEDGER_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    done = cli(env, "append", stdin=lines(*catalogue()))
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "cannot connect" in done.stderr


def test_usage_errors_exit_two(cli_env: dict[str, str]) -> None:
    assert cli(cli_env, "append", "--no-such-flag").returncode == 2
    assert cli(cli_env, "no-such-command").returncode == 2


def test_batches_answer_in_input_order_each_line_as_alone(
    cli_env: dict[str, str], conn: Conn
) -> None:
    stdin = (
        lines(
            *catalogue(),
            complete("pi_1", amount=1000, fees=(100, 300)),
            refund("pi_1", "re_1", 5000),
            refund("pi_1", "re_2", 400),
        )
        + "\n{oops\n"
        + lines(complete("pi_1", amount=1000, fees=(100, 300)))
    )
    one = cli(cli_env, "append", "--batch", "1", stdin=stdin)
    assert one.returncode == 1
    events = event_count(conn)
    for batch in ("2", "3", "100"):
        # the same input again, in batches: the accepted lines are now duplicates
        again = cli(cli_env, "append", "--batch", batch, stdin=stdin)
        assert again.returncode == 1
        assert [(a["line"], a["status"]) for a in answers(again.stdout)] == [
            (n, "duplicate") for n in range(1, 7)
        ] + [(7, "rejected"), (8, "duplicate"), (10, "rejected"), (11, "duplicate")]
    assert event_count(conn) == events
    statuses = [(a["line"], a["status"]) for a in answers(one.stdout)]
    assert statuses == [(n, "accepted") for n in range(1, 7)] + [
        (7, "rejected"),
        (8, "accepted"),
        (10, "rejected"),
        (11, "duplicate"),
    ]


def test_batch_with_atomic_or_a_bad_size_is_a_usage_error(cli_env: dict[str, str]) -> None:
    for words in (["--atomic", "--batch", "5"], ["--batch", "0"], ["--batch", "x"]):
        done = cli(cli_env, "append", *words, stdin=lines(*catalogue()))
        assert done.returncode == 2
        assert done.stdout == ""
        assert done.stderr.strip().splitlines()[-1].startswith("ledger: error: argument --")


def test_a_producer_waiting_for_each_answer_is_answered_at_once_with_batches(
    cli_env: dict[str, str],
) -> None:
    """A checkout flow writes a line, then waits for its answer before the next: a batch
    does not wait for the lines the flow will only send later."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ledger", "append", "--batch", "100", "-"],
        env=cli_env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    ready = threading.Event()
    got: list[dict[str, Any]] = []
    try:
        for n, command in enumerate(catalogue(), start=1):
            process.stdin.write(json.dumps(command) + "\n")
            process.stdin.flush()
            reader = threading.Thread(
                target=lambda: (got.append(json.loads(process.stdout.readline())), ready.set())  # type: ignore[union-attr]
            )
            reader.start()
            assert ready.wait(timeout=60), f"line {n} was not answered before the next was sent"
            ready.clear()
            assert got[-1]["line"] == n and got[-1]["status"] == "accepted"
        process.stdin.close()
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
