"""The OS account the embedded server runs as, and what it may reach.

PostgreSQL refuses to run as root. Run as an ordinary user, the server is that user: nothing
changes hands. Run as root, the server runs as a system account of its own, ``ledger-postgres``
(no login shell, no home, its own group, no supplementary groups), created on first use; a data
directory made earlier by another account keeps that account. The ledger never widens the
permissions of a directory it did not create: a parent of ``LEDGER_HOME`` that the account cannot
traverse is reported, with what to do, rather than opened to everyone.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.errors import ConfigurationError

SERVER_USER = "ledger-postgres"


@dataclass(frozen=True)
class Account:
    uid: int
    gid: int
    name: str

    def run_as(self) -> dict[str, Any]:
        """``subprocess`` arguments that run a program as this account (only root switches)."""
        if not running_as_root():
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def give(self, path: Path) -> None:
        """Makes ``path`` this account's (when root runs the ledger for it)."""
        if running_as_root():
            os.chown(path, self.uid, self.gid, follow_symlinks=False)

    def can_traverse(self, directory: Path) -> bool:
        info = directory.stat()
        if self.uid == 0:
            return True
        if info.st_uid == self.uid:
            return bool(info.st_mode & stat.S_IXUSR)
        if info.st_gid == self.gid:
            return bool(info.st_mode & stat.S_IXGRP)
        return bool(info.st_mode & stat.S_IXOTH)

    def first_closed_parent(self, path: Path) -> Path | None:
        """The first directory above ``path`` (from ``/`` down) that this account cannot enter."""
        for parent in reversed(path.parents):
            if not self.can_traverse(parent):
                return parent
        return None


def running_as_root() -> bool:
    return os.geteuid() == 0


def current_user_name() -> str | None:
    """The name peer authentication will see for this process (None without a passwd entry)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return None


def server_account(pgdata: Path) -> Account:
    """Who runs the server for this data directory."""
    if not running_as_root():
        return Account(os.geteuid(), os.getegid(), current_user_name() or str(os.geteuid()))
    if pgdata.exists():
        owner = pgdata.stat().st_uid
        if owner != 0:
            try:
                entry = pwd.getpwuid(owner)
            except KeyError:
                raise ConfigurationError(
                    f"{pgdata} belongs to user id {owner}, which has no account on this system: "
                    f"give it to an existing account (chown -R) or move it away"
                ) from None
            return Account(entry.pw_uid, entry.pw_gid, entry.pw_name)
    return _system_account()


def _system_account() -> Account:
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        entry = _create_system_account()
    return Account(entry.pw_uid, entry.pw_gid, entry.pw_name)


def _create_system_account() -> pwd.struct_passwd:
    useradd = shutil.which("useradd")
    no_login = next(
        (p for p in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false") if Path(p).exists()),
        "/bin/false",
    )
    if useradd is None:
        raise ConfigurationError(
            f"run as root, the embedded PostgreSQL needs an ordinary account to run as, and "
            f"useradd is missing: create a system account {SERVER_USER!r} without login, or run "
            f"the ledger as an ordinary user, or give a database URL"
        )
    command = [
        useradd,
        "--system",
        "--user-group",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        no_login,
        "--comment",
        "ledger embedded PostgreSQL",
        SERVER_USER,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise ConfigurationError(
            f"could not create the system account {SERVER_USER!r} for the embedded PostgreSQL: "
            f"{done.stderr.strip() or done.returncode}"
        ) from None
