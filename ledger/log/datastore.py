"""The write side's connections: the library's datastore, connecting with the URL as given.

The library's ``PostgresDatastore`` is built from five fields (database, host, port,
user, password), so a URL without a host or user, a unix socket, ``sslmode``,
``application_name`` or any other libpq parameter would be lost, and the appends would
connect elsewhere, or otherwise, than every other command. ``LedgerDatastore`` keeps
the library's datastore (its pool's checks, its error mapping, its ``configure``) and
gives its pool the whole conninfo instead (``ledger.database.connections.conninfo``), so
libpq applies the URL, its own defaults and the ``PG*`` environment variables, exactly as for
``ledger db status``. A URL the server refuses fails here, when the ledger is opened,
with the same one-line error as the other commands, instead of leaving the pool to
retry in the background.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from eventsourcing.persistence import BaseInfrastructureFactory
from eventsourcing.postgres import ConnectionPool, PostgresDatastore, PostgresFactory
from eventsourcing.utils import Environment, EnvType
from psycopg import Connection
from psycopg.rows import DictRow, dict_row

from ledger.database.connections import cannot_connect, conninfo

POOL_TIMEOUT_S = 10.0  # LEDGER_POOL_TIMEOUT's default: how long an append waits for the pool
IDLE_IN_TRANSACTION_S = 5  # the library's default: a transaction left idle is ended

CHECK_IDLE_S = 1.0  # a connection idle this long is checked before it is handed out

# the keys ledger.log.recorder.environment() passes to LedgerFactory
URL_KEY = "LEDGER_DATABASE_URL"
SCHEMA_KEY = "POSTGRES_SCHEMA"
POOL_SIZE_KEY = "POSTGRES_POOL_SIZE"
LOCK_TIMEOUT_KEY = "LEDGER_LOCK_TIMEOUT_MS"
POOL_TIMEOUT_KEY = "LEDGER_POOL_TIMEOUT_MS"  # LEDGER_POOL_TIMEOUT: how long an append waits


class CheckIdle:
    """A pool's ``check`` and ``reset`` that ask the server whether a connection still
    works before handing it out, when it has been idle for ``CHECK_IDLE_S`` or more.

    A server restart or a failover ends every connection, and a pool would hand out the
    dead ones, each failing its request once. Checking every connection at every
    checkout (``ConnectionPool.check_connection``) costs a round trip per append or read;
    a connection in steady use was working a moment ago, and one that dies in use fails
    its request with a connection error (503) and is discarded by the pool.
    """

    def __init__(self, idle_seconds: float = CHECK_IDLE_S) -> None:
        self.idle_seconds = idle_seconds

    def check(self, conn: Connection[Any]) -> None:
        used = getattr(conn, "_ledger_returned", None)
        if used is not None and time.monotonic() - used < self.idle_seconds and not conn.closed:
            return
        ConnectionPool.check_connection(conn)

    def reset(self, conn: Connection[Any]) -> None:
        conn._ledger_returned = time.monotonic()  # type: ignore[attr-defined]


class LedgerDatastore(PostgresDatastore):
    """The library's datastore whose pool connects with ``url`` whole."""

    def __init__(
        self,
        url: str,
        *,
        schema: str,
        pool_size: int,
        lock_timeout_ms: int,
        pool_timeout_s: float = POOL_TIMEOUT_S,
    ) -> None:
        super().__init__(
            dbname="",
            host="",
            port="",
            user="",
            password="",
            connect_timeout=pool_timeout_s,
            idle_in_transaction_session_timeout=IDLE_IN_TRANSACTION_S,
            pool_size=pool_size,
            max_overflow=0,
            schema=schema,
        )
        self.conninfo = conninfo(url)
        self.lock_timeout_ms = lock_timeout_ms
        # the pool the library built from its five fields is never opened: replace it
        checked = CheckIdle()
        self.pool = ConnectionPool[Connection[DictRow]](
            self.conninfo,
            connection_class=Connection[DictRow],
            kwargs={"row_factory": dict_row},
            min_size=pool_size,
            max_size=pool_size,
            open=False,
            configure=self.after_connect_func(),
            check=checked.check,
            reset=checked.reset,
            timeout=pool_timeout_s,
        )
        self._probe()

    def _probe(self) -> None:
        """Connects once, so that a URL the server refuses fails now, in one line."""
        try:
            psycopg.connect(self.conninfo).close()
        except psycopg.Error as error:
            raise cannot_connect(error) from None


class LedgerFactory(PostgresFactory):
    """The library's PostgreSQL factory on a ``LedgerDatastore`` (``PERSISTENCE_MODULE``)."""

    def __init__(self, env: Environment | EnvType | None) -> None:
        # not the library's __init__: it builds a datastore from five fields of its own
        BaseInfrastructureFactory.__init__(self, env)
        self.datastore = LedgerDatastore(
            _required(self.env, URL_KEY),
            schema=self.env.get(SCHEMA_KEY) or "public",
            pool_size=int(_required(self.env, POOL_SIZE_KEY)),
            lock_timeout_ms=int(_required(self.env, LOCK_TIMEOUT_KEY)),
            pool_timeout_s=int(_required(self.env, POOL_TIMEOUT_KEY)) / 1000,
        )


def _required(env: Environment, key: str) -> str:
    value: Any = env.get(key)
    if not value:
        raise OSError(f"{key} is missing from the ledger's environment")
    return str(value)
