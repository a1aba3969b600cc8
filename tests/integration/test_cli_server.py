"""``ledger db status`` and ``ledger db stop``: the embedded server, seen and stopped."""

from __future__ import annotations

import re

import psutil

from tests.homes import home_env, private_home
from tests.support import cli


def test_status_says_whether_the_server_runs_and_stop_stops_it(database_url: str) -> None:
    with private_home() as home:
        env = home_env(home)
        before = cli(env, "db", "status")
        assert before.returncode == 0, before.stderr
        assert before.stdout.splitlines()[:3] == [
            "embedded server: not running",
            f"data directory: {home / 'pgdata'} (not initialised yet: the next command creates it)",
            before.stdout.splitlines()[2],
        ]
        assert re.fullmatch(r"PostgreSQL: \d+\.\d+", before.stdout.splitlines()[2])
        assert not (home / "pgdata").exists()  # status started nothing

        assert cli(env, "db", "upgrade").returncode == 0
        running = cli(env, "db", "status")
        found = re.search(r"^embedded server: running \(PID (\d+)\)$", running.stdout, re.M)
        assert found, running.stdout
        pid = int(found[1])
        assert f"data directory: {home / 'pgdata'}\n" in running.stdout
        assert f"socket directory: {home / 'run'}" in running.stdout
        assert re.search(r"^0001_event_log\t\d{4}-", running.stdout, re.M)

        given = cli(dict(env, LEDGER_DATABASE_URL=database_url), "db", "stop")
        assert given.returncode == 0
        assert "a database URL is given" in given.stdout and "nothing stopped" in given.stdout
        assert psutil.pid_exists(pid)  # untouched

        stopped = cli(env, "db", "stop")
        assert stopped.returncode == 0
        assert stopped.stdout.strip() == f"stopped the embedded server (PID {pid}) under {home}"
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert not (home / "pgdata" / "postmaster.pid").exists()

        again = cli(env, "db", "stop")
        assert again.returncode == 0
        assert again.stdout.strip() == f"no embedded server runs under {home}: nothing stopped"
        after = cli(env, "db", "status")
        assert after.stdout.startswith("embedded server: not running\n")
        assert "migrations: not read while the server is stopped" in after.stdout


def test_status_with_a_database_url_names_the_server_and_its_migrations(
    cli_env: dict[str, str],
) -> None:
    done = cli(cli_env, "db", "status")
    assert done.returncode == 0
    assert re.match(r"server: PostgreSQL \d+", done.stdout)
    assert "embedded server" not in done.stdout
    assert "0001_event_log\t" in done.stdout
