"""Starting and stopping the embedded server, with its socket in a private directory.

The server listens on no TCP address, only on a Unix socket in a directory of its own that only
its account can enter (mode 0700, the socket itself 0700): ``LEDGER_HOME/run``, or, when that
path is too long for a socket, a fresh private directory in the temporary directory. Every
setting is an argument of its own (no shell), so paths with spaces or any other character work.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from ledger.database.embedded.account import Account
from ledger.database.embedded.datadir import server_environment
from ledger.database.embedded.pidfile import PidFile, read_pid_file, server_process
from ledger.errors import ConfigurationError

PORT = 5432
SOCKET_NAME = f".s.PGSQL.{PORT}"
# sun_path holds 104 (macOS) to 108 (Linux) bytes with its final NUL
_MAX_SOCKET_PATH = 100
_PRIVATE_PREFIX = "ledger-"
_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 60.0

# Keeps each started server's Popen alive for the life of this process, so that it is never
# reported as a leaked child (the server outlives this process by design).
_STARTED: list[subprocess.Popen[bytes]] = []


def socket_dir(home: Path, account: Account) -> Path:
    own = home / "run"
    if len(os.fsencode(own / SOCKET_NAME)) <= _MAX_SOCKET_PATH:
        if own.is_symlink():
            own.unlink()
        own.mkdir(mode=0o700, exist_ok=True)
        directory = own
    else:
        base = tempfile.gettempdir()
        if len(os.fsencode(base)) > 60:
            base = "/tmp"
        directory = Path(tempfile.mkdtemp(prefix=_PRIVATE_PREFIX, dir=base))
    account.give(directory)
    directory.chmod(0o700)
    return directory


def start(pgdata: Path, account: Account, binaries: Path, sockets: Path, log: Path) -> PidFile:
    quoted = '"' + str(sockets).replace('"', '""') + '"'
    command = [
        str(binaries / "postgres"),
        "-D",
        str(pgdata),
        "-c",
        "listen_addresses=",
        "-c",
        f"port={PORT}",
        "-c",
        f"unix_socket_directories={quoted}",
        "-c",
        "unix_socket_permissions=0700",
    ]
    offset = log.stat().st_size if log.exists() else 0
    with log.open("ab") as output:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=server_environment(),
            start_new_session=True,  # a Ctrl-C on the ledger's terminal does not reach it
            umask=0o077,
            **account.run_as(),
        )
    _STARTED.append(process)
    deadline = time.monotonic() + _START_TIMEOUT
    while True:
        info = read_pid_file(pgdata)
        if info is not None and info.pid == process.pid and info.status == "ready":
            return info
        if process.poll() is not None:
            raise ConfigurationError(
                f"the embedded PostgreSQL in {pgdata} did not start: {log_excerpt(log, offset)}"
            )
        if time.monotonic() > deadline:
            raise ConfigurationError(
                f"the embedded PostgreSQL in {pgdata} was not ready within {_START_TIMEOUT:.0f} s "
                f"(PID {process.pid}; log {log})"
            )
        time.sleep(0.05)


def wait_until_ready(pgdata: Path, info: PidFile) -> PidFile:
    """A running server still starting (or recovering after a crash): wait until it is ready."""
    deadline = time.monotonic() + _START_TIMEOUT
    while info.status != "ready":
        if server_process(info) is None or time.monotonic() > deadline:
            raise ConfigurationError(
                f"the embedded PostgreSQL (PID {info.pid}) in {pgdata} is not ready "
                f"({info.status or 'no status'}): see {pgdata.parent / 'server.log'}, or run "
                f"`ledger db stop` and the command again"
            )
        time.sleep(0.05)
        info = read_pid_file(pgdata) or info
    return info


def stop(pgdata: Path, info: PidFile, home: Path) -> None:
    """A fast shutdown (sessions end, transactions roll back), then waits for the server to go.

    Waits for the process itself, not only its PID file: the postmaster removes the file in
    its last moments, before it exits, and "stopped" must mean gone (a data directory copied
    or a new server started right after must not meet the old one)."""
    process = server_process(info)
    if process is None:
        return
    process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + _STOP_TIMEOUT
    while server_process(info) is not None:
        if time.monotonic() > deadline:
            raise ConfigurationError(
                f"the embedded PostgreSQL (PID {info.pid}) did not stop within "
                f"{_STOP_TIMEOUT:.0f} s: stop it with `kill -INT {info.pid}`"
            )
        time.sleep(0.05)
    remove_private_socket_dir(info.socket_dir, home)


def remove_private_socket_dir(directory: Path | None, home: Path) -> None:
    """A temporary socket directory goes with its server (``LEDGER_HOME/run`` stays)."""
    if directory is None or directory == home / "run":
        return
    if directory.name.startswith(_PRIVATE_PREFIX):
        with contextlib.suppress(OSError):
            directory.rmdir()


def log_excerpt(log: Path, offset: int) -> str:
    """The server's own explanation: its FATAL/PANIC lines since ``offset``, else its last line."""
    try:
        with log.open("rb") as handle:
            handle.seek(offset)
            lines = handle.read().decode(errors="replace").splitlines()
    except OSError:
        return f"no log at {log}"
    serious = [line for line in lines if "FATAL" in line or "PANIC" in line]
    chosen = serious or lines[-1:]
    hints = [line for line in lines if "HINT" in line][:1]
    text = " ".join(line.strip() for line in chosen + hints)
    return f"{text or 'no message'} (log: {log})"
