"""``postmaster.pid``: which server runs from a data directory, if any.

The file outlives a server that was killed, and its PID may since belong to another process.
PostgreSQL then refuses to start ("lock file already exists") and the wheel's own server class
takes the other process for the server. A PID names the server only if that process is a
``postgres`` that started when the file says the server started.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psutil

# seconds between the start time PostgreSQL records and the process's own start time
_START_SLACK = 2.0


@dataclass(frozen=True)
class PidFile:
    pid: int
    start_time: int | None
    port: int | None
    socket_dir: Path | None
    status: str | None


def read_pid_file(pgdata: Path) -> PidFile | None:
    try:
        text = (pgdata / "postmaster.pid").read_text(errors="replace")
    except FileNotFoundError:
        return None
    lines = [line.strip() for line in text.splitlines()]
    lines += [""] * (8 - len(lines))
    return PidFile(
        pid=_number(lines[0]) or 0,
        start_time=_number(lines[2]),
        port=_number(lines[3]),
        socket_dir=Path(lines[4]) if lines[4] else None,
        status=lines[7] or None,
    )


def _number(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def server_process(info: PidFile) -> psutil.Process | None:
    """The live server the file names, or None when the file is stale."""
    if info.pid <= 0:  # a standalone backend (initdb) writes its PID negated
        return None
    try:
        process = psutil.Process(info.pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        name = process.name()
        created = process.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        # AccessDenied: another user's process, which our server never is
        return None
    if "postgres" not in name and "postmaster" not in name:
        return None
    if info.start_time is not None and abs(created - info.start_time) > _START_SLACK:
        return None
    return process


def describe(pid: int) -> str:
    """What now runs under a stale file's PID, for the message."""
    try:
        return f"PID {pid} now belongs to {psutil.Process(pid).name()!r}"
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return f"PID {pid} is no longer running"
