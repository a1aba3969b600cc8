"""``ledger demo`` writes its invented history only where no real history can be: the embedded
default, or a given database whose log is empty; a second demo changes nothing."""

from __future__ import annotations

import json
from typing import Any

import orjson
import psycopg

from ledger import api
from ledger.commands import demo
from ledger.config import Settings
from ledger.database import embedded
from ledger.service import Ledger
from ledger.service.memory import memory_ledger
from tests.homes import home_env, initialised_home, pointing_at
from tests.support import append, catalogue, cli, event_count

Conn = psycopg.Connection[Any]


def test_refused_on_a_given_database_whose_log_holds_events(
    ledger_app: Ledger, cli_env: dict[str, str], conn: Conn
) -> None:
    append(ledger_app, *catalogue())
    done = cli(cli_env, "demo")
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert "demo refused: the given database's log holds events" in done.stderr
    assert event_count(conn) == 5


def test_runs_on_a_given_database_whose_log_is_empty_and_says_so(
    empty_settings: Settings,
) -> None:
    env = home_env(embedded.home()) | {
        "LEDGER_DATABASE_URL": empty_settings.url,
        "LEDGER_SCHEMA": empty_settings.schema,
    }
    done = cli(env, "demo", "--purchases", "3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("the given database's log is empty")
    from ledger.database.connections import connect

    with connect(empty_settings, autocommit=True) as conn:
        assert event_count(conn) > 0


def log_head(url: str) -> tuple[Any, ...] | None:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*), max(notification_id) FROM ledger_events").fetchone()


# The smallest demo (565 commands; the default's 300 purchases make 1,323, one transaction
# each) in which a grant is answered `invalid_state` and that access later revoked.
PURCHASES = 93


def rejected_grants_revoked_later(purchases: int) -> list[dict[str, Any]]:
    """The demo's grants answered `invalid_state` whose access a later command revokes, as the
    ledger in memory decides them (the same decisions as on PostgreSQL)."""
    history = list(demo.history(purchases=purchases))
    lines = [orjson.dumps(command) for command in history]
    answers = [result for _, result in api.append_lines(memory_ledger(), lines)]
    return [
        command
        for n, (command, answer) in enumerate(zip(history, answers, strict=True))
        if command["type"] == "access.grant"
        and answer.error is not None
        and answer.error.code == "invalid_state"
        and any(
            later["type"] == "access.revoke"
            and (later["user_id"], later["content_id"])
            == (command["user_id"], command["content_id"])
            for later in history[n + 1 :]
        )
    ]


def test_a_second_demo_on_the_same_home_changes_nothing() -> None:
    """The first run answers a grant `invalid_state` (the customer bought the video) and then
    revokes that access; appending the history again would accept the grant."""
    assert rejected_grants_revoked_later(PURCHASES)  # the premise, at this size
    with initialised_home() as home:
        env = home_env(home)
        first = cli(env, "demo", "--purchases", str(PURCHASES))
        assert first.returncode == 0, first.stderr
        assert "invalid_state" in first.stdout
        with pointing_at(home):
            url = embedded.url()
        before = log_head(url)
        second = cli(env, "demo", "--purchases", str(PURCHASES))
        assert second.returncode == 0, second.stderr
        assert second.stdout.startswith(f"the demo already ran under {home}: nothing appended")
        assert "purchases by status" in second.stdout  # the summary, as the first time
        assert log_head(url) == before


def test_refused_on_an_embedded_log_that_is_not_the_demo() -> None:
    with initialised_home() as home:
        env = home_env(home)
        assert cli(env, "db", "upgrade").returncode == 0
        mine = json.dumps({"type": "user.register", "user_id": "a_real_customer"})
        assert cli(env, "append", stdin=mine + "\n").returncode == 0
        done = cli(env, "demo")
        assert done.returncode == 2
        assert f"demo refused: the embedded log under {home} holds events" in done.stderr
        with pointing_at(home):
            assert log_head(embedded.url())[0] == 1  # type: ignore[index]
