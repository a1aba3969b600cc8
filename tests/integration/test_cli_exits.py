"""Exit statuses a script can trust, and never a traceback.

Interrupted (SIGINT, SIGTERM) or with its database lost, ``append`` has written every answer it
owes and says where to resume; a closed standard output ends any command quietly; an unexpected
error is one line (``--debug`` shows the traceback); no argument list makes a traceback.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from psycopg import sql
from psycopg.conninfo import make_conninfo

from ledger.cli import main, version
from ledger.cli.append import DEFAULT_BATCH
from ledger.config import Settings
from ledger.service import Ledger
from tests.cli_tree import commands
from tests.support import append, appender, catalogue, cli, feed, stream

Conn = psycopg.Connection[Any]
SUMMARY = re.compile(
    r"^ledger: (?P<why>.+): (?P<answers>\d+) lines? answered, every line up to line "
    r"(?P<last>\d+) settled; the first line not committed is line (?P<next>\d+)(?P<note> \(.*\))?$"
)


def recorded(conn: Conn, prefix: str) -> set[str]:
    """Payment intents with this prefix whose completion is in the log."""
    rows = conn.execute(
        "SELECT convert_from(state, 'UTF8')::jsonb->>'stripe_payment_intent_id' FROM ledger_events"
        " WHERE topic = 'PurchaseCompleted'"
        " AND convert_from(state, 'UTF8')::jsonb->>'stripe_payment_intent_id' LIKE %s",
        (prefix + "%",),
    ).fetchall()
    return {row[0] for row in rows}


def accepted(prefix: str, answered: list[dict[str, Any]]) -> set[str]:
    return {f"{prefix}{a['line'] - 1}" for a in answered if a["status"] == "accepted"}


@pytest.mark.parametrize("batch", ["1", "7", str(DEFAULT_BATCH)])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_run_leaves_every_committed_line_answered(
    signum: int, batch: str, ledger_app: Ledger, cli_env: dict[str, str], conn: Conn
) -> None:
    append(ledger_app, *catalogue())
    for seed in range(int(os.environ.get("LEDGER_FAULT_RUNS", "3"))):
        prefix = f"pi_sig{signum}_{seed}_"
        process = appender(cli_env, "--batch", batch)
        assert process.stdout is not None and process.stderr is not None
        writer = threading.Thread(target=feed, args=(process, stream(400, prefix)))
        writer.start()
        answered: list[dict[str, Any]] = []
        stop_after = random.Random(seed).randint(5, 120)
        for line in process.stdout:  # read to the end: the answers it still owes come too
            answered.append(json.loads(line))
            if len(answered) == stop_after:
                process.send_signal(signum)
        process.wait(timeout=120)
        writer.join(timeout=30)
        stderr = process.stderr.read()
        assert process.returncode == 128 + signum, stderr
        assert "Traceback" not in stderr
        summary = SUMMARY.match(stderr.strip().splitlines()[-1])
        assert summary is not None, stderr
        assert summary["why"] == f"interrupted by {signal.Signals(signum).name}"
        assert int(summary["answers"]) == len(answered) >= stop_after
        assert int(summary["last"]) == answered[-1]["line"]
        assert int(summary["next"]) == answered[-1]["line"] + 1
        # nothing committed without its answer, nothing answered without its commit
        assert recorded(conn, prefix) == accepted(prefix, answered)


@pytest.fixture
def doomed_login(settings: Settings) -> Iterator[tuple[str, str]]:
    """A login of its own (a superuser, so it may append), whose connections the test cuts."""
    role = f"ledger_doomed_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(settings.url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER").format(sql.Identifier(role)))
    yield role, make_conninfo(settings.url, user=role)
    with psycopg.connect(settings.url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,)
        )
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_a_database_lost_mid_run_exits_two_after_answering_what_committed(
    ledger_app: Ledger,
    settings: Settings,
    cli_env: dict[str, str],
    conn: Conn,
    doomed_login: tuple[str, str],
) -> None:
    """The connection is cut (pg_terminate_backend) and cannot be made again (the login is
    refused): the appender gives up after its retries, each bounded by ``LEDGER_POOL_TIMEOUT``
    (default 10 s, about 80 s in all: here 250 ms, which is not what the test is about)."""
    role, url = doomed_login
    append(ledger_app, *catalogue())
    prefix = "pi_lost_"
    process = appender(dict(cli_env, LEDGER_DATABASE_URL=url, LEDGER_POOL_TIMEOUT="250ms"))
    assert process.stdout is not None and process.stderr is not None
    writer = threading.Thread(target=feed, args=(process, stream(5000, prefix)))
    writer.start()
    answered: list[dict[str, Any]] = []
    for line in process.stdout:
        answered.append(json.loads(line))
        if len(answered) == 40:
            with psycopg.connect(settings.url, autocommit=True) as admin:
                admin.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(role)))
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                    (role,),
                )
    process.wait(timeout=300)
    writer.join(timeout=30)
    stderr = process.stderr.read()
    assert process.returncode == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert lines[-2].startswith("ledger: database error: ")
    summary = SUMMARY.match(lines[-1])
    assert summary is not None, stderr
    assert summary["why"] == "stopped by the error above"
    assert int(summary["answers"]) == len(answered)
    next_line = int(summary["next"])
    assert next_line == answered[-1]["line"] + 1 < 5000
    assert "again is safe" in (summary["note"] or "")
    # every answered line is whole in the log; of the rest only the batch in flight may be
    # (lines next_line .. next_line + 99, payment intents one less)
    in_log = recorded(conn, prefix)
    assert accepted(prefix, answered) <= in_log
    in_flight = {f"{prefix}{n - 1}" for n in range(next_line, next_line + DEFAULT_BATCH)}
    assert in_log - accepted(prefix, answered) <= in_flight


def printing_commands() -> list[tuple[str, ...]]:
    return [
        ("append",),
        ("append", "--batch", "1"),
        ("db", "status"),
        ("db", "upgrade"),
        ("projections", "status"),
        ("projections", "verify"),
        ("audit", "revenue"),
        ("audit", "verify"),
        ("--help",),
        ("--version",),
    ]


@pytest.mark.parametrize("words", printing_commands(), ids=" ".join)
def test_a_closed_standard_output_ends_any_command_quietly(
    words: tuple[str, ...], ledger_app: Ledger, cli_env: dict[str, str], conn: Conn
) -> None:
    """As ``ledger ... | head -0``: the reader is gone before the first line."""
    append(ledger_app, *catalogue())
    read_end, write_end = os.pipe()
    process = subprocess.Popen(
        [sys.executable, "-m", "ledger", *words],
        env=cli_env,
        stdin=subprocess.PIPE,
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(write_end)
    os.close(read_end)
    _, stderr = process.communicate(stream(3, "pi_pipe_"), timeout=120)
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    if words[0].startswith("--"):  # argparse writes these and ignores a failed write
        assert process.returncode in (0, 141)
    else:
        assert process.returncode == 141
    if words == ("append",):  # the three lines committed together (--batch)
        assert stderr.strip().splitlines() == [
            "ledger: standard output was closed: 0 lines answered, every line up to line 0 "
            "settled; lines 1 to 3 were settled (committed together) but their answers were "
            "lost; the first line not committed is line 4"
        ]
        assert recorded(conn, "pi_pipe_") == {"pi_pipe_0", "pi_pipe_1", "pi_pipe_2"}
    elif words[0] == "append":
        assert stderr.strip().splitlines() == [
            "ledger: standard output was closed: 0 lines answered, every line up to line 0 "
            "settled; line 1 was settled but its answer was lost; the first line not committed "
            "is line 2"
        ]
        assert recorded(conn, "pi_pipe_") == {"pi_pipe_0"}
    else:
        assert stderr == ""


@pytest.mark.parametrize("batch", ["1", str(DEFAULT_BATCH)])
def test_append_piped_into_head_stops_quietly_after_the_first_answer(
    batch: str, ledger_app: Ledger, cli_env: dict[str, str], conn: Conn
) -> None:
    append(ledger_app, *catalogue())
    done = subprocess.run(
        ["sh", "-c", f"{sys.executable} -m ledger append --batch {batch} - | head -1"],
        input=stream(2000, "pi_head_"),
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0  # head's
    assert json.loads(done.stdout)["line"] == 1
    assert "Traceback" not in done.stderr
    assert "standard output was closed" in done.stderr.strip().splitlines()[-1]
    assert len(recorded(conn, "pi_head_")) < 2000  # it stopped


BOOM = """
import sys
import ledger.cli.db as db

def boom(args):
    raise RuntimeError("boom\\nsecond line")

db.status = boom
from ledger.cli import run
run()
"""


@pytest.mark.parametrize(
    ("words", "env", "traceback"),
    [
        (["db", "status"], {}, False),
        (["--debug", "db", "status"], {}, True),
        (["db", "status", "--debug"], {}, True),
        (["db", "status"], {"LEDGER_DEBUG": "1"}, True),
    ],
)
def test_an_unexpected_error_is_one_line_and_exit_two(
    words: list[str], env: dict[str, str], traceback: bool, cli_env: dict[str, str]
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", BOOM, *words],
        env={**cli_env, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == (
        "ledger: unexpected error: RuntimeError: boom (--debug or LEDGER_DEBUG=1 shows the "
        "traceback)"
    )
    assert ("Traceback (most recent call last)" in done.stderr) is traceback
    if not traceback:
        assert len(lines) == 1


def test_version_prints_the_package_version(cli_env: dict[str, str]) -> None:
    done = cli(cli_env, "--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"ledger {version()} (purchase-ledger)"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", version())


# -- no argument list makes a traceback -------------------------------------------------------

# Commands that act beyond the test's schema (roles are the cluster's) or take long (the demo's
# history) are left out, and serve, which serves until a signal by design (its exits are tested
# in tests/integration/test_http_*.py); every other command and option is drawn, but --debug
# (which exists to show tracebacks).
_LEFT_OUT = {("demo",), ("db", "roles"), ("serve",)}
_VALUES = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "base",
            "zero",
            "99",
            "-1",
            "foo",
            "0001-01-01",
            "9999-12-31T23:59:59-01:00",
            "2026-01-01",
            "2026-02-30",
            "11111111-1111-4111-8111-111111111111",
            "x.png",
            "x.txt",
            "1:abc",
            "missing.jsonl",
            "day",
            "json",
            "csv",
            "postgresql://nobody@127.0.0.1:1/none",
            "é日\u202e",
        ]
    ),
    st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), max_size=12),
)


_LEAVES = [c for c in commands() if c.leaf and c.words and c.words not in _LEFT_OUT]


@st.composite
def argument_lists(draw: st.DrawFn) -> list[str]:
    command = draw(st.sampled_from(_LEAVES))
    argv = list(command.words)
    # --debug is for tracebacks; --follow waits for new events until a signal, by design
    # (its signals are tested in tests/integration/test_stream.py)
    options = [a for a in command.options() if not {"--debug", "--follow"} & set(a.option_strings)]
    for action in draw(st.lists(st.sampled_from(options), max_size=4)):
        flag = draw(st.sampled_from(action.option_strings))
        if action.nargs == 0:
            argv.append(flag)
        elif action.choices and draw(st.booleans()):
            argv += [flag, str(draw(st.sampled_from(list(action.choices))))]
        else:
            argv += [flag, draw(_VALUES)]
    if draw(st.integers(0, 4)) == 0:  # now and then, stray words
        argv += draw(st.lists(_VALUES, min_size=1, max_size=2))
    return argv


@pytest.fixture
def in_process(
    cli_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """``main`` run in this process against the test's schema, in a scratch directory."""
    monkeypatch.setenv("LEDGER_DATABASE_URL", cli_env["LEDGER_DATABASE_URL"])
    monkeypatch.setenv("LEDGER_SCHEMA", cli_env["LEDGER_SCHEMA"])
    monkeypatch.delenv("LEDGER_DEBUG", raising=False)  # --debug is for tracebacks
    monkeypatch.chdir(tmp_path)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


@given(argv=argument_lists())
def test_no_argument_list_makes_a_traceback(
    argv: list[str],
    in_process: None,
    ledger_app: Ledger,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines = "\n".join(json.dumps(c) for c in catalogue()) + "\n{oops\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(lines.encode())))
    message = ""
    try:
        status = main(argv)
    except SystemExit as exit:  # argparse: usage (2) or --help (0); a message `run` prints
        status = exit.code if isinstance(exit.code, int) else 2
        message = exit.code if isinstance(exit.code, str) else ""
    out, err = capsys.readouterr()
    err += message
    assert "Traceback" not in out + err, (argv, err)
    assert status in (0, 1, 2), (argv, status, err)
    if status == 2:
        assert err.strip(), argv  # a reason is given
    event(f"{argv[0]} exit {status}")
