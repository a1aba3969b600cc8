"""A ``ledger serve`` forked by ``tests/forkserve.py`` behaves as one started anew: the same
exit statuses after each signal, the same refusal, the same output, its own environment."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import pytest

from ledger.config import Settings
from ledger.database.connections import connect
from tests import forkserve
from tests.serving import TOKEN, serve, server_env
from tests.support import answers, catalogue


def _log(text: str) -> list[str]:
    """stderr with what differs between two runs (the port, the pid) left out."""
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", text)
    return re.sub(r"\[\d+\]", "[<pid>]", text).splitlines()


@pytest.mark.parametrize(
    ("signum", "status"),
    [(signal.SIGTERM, 0), (signal.SIGINT, 130), (signal.SIGKILL, -signal.SIGKILL)],
)
def test_a_forked_start_exits_as_a_new_process_on_each_signal(
    settings: Settings, signum: int, status: int
) -> None:
    logs = []
    for real in (True, False):
        with serve(settings, real_process=real) as served:
            with served.client() as client:
                assert client.get("/v1/events").status_code == 200
            assert isinstance(served.process, forkserve.Forked) is not real
            assert served.stop(signum) == status
            assert served.process.returncode == status
            assert served.process.poll() == status
        logs.append(_log(served.log()))
    assert logs[0] == logs[1]


def test_a_forked_start_refuses_an_unmigrated_database_as_a_new_process(
    empty_settings: Settings,
) -> None:
    env = server_env(empty_settings)
    forked = forkserve.server().start(["serve", "--port", "0"], env)
    assert forked.wait(60) == 2
    assert forked.stderr is not None
    forked_err = forked.stderr.read()
    forked.stderr.close()
    with (
        pytest.raises(AssertionError, match="exited 2") as real,
        serve(empty_settings, real_process=True),
    ):
        pass
    lines = forked_err.splitlines()
    assert len(lines) == 1 and "ledger db upgrade" in lines[0], forked_err
    assert lines[0] in str(real.value)


def test_a_forked_start_has_the_environment_it_was_given_and_no_other(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # set in this process after the fork server started: the child must not see it
    forkserve.server()
    monkeypatch.setenv("LEDGER_API_TOKENS", "a-token-of-the-test-process")
    with serve(settings, LEDGER_API_TOKENS="given-token") as served:
        with served.client("given-token") as client:
            assert client.get("/v1/events").status_code == 200
        with served.client(TOKEN) as client:
            assert client.get("/v1/events").status_code == 401
        with served.client("a-token-of-the-test-process") as client:
            assert client.get("/v1/events").status_code == 401


def test_forked_starts_write_to_the_schema_they_are_given(settings: Settings) -> None:
    with serve(settings) as served, served.client() as client:
        for command in catalogue():
            assert client.post("/v1/commands", json=command).status_code == 201
    with connect(settings) as conn:
        row = conn.execute("SELECT count(*) FROM ledger_events").fetchone()
    assert row == (5,)


def test_a_forked_command_with_streams_reads_what_it_is_fed_and_answers_on_its_stdout(
    cli_env: dict[str, str],
) -> None:
    """``start(..., streams=True)``, as the killed appenders of test_faults.py are started:
    the lines written to its stdin are appended, answered on its stdout, and a new
    ``python -m ledger append`` fed the same lines finds each already there."""
    lines = "".join(json.dumps(command) + "\n" for command in catalogue())
    forked = forkserve.server().start(["append", "-"], cli_env, streams=True)
    assert forked.stdin is not None and forked.stdout is not None
    forked.stdin.write(lines)
    forked.stdin.close()
    forked_out = forked.stdout.read()
    forked.stdout.close()
    assert forked.wait(60) == 0
    assert [a["status"] for a in answers(forked_out)] == ["accepted"] * len(catalogue())
    real = subprocess.run(
        [sys.executable, "-m", "ledger", "append", "-"],
        env=cli_env,
        input=lines,
        capture_output=True,
        text=True,
        check=False,
    )
    assert real.returncode == 0, real.stderr
    assert [a["status"] for a in answers(real.stdout)] == ["duplicate"] * len(catalogue())
