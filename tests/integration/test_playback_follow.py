"""``ledger playback events --follow`` (issue 26): it hands out new heartbeats as they are
recorded, stops on SIGTERM with where to resume after, and resumes there. On both layouts
(issue 28): the store's own form of a reader's place is taken from the hint and given back,
a position on one server, a cursor of every organization on the distributed store
(docs/stream.md, "The playback store's stream")."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from typing import Any
from uuid import UUID

import psycopg
import pytest

from ledger.config import Settings
from ledger.playback import stream
from ledger.reading.cursor import Cursor
from ledger.service import Ledger
from tests import citus_support
from tests.support import append, catalogue, grant, play, t


def _follow(cli_env: dict[str, str], *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ledger", "playback", "events", "--follow", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env,
    )


def _lines(process: subprocess.Popen[str], count: int) -> list[dict[str, Any]]:
    assert process.stdout is not None
    return [json.loads(process.stdout.readline()) for _ in range(count)]


STOPPED = re.compile(r"ledger: stopped after (position|cursor) (\S+); resume with --after (\S+)")


def _stopped_at(err: str) -> tuple[str, str]:
    """The hint's last line: (its kind, where to resume), the place it names twice."""
    match = STOPPED.fullmatch(err.strip().splitlines()[-1])
    assert match is not None, err
    kind, place, again = match.groups()
    assert place == again, err
    return kind, place


def test_following_sees_new_heartbeats_stops_on_sigterm_and_resumes(
    ledger_app: Ledger, cli_env: dict[str, str], settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    append(ledger_app, *catalogue(), grant("alice"), grant("bob"))
    (before,) = append(ledger_app, play("alice", 10, at=t(5)))
    follower = _follow(cli_env)
    try:
        assert [line["position"] for line in _lines(follower, 1)] == [before.position]
        (new,) = append(ledger_app, play("bob", 20, at=t(5, 13)))
        (line,) = _lines(follower, 1)
        assert (line["position"], line["user_id"], line["position_seconds"]) == (
            new.position,
            "bob",
            20,
        )
        follower.send_signal(signal.SIGTERM)
        out, err = follower.communicate(timeout=30)
    finally:
        follower.kill()
    assert follower.returncode == 0, err
    assert out == "", "nothing after the signal, and no partial line"
    assert "Traceback" not in err, err
    # the store's own form: a position on one server; on the distributed store, where each
    # organization has its own positions, a cursor of every organization read so far
    if stream.per_organization(conn, settings.schema):
        expected = ("cursor", str(Cursor({UUID(line["organization_id"]): new.position})))
    else:
        expected = ("position", str(new.position))
    kind, place = _stopped_at(err)
    assert (kind, place) == expected, err

    # resumed where it stopped: the heartbeat sent meanwhile, and only it
    (meanwhile,) = append(ledger_app, play("alice", 30, at=t(5, 14)))
    resumed = _follow(cli_env, "--after", place, "--limit", "1")
    try:
        out, err = resumed.communicate(timeout=60)
    finally:
        resumed.kill()
    assert resumed.returncode == 0 and err == ""
    assert [json.loads(line)["position"] for line in out.splitlines()] == [meanwhile.position]


@pytest.mark.single_server(citus_support.STORE_POSITION)
def test_a_cursor_on_a_single_servers_store_is_refused_in_one_line(
    ledger_app: Ledger, cli_env: dict[str, str]
) -> None:
    """A single server's store keeps one order (integer positions): a cursor of every
    organization, the distributed store's form (docs/stream.md), is refused, nothing read."""
    append(ledger_app, *catalogue(), grant("alice"))
    append(ledger_app, play("alice", 10, at=t(5)))
    cursor = "0a000000-0000-4000-8000-00000000000a:1"
    done = subprocess.run(
        [sys.executable, "-m", "ledger", "playback", "events", "--after", cursor],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "ledger playback events: error: --after: the playback store is on one server, where "
        "positions are one order: give a position (a whole number)\n"
    )
    # and a position still reads as before
    done = subprocess.run(
        [sys.executable, "-m", "ledger", "playback", "events", "--after", "0"],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["position_seconds"] for line in done.stdout.splitlines()] == [10]
