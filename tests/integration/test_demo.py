"""``ledger demo`` writes its invented history only where no real history can be: the embedded
default, or a given database whose log is empty; a second demo changes nothing."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from ledger.config import Settings
from ledger.database import embedded
from ledger.service import Ledger
from tests.homes import home_env, pointing_at, private_home
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


def test_a_second_demo_on_the_same_home_changes_nothing() -> None:
    """The first run answers one grant `invalid_state` (the customer bought the video) and then
    revokes that access; appending the history again would accept the grant."""
    with private_home() as home:
        env = home_env(home)
        first = cli(env, "demo")
        assert first.returncode == 0, first.stderr
        assert "invalid_state" in first.stdout
        with pointing_at(home):
            url = embedded.url()
        before = log_head(url)
        second = cli(env, "demo")
        assert second.returncode == 0, second.stderr
        assert second.stdout.startswith(f"the demo already ran under {home}: nothing appended")
        assert "purchases by status" in second.stdout  # the summary, as the first time
        assert log_head(url) == before


def test_refused_on_an_embedded_log_that_is_not_the_demo() -> None:
    with private_home() as home:
        env = home_env(home)
        assert cli(env, "db", "upgrade").returncode == 0
        mine = json.dumps({"type": "user.register", "user_id": "a_real_customer"})
        assert cli(env, "append", stdin=mine + "\n").returncode == 0
        done = cli(env, "demo")
        assert done.returncode == 2
        assert f"demo refused: the embedded log under {home} holds events" in done.stderr
        with pointing_at(home):
            assert log_head(embedded.url())[0] == 1  # type: ignore[index]
