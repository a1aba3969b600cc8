"""A failed append's connection left outside any transaction, or closed
(``ledger.log.recorder``, ``ledger.log.claims``): a pooled connection is never left inside
a transaction."""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg
from psycopg import Connection, pq


def settle(conn: Connection[Any], error: BaseException) -> None:
    """Leaves a failed append's connection outside any transaction, or closes it.

    A statement the server refused (a key taken, a stale read, the lock timeout) has
    been answered through the pipeline's sync: the transaction is known to be aborted,
    and a ROLLBACK makes the connection reusable. Anything else (an error raised in the
    client between statements, a lost connection, an interrupt) may have left the
    server inside the transaction, holding the log's lock and waiting for statements
    that will never come, while libpq believes the connection idle: such a connection
    is closed, which ends the transaction on the server, and the pool replaces it.
    """
    refused = (
        isinstance(error, psycopg.Error)
        and error.sqlstate is not None
        and conn.pgconn.pipeline_status == pq.PipelineStatus.OFF
        and conn.pgconn.transaction_status
        in (pq.TransactionStatus.INERROR, pq.TransactionStatus.IDLE)
    )
    if refused:
        try:
            conn.rollback()
        except psycopg.Error:
            pass
        else:
            if conn.pgconn.transaction_status == pq.TransactionStatus.IDLE:
                return
    # a statement still running (a lock wait) would otherwise run on, and even commit;
    # a server out of reach leaves closing as all there is to do
    with contextlib.suppress(Exception):
        conn.cancel_safe(timeout=_CANCEL_TIMEOUT_S)
    conn.close()


_CANCEL_TIMEOUT_S = 2.0
